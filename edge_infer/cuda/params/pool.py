"""Mirror of ``kernels/pool.cu``: 2-D MaxPool / AveragePool and GlobalAveragePool / GlobalMaxPool.

The window geometry (auto_pad, pads, ceil_mode, dilations) is resolved by the engine's
``window_geometry``, exactly as the reference ops resolve it, so the kernel never re-derives
ONNX's rules. MaxPool's optional ``Indices`` output is not produced (the engine drops it
when no node consumes it; a model that consumes it stays on the CPU reference).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_infer.cuda.library import KernelCall, KernelSpec
from edge_infer.cuda.params import image_batch_stride, ptr
from edge_infer.engine.ops.conv import window_geometry
from edge_infer.errors import BackendError, ShapeInferenceError

BLOCK = 128
_TYPES = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16"}


class PoolParams(ctypes.Structure):
    """``struct PoolParams``."""

    _fields_ = [
        ("x", ctypes.c_void_p),
        ("y", ctypes.c_void_p),
        ("x_batch_stride", ctypes.c_int64),
        ("y_batch_stride", ctypes.c_int64),
        *(
            (name, ctypes.c_int32)
            for name in (
                "n",
                "c",
                "h",
                "w",
                "out_h",
                "out_w",
                "kernel_h",
                "kernel_w",
                "stride_h",
                "stride_w",
                "dil_h",
                "dil_w",
                "pad_top",
                "pad_left",
                "pad_bottom",
                "pad_right",
                "count_include_pad",
                "reserved",
            )
        ),
    ]


SPECS = tuple(
    KernelSpec(f"ei_pool_{kind}_{t}", "pool.cu", PoolParams)
    for kind in ("max", "avg", "global_max", "global_avg")
    for t in ("f32", "f16")
)


def _check(x: Any, y: Any, out_hw: Sequence[int]) -> str:
    dtype = np.dtype(x.dtype)
    if dtype not in _TYPES or np.dtype(y.dtype) != dtype or len(x.shape) != 4:
        raise BackendError(
            f"pool: x and y must be float32 or float16 NCHW of one dtype, got "
            f"{dtype.name} {tuple(x.shape)} -> {np.dtype(y.dtype).name}"
        )
    want = (*x.shape[:2], *out_hw)
    if tuple(y.shape) != tuple(want):
        raise BackendError(f"pool: y must have shape {want}, got {tuple(y.shape)}")
    return _TYPES[dtype]


def pool(
    kind: str,
    x: Any,
    y: Any,
    *,
    kernel_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    dilations: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    auto_pad: str = "NOTSET",
    ceil_mode: int = 0,
    count_include_pad: int = 0,
) -> KernelCall:
    """The call of MaxPool (``kind="max"``) or AveragePool (``"avg"``) with ONNX attributes,
    from ``x`` into ``y`` (which may be a channel slice of a larger buffer)."""
    if kind not in ("max", "avg"):
        raise BackendError(f"pool kind must be 'max' or 'avg', got {kind!r}")
    if len(x.shape) != 4:
        raise BackendError(f"pool: x must be NCHW (2-D pooling), got shape {tuple(x.shape)}")
    op = "MaxPool" if kind == "max" else "AveragePool"
    try:
        st, dil, begin, end, out = window_geometry(
            op, x.shape[2:], list(kernel_shape), strides, dilations, pads, auto_pad, int(ceil_mode)
        )
    except ShapeInferenceError as exc:
        raise BackendError(str(exc)) from None
    t = _check(x, y, out)
    n, c, h, w = (int(d) for d in x.shape)
    params = PoolParams(
        x=ptr(x),
        y=ptr(y),
        x_batch_stride=image_batch_stride("pool", "x", x),
        y_batch_stride=image_batch_stride("pool", "y", y),
        n=n,
        c=c,
        h=h,
        w=w,
        out_h=out[0],
        out_w=out[1],
        kernel_h=int(kernel_shape[0]),
        kernel_w=int(kernel_shape[1]),
        stride_h=st[0],
        stride_w=st[1],
        dil_h=dil[0],
        dil_w=dil[1],
        pad_top=begin[0],
        pad_left=begin[1],
        pad_bottom=end[0],
        pad_right=end[1],
        count_include_pad=int(bool(count_include_pad)),
        reserved=0,
    )
    grid = (max(1, -(-out[0] * out[1] // BLOCK)), c, n)
    return KernelCall(f"ei_pool_{kind}_{t}", grid, (BLOCK, 1, 1), params)


def global_pool(kind: str, x: Any, y: Any, block: int = BLOCK) -> KernelCall:
    """GlobalMaxPool (``kind="max"``) or GlobalAveragePool (``"avg"``): ``y`` is
    ``[N, C, 1, 1]`` (or a channel slice); one block of ``block`` threads per plane."""
    if kind not in ("max", "avg") or block % 32 or not 32 <= block <= 1024:
        raise BackendError(
            f"global pool: kind 'max' or 'avg' and a block that is a multiple "
            f"of 32 up to 1024, got {kind!r}, {block}"
        )
    if len(x.shape) != 4:
        raise BackendError(f"global pool: x must be NCHW, got shape {tuple(x.shape)}")
    t = _check(x, y, (1, 1))
    n, c, h, w = (int(d) for d in x.shape)
    params = PoolParams(
        x=ptr(x),
        y=ptr(y),
        x_batch_stride=image_batch_stride("pool", "x", x),
        y_batch_stride=image_batch_stride("pool", "y", y),
        n=n,
        c=c,
        h=h,
        w=w,
        out_h=1,
        out_w=1,
        kernel_h=h,
        kernel_w=w,
        stride_h=1,
        stride_w=1,
        dil_h=1,
        dil_w=1,
        pad_top=0,
        pad_left=0,
        pad_bottom=0,
        pad_right=0,
        count_include_pad=0,
        reserved=0,
    )
    return KernelCall(f"ei_pool_global_{kind}_{t}", (c, n, 1), (block, 1, 1), params)
