"""Mirror of ``kernels/transpose.cu``: batched 2-D transposes (NCHW <-> NHWC)."""

from __future__ import annotations

import ctypes

import numpy as np

from edge_infer.cuda.library import KernelCall, KernelSpec
from edge_infer.cuda.params import ptr
from edge_infer.errors import BackendError

TILE, TILE_ROWS = 32, 8


class TransposeParams(ctypes.Structure):
    """``struct TransposeParams``."""

    _fields_ = [
        ("src", ctypes.c_void_p),
        ("dst", ctypes.c_void_p),
        ("rows", ctypes.c_int32),
        ("cols", ctypes.c_int32),
        ("src_batch_stride", ctypes.c_int64),
        ("dst_batch_stride", ctypes.c_int64),
    ]


SPECS = tuple(KernelSpec(f"ei_transpose_b{n}", "transpose.cu", TransposeParams) for n in (1, 2, 4))


def transpose(src: np.ndarray, dst: np.ndarray, batch: int, rows: int, cols: int) -> KernelCall:
    """``dst[b, c, r] = src[b, r, c]`` for contiguous ``src`` [batch, rows, cols] and ``dst``
    [batch, cols, rows] (any dtype of 1, 2 or 4 bytes)."""
    if src.dtype.itemsize != dst.dtype.itemsize or src.dtype.itemsize not in (1, 2, 4):
        raise BackendError(
            f"transpose moves 1, 2 or 4-byte elements of one size, got {src.dtype} -> {dst.dtype}"
        )
    if src.size != batch * rows * cols or dst.size != src.size:
        raise BackendError(
            f"transpose of [{batch}, {rows}, {cols}] needs {batch * rows * cols} "
            f"elements on both sides, got {src.size} and {dst.size}"
        )
    if batch > 65535:
        raise BackendError(f"transpose batches at most 65535 matrices, got {batch}")
    params = TransposeParams(
        src=ptr(src),
        dst=ptr(dst),
        rows=rows,
        cols=cols,
        src_batch_stride=rows * cols,
        dst_batch_stride=rows * cols,
    )
    grid = (-(-cols // TILE), -(-rows // TILE), batch)
    return KernelCall(
        f"ei_transpose_b{src.dtype.itemsize}", grid, (TILE, TILE_ROWS, 1), params, keep=(src, dst)
    )


def nchw_to_nhwc(src: np.ndarray, dst: np.ndarray) -> KernelCall:
    """NCHW ``src`` -> NHWC ``dst``."""
    n, c, h, w = src.shape
    return transpose(src, dst, n, c, h * w)


def nhwc_to_nchw(src: np.ndarray, dst: np.ndarray) -> KernelCall:
    """NHWC ``src`` -> NCHW ``dst``."""
    n, h, w, c = src.shape
    return transpose(src, dst, n, h * w, c)
