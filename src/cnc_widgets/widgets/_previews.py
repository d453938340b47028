"""What a person sees of each instance (thumbnails or text), sent in pieces.

The widget state embeds the first ``EMBED_LIMIT`` instances, so an exported
notebook shows them without a kernel; with a kernel, the table asks for the rows
it scrolls to (custom messages) and gets the rest on demand.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..evaluate.data import EvalData

EMBED_LIMIT = 1000  # instances whose previews travel in the widget state (and exports)
TEXT_LIMIT = 2000  # characters of one text sent to the browser; the view truncates further


def previews(data: EvalData | None, rows: Iterable[int]) -> tuple[dict[str, Any], list[bytes]]:
    """Previews of ``rows``: ``({"kind", "rows", "shape" | "texts", "total"}, buffers)``.

    Images travel as one uint8 buffer of shape (len(rows), H, W[, 3]); texts as JSON
    strings (shown with textContent in the browser, never parsed as HTML).
    """
    total = 0 if data is None else len(data)
    picked = [r for r in rows if 0 <= r < total]
    instances = None if data is None else data.instances
    if instances is None:
        return {"kind": "none", "rows": picked, "total": total}, []
    if isinstance(instances, np.ndarray):
        block = np.ascontiguousarray(instances[picked], dtype=np.uint8)
        shape = list(instances.shape[1:])
        return {"kind": "image", "rows": picked, "shape": shape, "total": total}, [block.tobytes()]
    texts = [str(instances[r])[:TEXT_LIMIT] for r in picked]
    return {"kind": "text", "rows": picked, "texts": texts, "total": total}, []
