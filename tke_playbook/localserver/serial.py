"""Embeddings as bytes, as vLLM packs them for ``base64`` and ``bytes`` answers: ``embed_dtype`` and ``endianness``.

float32 and float16 are numpy's; bfloat16 and the two fp8 formats go through torch, whose casts vLLM uses too.
``native`` endianness is this machine's (``sys.byteorder``).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from .surface import EmbedDType, Endianness

_TORCH_TYPES = {EmbedDType.BFLOAT16: (torch.bfloat16, torch.int16),
                EmbedDType.FP8_E4M3: (torch.float8_e4m3fn, torch.uint8),
                EmbedDType.FP8_E5M2: (torch.float8_e5m2, torch.uint8)}
_NUMPY_TYPES = {EmbedDType.FLOAT32: np.float32, EmbedDType.FLOAT16: np.float16}


def byte_order(endianness: Endianness | str) -> str:
    """``'little'`` or ``'big'`` for an ``endianness`` value."""
    value = Endianness(endianness)
    return sys.byteorder if value is Endianness.NATIVE else value.value


def as_dtype(matrix: np.ndarray, embed_dtype: EmbedDType | str) -> np.ndarray:
    """``matrix`` (float32 rows) cast to ``embed_dtype``, as a numpy array in this machine's byte order.

    bfloat16 comes back as int16 bit patterns and fp8 as uint8 bit patterns (numpy has no such float types).
    """
    kind = EmbedDType(embed_dtype)
    if kind in _NUMPY_TYPES:
        return np.ascontiguousarray(matrix, dtype=_NUMPY_TYPES[kind])
    target, view = _TORCH_TYPES[kind]
    return torch.from_numpy(np.ascontiguousarray(matrix, dtype=np.float32)).to(target).view(view).numpy()


def row_bytes(matrix: np.ndarray, embed_dtype: EmbedDType | str, endianness: Endianness | str) -> list[bytes]:
    """One ``bytes`` per row: the values cast to ``embed_dtype`` in the requested byte order."""
    cast = as_dtype(matrix, embed_dtype)
    if cast.dtype.itemsize > 1 and byte_order(endianness) != sys.byteorder:
        cast = cast.byteswap()
    return [row.tobytes() for row in cast]
