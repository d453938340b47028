"""Driving a notebook in JupyterLab through the page: open, run all, ask the kernel."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat


def write_notebook(path: Path, cells: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


def open_and_run(page, lab: dict, name: str, timeout_ms: int = 240_000) -> None:
    """Open notebook ``name``, wait for its kernel, run all cells, wait until idle."""
    # A workspace of its own, reset: no tab restored from an earlier test shares the page.
    workspace = name.replace(".", "-")
    page.goto(f"{lab['base']}/lab/workspaces/{workspace}/tree/{name}?reset&token={lab['token']}")
    page.wait_for_function(
        """() => {
          const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
          const s = w && w.context && w.context.sessionContext;
          return s && s.session && s.session.kernel && s.session.kernel.status === 'idle';
        }""",
        timeout=timeout_ms,
    )
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    # run-all returns before the cells finish: wait for an execute round trip to queue behind them.
    kernel_eval(page, "1")


def kernel_eval(page, expression: str, code: str = "") -> str:
    """Evaluate ``expression`` in the notebook's kernel (after running ``code``); its repr."""
    reply = page.evaluate(
        """async ([code, expr]) => {
          const context = window.jupyterapp.shell.currentWidget.context;
          const kernel = context.sessionContext.session.kernel;
          const future = kernel.requestExecute({code, silent: false, store_history: false,
                                                user_expressions: {value: expr}});
          const msg = await future.done;
          return JSON.stringify(msg.content);
        }""",
        [code, expression],
    )
    content = json.loads(reply)
    if content["status"] != "ok":
        raise RuntimeError(f"kernel error: {content.get('ename')}: {content.get('evalue')}")
    value = content["user_expressions"]["value"]
    if value["status"] != "ok":
        raise RuntimeError(f"expression failed: {value.get('ename')}: {value.get('evalue')}")
    return value["data"]["text/plain"]


def cell_errors(page) -> list[str]:
    """Tracebacks shown in the notebook's outputs."""
    return page.eval_on_selector_all(
        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
        "els => els.map(e => e.innerText)",
    )
