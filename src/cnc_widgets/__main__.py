"""Command line: ``python -m cnc_widgets demo --out DIR``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnc_widgets")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="build the demo registry on real data and its notebook")
    demo.add_argument("--out", default="demo_out", help="folder for the notebook and the store")
    args = parser.parse_args(argv)

    if args.command == "demo":
        import pandas as pd

        from .demo import run_demo

        table = run_demo(args.out)
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(table.to_string(float_format=lambda v: f"{v:.4g}"))
        print(f"\nexecuted notebook: {args.out}/quickstart.ipynb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
