"""Export a notebook as one HTML file whose widgets render offline, selection still linked.

nbconvert's HTML loads require.js, the widget manager and anywidget from CDNs, so its widgets
are blank without a network. A report inlines all three: require.js and the AMD bundle of
``@jupyter-widgets/html-manager`` (copied from npm into ``static/`` when the package is built),
anywidget's AMD bundle from the installed anywidget (so it matches the version that wrote the
widget state), and a small loader (``js/src/report/loader.js``) that renders the embedded
widget state and links the selections of views that share a registry.
"""

from __future__ import annotations

import os
import re
import warnings
from importlib import resources
from pathlib import Path

from ._bundle import STATIC
from ._view import EXPORT_ENV

TEMPLATES = Path(__file__).resolve().parent / "templates"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
_ASSETS = {
    "require_js": "report-require.js",
    "html_manager_js": "report-html-manager.js",
    "loader_js": "report-loader.js",
}


def _script_text(text: str, name: str) -> str:
    # Inside <script>, only "</script" (any case) and "<!--" can end or confuse the element.
    if re.search(r"</script|<!--", text, flags=re.IGNORECASE):
        raise ValueError(f"{name} contains '</script' or '<!--' and cannot be inlined safely")
    return text


def _static(name: str) -> str:
    path = STATIC / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: it is copied from npm when the package is built; reinstall "
            "cnc-widgets, or run `npm install && npm run build` in js/"
        )
    return _script_text(path.read_text(encoding="utf-8"), name)


def anywidget_amd() -> str:
    """anywidget's AMD bundle from the installed package, defined under the name "anywidget"."""
    source = (resources.files("anywidget") / "nbextension" / "index.js").read_text("utf-8")
    named, count = re.subn(r"\bdefine\(\[", 'define("anywidget", [', source)
    if count != 1:
        raise RuntimeError(
            "anywidget's nbextension/index.js no longer ends in one anonymous define([...]); "
            "this version of anywidget is not supported by export_report"
        )
    return _script_text(named, "anywidget/nbextension/index.js")


def report_assets() -> dict[str, str]:
    """The scripts a report inlines, by the name the template uses."""
    assets = {key: _static(name) for key, name in _ASSETS.items()}
    assets["anywidget_js"] = anywidget_amd()
    return assets


def execute_notebook(notebook, cwd: Path, timeout: int = 1200) -> None:
    """Run every cell in a fresh kernel, in ``cwd``, keeping the widget state.

    The kernel inherits ``EXPORT_ENV``: views that compute only once drawn (the dashboard's
    layers) compute while the cells run, as no frontend will draw them.
    """
    import nbclient

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    client = nbclient.NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
        store_widget_state=True,
    )
    before = os.environ.get(EXPORT_ENV)
    os.environ[EXPORT_ENV] = "1"
    try:
        client.execute()
    finally:
        if before is None:
            os.environ.pop(EXPORT_ENV, None)
        else:
            os.environ[EXPORT_ENV] = before


def notebook_to_html(notebook) -> str:
    """The report's HTML for an (executed) notebook node."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab",
        extra_template_paths=[str(TEMPLATES)],
        template_file="cnc_report/index.html.j2",
    )
    body, _ = exporter.from_notebook_node(notebook, resources={"cnc_report": report_assets()})
    return body


def export_report(
    notebook: str | os.PathLike, html: str | os.PathLike, *, execute: bool = False
) -> Path:
    """Write ``notebook`` as one self-contained HTML file that renders with no network.

    The widget manager, require.js, anywidget and the views' JavaScript are inlined and the
    widget state is embedded: the views render and selection links them for everything the
    notebook computed. Each view's static summary shows until its widget renders.

    Parameters
    ----------
    notebook
        An ``.ipynb`` file. Its saved outputs and widget state are used as they are unless
        ``execute``.
    html
        The file to write.
    execute
        Run the notebook first in a fresh kernel (in the notebook's folder) and keep its
        widget state; without it, a notebook saved without widget state shows only the
        summaries, and a warning says so.

    Returns
    -------
    Path
        ``html``.

    Examples
    --------
    >>> import cnc_widgets as cnc
    >>> cnc.export_report("analysis.ipynb", "analysis.html", execute=True)  # doctest: +SKIP
    """
    import nbformat

    source = Path(notebook)
    if not source.is_file():
        raise FileNotFoundError(f"export_report: no notebook at {source}")
    nb = nbformat.read(source, as_version=4)
    if execute:
        execute_notebook(nb, source.resolve().parent)
    elif shows_widgets(nb) and not has_widget_state(nb):
        warnings.warn(
            f"{source} shows widgets but saved no widget state: the report shows only their "
            "static summaries, without views or charts. Pass execute=True to export_report, "
            "or save the widget state in JupyterLab (Settings > Save Widget State "
            "Automatically) and save the notebook again",
            UserWarning,
            stacklevel=2,
        )
    nb.metadata.setdefault("title", source.stem)
    out = Path(html)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(notebook_to_html(nb), encoding="utf-8")
    return out


def shows_widgets(notebook) -> bool:
    """Whether any output of a notebook node displays a widget."""
    return any(
        "application/vnd.jupyter.widget-view+json" in output.get("data", {})
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )


def has_widget_state(notebook) -> bool:
    """Whether a notebook node carries saved widget state (else its views show summaries)."""
    return bool(notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state"))
