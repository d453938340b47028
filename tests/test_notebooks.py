"""The notebooks execute from top to bottom in a real kernel (nbclient), small setting.

02 asserts in its own cells that pruning the LayerNorms collapses accuracy, that the same
pruning without them does not, and that restoring them recovers; 04 and 05 tell the same
story on SmolLM2 (perplexity; generated answers). An assertion that fails is a cell error
here. ``CNC_NOTEBOOK_FULL=1`` runs them at full size.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbclient
import nbformat
import pytest

from cnc_widgets.examples.demo import run_demo

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run(name: str, tmp_path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    env = {"CNC_STORE": str(tmp_path / "store"), "HF_HUB_OFFLINE": "1"}
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        nbclient.NotebookClient(
            nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def outputs(nb: nbformat.NotebookNode) -> str:
    return "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
    )


def test_outputs_are_not_committed():
    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name
        assert "widgets" not in nb.metadata, path.name


def test_01_quickstart_through_the_demo(tmp_path):
    """``python -m cnc_widgets demo`` runs 01 and writes the executed notebook and its report."""
    table = run_demo(tmp_path)
    assert {"base", "pruned-80", "int8"} <= set(table.index)
    nb = nbformat.read(tmp_path / "01_quickstart.ipynb", as_version=4)
    assert "pruned-80" in outputs(nb)
    assert nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    report = (tmp_path / "report.html").read_text()
    assert "application/vnd.jupyter.widget-state+json" in report
    assert "cnc-provenance" in report


@pytest.mark.slow
def test_02_debugging_failed_pruning(tmp_path):
    nb = run("02_debugging_failed_pruning.ipynb", tmp_path)
    source = "\n".join(c.source for c in nb.cells)
    # The assertions that carry the story are still in the notebook (and passed).
    for claim in ("should collapse accuracy", "should not collapse", "should recover"):
        assert claim in source
    text = outputs(nb)
    assert "restored" in text and "feed-forward-50" in text and "attention-50" in text


@pytest.mark.slow
def test_03_not_miniature(tmp_path):
    nb = run("03_not_miniature.ipynb", tmp_path)
    text = outputs(nb)
    for name in ("int8", "pruned-50", "3-layers", "student"):
        assert name in text
    assert "Neighbourhoods:" in text  # the written reading was computed


@pytest.mark.slow
def test_04_llm(tmp_path, smollm2):
    # The smollm2 fixture converts the GGUF into the cache the notebook's kernel reads.
    nb = run("04_llm.ipynb", tmp_path)
    source = "\n".join(c.source for c in nb.cells)
    for claim in (
        "should collapse perplexity",
        "without the norms 20% pruning should not collapse",
        "restoring the norms should recover",
        "the RMSNorm weights should be zeroed",
        "the assistant should find the RMSNorm weights",
    ):
        assert claim in source
    text = outputs(nb)
    for name in ("int8-dynamic", "int8-weight-only", "int4-weight-only", "drop-2-layers"):
        assert name in text
    for name in ("gguf-Q8_0", "gguf-Q5_1", "gguf-Q4_0"):  # llama.cpp's types in the table
        assert name in text
    assert "cnc.PredictionDiff(reg" in source  # the token diff cell (it asserts its own state)
    assert "KL mean ± sem" in text and "prune-20-norms-restore-norms" in text
    assert "scored tokens per model" in text and "Closest to base" in text


@pytest.mark.slow
def test_05_generated_answers(tmp_path, smollm2):
    nb = run("05_generated_answers.ipynb", tmp_path)
    source = "\n".join(c.source for c in nb.cells)
    for claim in (
        "restoring the norms should recover",
        "pruning the norms should not answer better",
    ):
        assert claim in source
    text = outputs(nb)
    assert "F1: base" in text and "f1_change" in text and "Pruning 20% of every tensor" in text
    assert "cnc.PredictionDiff(reg" in source  # the answer diff cell


def test_06_extractive_qa(tmp_path):
    nb = run("06_extractive_qa.ipynb", tmp_path)
    source = "\n".join(c.source for c in nb.cells)
    assert "pruning the norms should cost F1" in source
    assert "cnc.PredictionDiff(reg" in source  # the answer diff cell
    text = outputs(nb)
    assert "adversarial_overlap" in text and "error_jaccard" in text
    assert "- F1: base" in text and "same answer" in text
