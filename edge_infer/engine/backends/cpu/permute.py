"""Transpose as one native pass (kernels/transpose.c), split between threads.

The permuted view's axes are first merged wherever two stay adjacent in the input too, and
its axes of size 1 dropped: CRNN's ``[T, 2, B, H] -> [T, B, 2, H]`` becomes rows of H values
copied whole, ``[B, C, T] -> [T, B, C]`` a [C, T] -> [T, C] tile transpose per batch row.
numpy's strided copy of the latter reads one value per cache line (68 µs for 128 KiB).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import share, split

Run = Callable[[], None]

#: the kernel's most axes (args.h: dims holds 6 sizes, then 6 strides)
MAX_AXES = 6
#: a transpose is split between threads from this many bytes (each part at least half)
SPLIT = 1 << 16


def merged_axes(shape: Sequence[int], strides: Sequence[int]) -> tuple[list[int], list[int]]:
    """``shape`` and ``strides`` of a view with its axes of size 1 dropped and every pair of
    neighbours merged whose outer stride is the inner one times the inner size (one axis
    of the same addresses). At least one axis."""
    axes = [(n, s) for n, s in zip(shape, strides, strict=True) if n != 1]
    merged: list[tuple[int, int]] = []
    for n, s in axes:
        if merged and merged[-1][1] == s * n:
            merged[-1] = (merged[-1][0] * n, s)
        else:
            merged.append((n, s))
    if not merged:
        merged = [(1, 1)]
    return [n for n, _ in merged], [s for _, s in merged]


def bind_transpose(
    x: Any, out: np.ndarray, perm: Sequence[int], *, workers: int = 1, pool: Any = None
) -> Run | None:
    """``out`` = ``x`` transposed by ``perm`` (any dtype of 1, 2, 4 or 8 bytes, ``out``
    C-contiguous), or None when the native kernel cannot run it."""
    if not isinstance(x, np.ndarray) or x.dtype != out.dtype or x.dtype.hasobject:
        return None
    src = np.transpose(x, perm)
    es = x.itemsize
    if (
        src.shape != out.shape
        or not out.flags.c_contiguous
        or es not in (1, 2, 4, 8)
        or any(s < 0 or s % es for s in src.strides)
        or not out.size
        or np.may_share_memory(x, out)
        or native.library() is None
    ):
        return None
    shape, strides = merged_axes(src.shape, [s // es for s in src.strides])
    if len(shape) > MAX_AXES:
        return None
    dims = np.zeros(2 * MAX_AXES, np.int64)
    dims[: len(shape)] = shape
    dims[MAX_AXES : MAX_AXES + len(shape)] = strides
    parts = max(1, min(2 * workers, out.nbytes // (SPLIT // 2))) if workers > 1 else 1
    fields = dict(x=x.ctypes.data, y=out.ctypes.data, es=es, nd=len(shape), dims=dims.ctypes.data)
    calls = [
        native.NativeCall("transpose_f32", {**fields, "r0": r0, "r1": r1}, (x, out, dims))
        for r0, r1 in split(shape[0], parts)
    ]
    return share(calls, pool)
