"""Arrays on the wire: typed binary buffers, never JSON lists of numbers.

ipywidgets lifts every ``bytes``/``memoryview`` inside a trait's value into a
separate binary buffer of the comm message, so a packed array costs its raw bytes.
``js/src/shared/wire.js`` turns ``{"dtype", "shape", "data"}`` back into a typed array.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The dtypes the browser has typed arrays for.
DTYPES = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"}


def pack(array: Any, dtype: str | None = None) -> dict[str, Any]:
    """``{"dtype", "shape", "data": bytes}`` of ``array`` (C order, little-endian)."""
    arr = np.asarray(array)
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    if arr.dtype.name not in DTYPES:
        raise ValueError(f"cannot send dtype {arr.dtype} to the browser; use one of {DTYPES}")
    arr = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"), copy=False))
    return {"dtype": arr.dtype.name, "shape": list(arr.shape), "data": arr.tobytes()}


def unpack(packed: dict[str, Any]) -> np.ndarray:
    """The array :func:`pack` sent (for tests and for values coming back)."""
    data = packed["data"]
    return np.frombuffer(bytes(data), dtype=np.dtype(packed["dtype"]).newbyteorder("<")).reshape(
        packed["shape"]
    )


def smallest_int(values: np.ndarray) -> str:
    """The narrowest signed integer dtype that holds ``values`` (class indices, counts)."""
    top = int(np.abs(values).max()) if values.size else 0
    for name, limit in (("int8", 127), ("int16", 32767)):
        if top <= limit:
            return name
    return "int32"


def split_buffers(content: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
    """A custom message's packed arrays as separate buffers: ``send`` (unlike trait
    syncing) does not lift them out, and JSON cannot carry bytes. The message gets
    ``buffer_paths``; ``wire.js``'s ``putBuffers`` puts each buffer back in its place."""
    paths: list[list[Any]] = []
    buffers: list[bytes] = []

    def walk(value: Any, path: list[Any]) -> Any:
        if isinstance(value, (bytes, bytearray, memoryview)):
            paths.append(path)
            buffers.append(bytes(value))
            return None
        if isinstance(value, dict):
            return {k: walk(v, [*path, k]) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v, [*path, i]) for i, v in enumerate(value)]
        return value

    out = walk(content, [])
    out["buffer_paths"] = paths
    return out, buffers
