"""The built wheel carries the JS bundles, what reports inline, and the notebooks."""

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
    for notebook in (
        "01_quickstart.ipynb",
        "02_debugging_failed_pruning.ipynb",
        "03_not_miniature.ipynb",
    ):
        assert f"cnc_widgets/notebooks/{notebook}" in names
    # What an offline report inlines: require.js, the widget manager (from npm), the loader,
    # and the report's nbconvert template.
    for asset in ("report-require.js", "report-html-manager.js", "report-loader.js"):
        assert f"cnc_widgets/static/{asset}" in names
    read = zipfile.ZipFile(wheel).read
    assert (
        'define("@jupyter-widgets/html-manager"'
        in read("cnc_widgets/static/report-html-manager.js").decode()
    )
    assert "RequireJS" in read("cnc_widgets/static/report-require.js").decode()
    assert "cnc_widgets/widgets/templates/cnc_report/index.html.j2" in names
    assert not any(n.startswith("cnc_widgets/static/") and n.endswith(".map") for n in names)
