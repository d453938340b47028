"""Command line: ``python -m cnc_widgets demo --out DIR`` and ``... report NOTEBOOK -o OUT``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _size(path: Path) -> str:
    n = path.stat().st_size
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnc_widgets")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="build the demo registry on real data and its notebook")
    demo.add_argument("--out", default="demo_out", help="folder for the notebook and the store")
    report = sub.add_parser(
        "report", help="export a notebook as one HTML file whose widgets render offline"
    )
    report.add_argument("notebook", help="the .ipynb file")
    report.add_argument("-o", "--output", help="the HTML file (default: beside the notebook)")
    report.add_argument(
        "--execute", action="store_true", help="run the notebook first in a fresh kernel"
    )
    args = parser.parse_args(argv)

    if args.command == "demo":
        import pandas as pd

        from .examples.demo import QUICKSTART, run_demo

        table = run_demo(args.out)
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(table.to_string(float_format=lambda v: f"{v:.4g}"))
        print(f"\nexecuted notebook: {args.out}/{QUICKSTART}")
        html = Path(args.out) / "report.html"
        print(f"report: {html} ({_size(html)}, opens offline)")
    elif args.command == "report":
        from .widgets.report import export_report

        output = args.output or str(Path(args.notebook).with_suffix(".html"))
        html = export_report(args.notebook, output, execute=args.execute)
        print(f"report: {html} ({_size(html)}, opens offline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
