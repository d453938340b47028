"""The demo: run the quickstart notebook on real data and show what it built.

``python -m cnc_widgets demo --out DIR`` executes ``notebooks/01_quickstart.ipynb``
in a fresh kernel with DIR as its working folder, writes the executed notebook
to DIR/01_quickstart.ipynb and its offline report to DIR/report.html, and prints the
metrics table of the registry it stored in DIR/cnc_store.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import pandas as pd

from ..registry import ModelRegistry
from ..widgets.report import execute_notebook, notebook_to_html

QUICKSTART = "01_quickstart.ipynb"
COLUMNS = [
    "parent",
    "operation",
    "accuracy",
    "params",
    "nonzero_params",
    "sparsity",
    "size_bytes",
    "macs",
    "latency_ms",
]


def notebook_path(name: str = QUICKSTART) -> Path:
    """A notebook of ``notebooks/``: shipped in the wheel, or in the source checkout."""
    packaged = resources.files("cnc_widgets") / "notebooks" / name
    if packaged.is_file():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parents[3] / "notebooks" / name
    if checkout.is_file():
        return checkout
    raise FileNotFoundError(f"{name} is missing from the package; reinstall cnc-widgets")


def quickstart_path() -> Path:
    """The quickstart notebook: shipped in the wheel, or in the source checkout."""
    return notebook_path(QUICKSTART)


def run_demo(out: str | Path, *, timeout: int = 600) -> pd.DataFrame:
    """Execute the quickstart into ``out``, write its report, return the metrics it stored."""
    import nbformat

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    notebook = nbformat.read(quickstart_path(), as_version=4)
    env_before = os.environ.get("CNC_STORE")
    os.environ["CNC_STORE"] = str(out / "cnc_store")
    try:
        execute_notebook(notebook, out, timeout=timeout)
    finally:
        if env_before is None:
            os.environ.pop("CNC_STORE", None)
        else:
            os.environ["CNC_STORE"] = env_before
    nbformat.write(notebook, out / QUICKSTART)
    notebook.metadata.setdefault("title", "cnc_widgets quickstart")
    (out / "report.html").write_text(notebook_to_html(notebook), encoding="utf-8")
    table = ModelRegistry(store=out / "cnc_store").metrics()
    return table[[c for c in COLUMNS if c in table.columns]]
