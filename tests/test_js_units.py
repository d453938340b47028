"""The browser code's pure helpers (js/test/*.test.js), run by node's own test runner.

``./run test`` is pytest, so this test runs ``node --test js/test/`` and fails with node's
report when any of them fails (or when node is missing: it builds the bundle anyway).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

JS = Path(__file__).resolve().parents[1] / "js"


def test_js_unit_tests_pass():
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: install Node.js (it also builds js/ into the wheel)")
    files = sorted(str(p.relative_to(JS)) for p in (JS / "test").glob("*.test.js"))
    assert {"test/pareto.test.js", "test/filter.test.js", "test/ticks.test.js"} <= set(files)
    assert "test/format.test.js" in files
    done = subprocess.run(
        [node, "--test", *files], cwd=JS, capture_output=True, text=True, timeout=300
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, f"node --test failed:\n{report[-6000:]}"
    assert "# fail 0" in report and "# pass 0" not in report
