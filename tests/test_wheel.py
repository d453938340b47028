"""The built wheel carries the JS bundle and the quickstart notebook."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_bundle(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("cnc_widgets-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    bundle = "cnc_widgets/static/provenance.js"
    assert bundle in names
    source = zipfile.ZipFile(wheel).read(bundle).decode()
    # A real esbuild ESM bundle with the view's default export, no CDN imports.
    assert "export" in source and "cnc-provenance" in source
    assert "https://" not in source.replace("http://www.w3.org/2000/svg", "")
    assert "cnc_widgets/notebooks/quickstart.ipynb" in names
    assert not any(n.startswith("cnc_widgets/static/") and n.endswith(".map") for n in names)
