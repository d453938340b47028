"""A weight stored as llama.cpp GGUF blocks: what it ships, and its float values for torch.

:class:`GGUFWeight` is a tensor subclass that reports the float dtype and shape of the
weight it replaced and keeps, as its only stored tensor, the GGUF blocks: a uint8 array of
``rows x (row_length / block_size x type_size)`` bytes, exactly what llama.cpp writes for the
tensor (Q8_0: 34 bytes per 32 weights, a float16 scale and 32 int8 values). So
:mod:`.tensor_subclass` hashes, sizes and saves the blocks (``torch.save`` of the state_dict
pickles the blocks, never a float copy), and reads the values through :meth:`dequantize`.

Inference: the first op that needs the values dequantizes the blocks once, with the ``gguf``
package's own NumPy ``dequantize`` (so they are exactly llama.cpp's values), and keeps that
float tensor beside the blocks; every later forward is a plain float matmul or embedding
lookup, as fast as the float model. The price is memory: the float copy lives in RAM while
the model does (it is never saved, hashed or counted in ``size_bytes``). In-place ops on the
weight are refused: the blocks are what the model is.

Example
-------
>>> import numpy as np, torch
>>> from gguf import GGMLQuantizationType, quants
>>> w = np.full((2, 32), 127.0, dtype=np.float32)
>>> blocks = quants.quantize(w, GGMLQuantizationType.Q8_0)
>>> weight = GGUFWeight(torch.from_numpy(blocks), "Q8_0", (2, 32))
>>> weight.blocks.shape, float(weight.dequantize().sum())
(torch.Size([2, 34]), 8128.0)
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._pytree import tree_map_only

__all__ = ["GGUFWeight"]

_ATEN = torch.ops.aten
_VIEWS = (_ATEN.detach.default, _ATEN.alias.default)


class GGUFWeight(torch.Tensor):
    """A float weight whose contents are GGUF blocks of one quantization type.

    Parameters
    ----------
    blocks
        uint8 tensor ``(*shape[:-1], shape[-1] / block_size * type_size)``, as
        ``gguf.quants.quantize`` returns it.
    qtype
        The GGUF type name (``"Q8_0"``, ``"Q4_0"``...), a ``gguf.GGMLQuantizationType`` name.
    shape, dtype
        The logical weight: its shape and the float dtype its values are read in.
    """

    blocks: torch.Tensor
    qtype: str

    @staticmethod
    def __new__(
        cls,
        blocks: torch.Tensor,
        qtype: str,
        shape: tuple[int, ...] | torch.Size,
        dtype: torch.dtype = torch.float32,
    ) -> GGUFWeight:
        return torch.Tensor._make_wrapper_subclass(
            cls, tuple(shape), dtype=dtype, device=blocks.device, requires_grad=False
        )

    def __init__(
        self,
        blocks: torch.Tensor,
        qtype: str,
        shape: tuple[int, ...] | torch.Size,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if blocks.dtype != torch.uint8:
            raise TypeError(f"GGUFWeight: blocks must be uint8, got {blocks.dtype}")
        self.blocks = blocks
        self.qtype = str(qtype)
        self._dense: torch.Tensor | None = None

    # -- what it stores (read by tensor_subclass: fingerprints, sizes, saving) ---------------

    def __tensor_flatten__(self) -> tuple[list[str], tuple[Any, ...]]:
        return ["blocks"], (self.qtype, tuple(self.shape), self.dtype)

    @staticmethod
    def __tensor_unflatten__(
        inner: dict[str, torch.Tensor], context: tuple[Any, ...], _size: Any, _stride: Any
    ) -> GGUFWeight:
        qtype, shape, dtype = context
        return GGUFWeight(inner["blocks"], qtype, shape, dtype)

    def __reduce_ex__(self, protocol: int) -> tuple[Any, tuple[Any, ...]]:
        # Pickled (torch.save, a worker process) as its blocks: never the float copy.
        return _rebuild, (
            self.blocks,
            self.qtype,
            tuple(self.shape),
            self.dtype,
            bool(getattr(self, "_is_param", False)),
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> GGUFWeight:
        out = GGUFWeight(self.blocks.clone(), self.qtype, self.shape, self.dtype)
        out._dense = self._dense  # read-only (in-place ops are refused): safe to share
        if getattr(self, "_is_param", False):
            out._is_param = True
        memo[id(self)] = out
        return out

    def __repr__(self, *, tensor_contents: Any = None) -> str:
        return f"GGUFWeight({self.qtype}, shape={tuple(self.shape)}, dtype={self.dtype})"

    # -- its values ---------------------------------------------------------------------------

    def dequantize(self) -> torch.Tensor:
        """The weight's values as a plain tensor (computed once, then kept)."""
        dense = self._dense
        if dense is None:
            from gguf import GGMLQuantizationType, quants

            values = quants.dequantize(self.blocks.cpu().numpy(), GGMLQuantizationType[self.qtype])
            # A normal tensor even when first read under inference_mode: an inference tensor
            # could not be viewed (transposed for a matmul) outside it later.
            with torch.inference_mode(False):
                dense = torch.from_numpy(values.reshape(tuple(self.shape))).to(self.dtype)
                dense = dense.to(self.blocks.device)
            self._dense = dense
        return dense

    @classmethod
    def __torch_dispatch__(
        cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if func in _VIEWS:
            (t,) = args
            out = GGUFWeight(t.blocks, t.qtype, t.shape, t.dtype)
            out._dense = t._dense
            return out
        if func is _ATEN.clone.default:
            t = args[0]
            return GGUFWeight(t.blocks.clone(), t.qtype, t.shape, t.dtype)
        if func._schema.is_mutable and args and isinstance(args[0], GGUFWeight):
            raise TypeError(
                f"{func} would change a GGUF-quantized weight in place; its GGUF blocks are "
                "what the model is: quantize again from the float parent (reg.compress(parent, "
                "'gguf', ...)) or take the module back with the 'restore' operation"
            )
        # Every other op runs on the float values (a matmul, an embedding lookup, a cast).
        args, kwargs = tree_map_only(GGUFWeight, GGUFWeight.dequantize, (args, kwargs))
        return func(*args, **kwargs)


def _rebuild(
    blocks: torch.Tensor, qtype: str, shape: tuple[int, ...], dtype: torch.dtype, is_param: bool
) -> GGUFWeight:
    out = GGUFWeight(blocks, qtype, shape, dtype)
    if is_param:
        out._is_param = True
    return out
