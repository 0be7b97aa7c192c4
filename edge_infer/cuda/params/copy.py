"""Mirror of ``kernels/copy.cu``: the strided copy of up to 4 dimensions by element size."""

from __future__ import annotations

import ctypes

import numpy as np

from edge_infer.cuda.library import KernelCall, KernelSpec, grid_1d
from edge_infer.cuda.params import ptr
from edge_infer.errors import BackendError


class CopyParams(ctypes.Structure):
    """``struct CopyParams``."""

    _fields_ = [
        ("src", ctypes.c_void_p),
        ("dst", ctypes.c_void_p),
        ("shape", ctypes.c_int32 * 4),
        ("src_strides", ctypes.c_int32 * 4),
        ("dst_strides", ctypes.c_int32 * 4),
        ("count", ctypes.c_int32),
    ]


SPECS = tuple(KernelSpec(f"ei_copy_b{n}", "copy.cu", CopyParams) for n in (1, 2, 4))


def _element_strides(a: np.ndarray) -> list[int]:
    strides = []
    for s in a.strides:
        if s % a.dtype.itemsize:
            raise BackendError(
                f"a stride of {s} bytes is not a whole number of "
                f"{a.dtype.itemsize}-byte elements; copy from a contiguous array"
            )
        strides.append(s // a.dtype.itemsize)
    return strides


def copy(src: np.ndarray, dst: np.ndarray) -> KernelCall:
    """The call that copies ``src`` into ``dst`` (same shape and item size; any strides)."""
    if src.shape != dst.shape or src.dtype.itemsize != dst.dtype.itemsize or src.ndim > 4:
        raise BackendError(
            f"copy needs equal shapes and item sizes, at most 4-D: {src.shape} "
            f"{src.dtype} -> {dst.shape} {dst.dtype}"
        )
    if src.dtype.itemsize not in (1, 2, 4):
        raise BackendError(f"copy moves 1, 2 or 4-byte elements, not {src.dtype}")
    pad = 4 - src.ndim
    params = CopyParams(
        src=ptr(src),
        dst=ptr(dst),
        shape=(ctypes.c_int32 * 4)(*([1] * pad + list(src.shape))),
        src_strides=(ctypes.c_int32 * 4)(*([0] * pad + _element_strides(src))),
        dst_strides=(ctypes.c_int32 * 4)(*([0] * pad + _element_strides(dst))),
        count=int(src.size),
    )
    return KernelCall(
        f"ei_copy_b{src.dtype.itemsize}",
        grid_1d(src.size, 256),
        (256, 1, 1),
        params,
        keep=(src, dst),
    )
