"""Where the views' JavaScript lives: built by esbuild at install time into static/."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "static"


def bundle(view: str) -> Path:
    """Path of the built ES module of ``view``; a clear error when it was never built."""
    path = STATIC / f"{view}.js"
    if not path.is_file():
        raise FileNotFoundError(
            f"the {view} view's JavaScript ({path}) is missing: it is built during "
            "`pip install`; reinstall the package, or run `npm install && npm run build` in js/"
        )
    return path
