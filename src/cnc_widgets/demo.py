"""The demo: run the quickstart notebook on real data and show what it built.

``python -m cnc_widgets demo --out DIR`` executes ``notebooks/quickstart.ipynb``
in a fresh kernel with DIR as its working folder, writes the executed notebook
to DIR/quickstart.ipynb, and prints the metrics table of the registry it stored
in DIR/cnc_store.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import pandas as pd

from .registry import ModelRegistry

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


def quickstart_path() -> Path:
    """The quickstart notebook: shipped in the wheel, or in the source checkout."""
    packaged = resources.files("cnc_widgets") / "notebooks" / "quickstart.ipynb"
    if packaged.is_file():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"
    if checkout.is_file():
        return checkout
    raise FileNotFoundError("quickstart.ipynb is missing from the package; reinstall cnc-widgets")


def run_demo(out: str | Path, *, timeout: int = 600) -> pd.DataFrame:
    """Execute the quickstart into ``out`` and return the metrics it stored."""
    import nbclient
    import nbformat

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    notebook = nbformat.read(quickstart_path(), as_version=4)
    env_before = os.environ.get("CNC_STORE")
    os.environ["CNC_STORE"] = str(out / "cnc_store")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        client = nbclient.NotebookClient(
            notebook,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(out)}},
        )
        client.execute()
    finally:
        if env_before is None:
            os.environ.pop("CNC_STORE", None)
        else:
            os.environ["CNC_STORE"] = env_before
    nbformat.write(notebook, out / "quickstart.ipynb")
    table = ModelRegistry(store=out / "cnc_store").metrics()
    return table[[c for c in COLUMNS if c in table.columns]]
