"""Driving a notebook in JupyterLab through the page: open, run all, ask the kernel."""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path
from typing import Any

import nbformat

# How long any wait for a condition may take. The tests wait on state (a selector, a kernel
# value), never on time; this bound only turns a hang into a failure, so it is generous
# enough for a CI machine shared with other jobs (a 2-core runner has taken over 30 s to
# deliver one click's round trip). The browser fixture makes it every page's default.
WAIT_MS = 240_000


def write_notebook(path: Path, cells: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


def open_and_run(page, lab: dict, name: str, timeout_ms: int = 2 * WAIT_MS) -> None:
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


def wait_kernel(page, expression: str, expected: Any, timeout_ms: int = WAIT_MS) -> None:
    """Poll until ``expression`` in the kernel is ``expected`` (each poll is a round trip).

    ``expected`` is the value's repr, or a Python value compared with the literal the repr
    spells. A click reaches the kernel asynchronously; this waits on the kernel's state.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        got = kernel_eval(page, expression)
        if got == expected if isinstance(expected, str) else ast.literal_eval(got) == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{expression} stayed {got}, expected {expected!r}")
        page.wait_for_timeout(100)  # a poll interval, not a synchronisation


def wait_attribute_change(page, selector: str, name: str, before: str | None) -> str | None:
    """Wait until attribute ``name`` of ``selector`` differs from ``before``; its new value."""
    page.wait_for_function(
        """([s, n, b]) => { const e = document.querySelector(s);
                            return !!e && e.getAttribute(n) !== b; }""",
        arg=[selector, name, before],
    )
    return page.get_attribute(selector, name)


def settle(page) -> None:
    """Wait until the page has drawn what it was asked (fonts loaded, two frames painted).

    After a theme switch, before a screenshot or a computed colour is read.
    """
    page.evaluate(
        """() => document.fonts.ready.then(() => new Promise(
             (done) => requestAnimationFrame(() => requestAnimationFrame(done))))"""
    )
