"""Cached measures as JSON and back, bit for bit (numbers, dicts, Series, DataFrames)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd


def encode_value(value: Any) -> dict[str, Any]:
    """A JSON form of a cached measure: a number, a dict, a Series or a DataFrame.

    Values travel as Python floats, which ``json`` writes with every digit (shortest
    repr that reads back to the same float64), so a table comes back from the store bit
    for bit; pandas' own JSON rounds to 10 significant digits.
    """
    if isinstance(value, pd.DataFrame):
        return {
            "kind": "table",
            "index": _column(value.index),
            "index_name": value.index.name,
            "columns": [_plain(c) for c in value.columns],
            "columns_name": value.columns.name,
            "data": [_column(value[c]) for c in value.columns],
        }
    if isinstance(value, pd.Series):
        return {
            "kind": "vector",
            "index": _column(value.index),
            "index_name": value.index.name,
            "name": _plain(value.name),
            "data": _column(value),
        }
    if isinstance(value, dict):
        return {"kind": "dict", "value": value}
    return {"kind": "float", "value": float(value)}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _column(values: Any) -> dict[str, Any]:
    array = np.asarray(values)
    return {"dtype": str(array.dtype), "values": [_plain(v) for v in array.tolist()]}


def _array(column: dict[str, Any]) -> np.ndarray:
    dtype = column["dtype"]
    if dtype == "object" or dtype.startswith(("<U", "|S")):
        return np.array(column["values"], dtype=object)
    return np.array(column["values"], dtype=dtype)


def decode_value(stored: dict[str, Any]) -> Any:
    """The value :func:`encode_value` encoded (older stores' pandas JSON too)."""
    kind, value = stored["kind"], stored.get("value")
    if kind == "table":
        index = pd.Index(_array(stored["index"]), name=stored["index_name"])
        frame = pd.DataFrame({i: _array(c) for i, c in enumerate(stored["data"])}, index=index)
        frame.columns = pd.Index(stored["columns"], name=stored["columns_name"])
        return frame
    if kind == "vector":
        index = pd.Index(_array(stored["index"]), name=stored["index_name"])
        return pd.Series(_array(stored["data"]), index=index, name=stored["name"])
    if kind == "frame":
        frame = pd.read_json(io.StringIO(value), orient="split")
        return frame.rename_axis(stored.get("index"))
    if kind == "series":
        series = pd.read_json(io.StringIO(value), orient="split", typ="series")
        return series.rename_axis(stored.get("index"))
    return value
