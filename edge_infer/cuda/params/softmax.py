"""Mirror of ``kernels/softmax.cu``: Softmax / LogSoftmax over one axis, fp32 or fp16."""

from __future__ import annotations

import ctypes
import math

import numpy as np

from edge_infer.cuda.library import KernelCall, KernelSpec
from edge_infer.cuda.params import ptr
from edge_infer.errors import BackendError

#: warps per block of the row kernel
ROW_WARPS = 4


class SoftmaxParams(ctypes.Structure):
    """``struct SoftmaxParams``."""

    _fields_ = [
        ("x", ctypes.c_void_p),
        ("y", ctypes.c_void_p),
        ("outer", ctypes.c_int32),
        ("axis", ctypes.c_int32),
        ("inner", ctypes.c_int32),
        ("log", ctypes.c_int32),
    ]


SPECS = tuple(
    KernelSpec(f"ei_softmax_{kind}_{t}", "softmax.cu", SoftmaxParams)
    for kind in ("rows", "columns")
    for t in ("f32", "f16")
)
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16"}


def softmax(x: np.ndarray, y: np.ndarray, axis: int, *, log: bool = False) -> KernelCall:
    """Softmax (opset 13 semantics: one axis) of contiguous ``x`` into ``y``."""
    suffix = _SUFFIX.get(np.dtype(x.dtype))
    if suffix is None or x.dtype != y.dtype or x.shape != y.shape:
        raise BackendError(
            f"softmax takes fp32 or fp16 of one dtype and shape, got "
            f"{x.dtype}{list(x.shape)} -> {y.dtype}{list(y.shape)}"
        )
    if not -x.ndim <= axis < x.ndim:
        raise BackendError(f"softmax axis {axis} is outside a {x.ndim}-D tensor")
    axis %= x.ndim
    outer = math.prod(x.shape[:axis])
    inner = math.prod(x.shape[axis + 1 :])
    params = SoftmaxParams(
        x=ptr(x), y=ptr(y), outer=outer, axis=x.shape[axis], inner=inner, log=int(log)
    )
    if inner == 1:
        grid = (-(-outer // ROW_WARPS), 1, 1)
        return KernelCall(
            f"ei_softmax_rows_{suffix}", grid, (32 * ROW_WARPS, 1, 1), params, keep=(x, y)
        )
    grid = (-(-(outer * inner) // 128), 1, 1)
    return KernelCall(f"ei_softmax_columns_{suffix}", grid, (128, 1, 1), params, keep=(x, y))
