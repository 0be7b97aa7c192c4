"""Mirror of ``kernels/activation.cu``: a standalone activation layer (Sigmoid and the rest of
the epilogue activations), fp32 or fp16."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import numpy as np

from edge_infer.cuda.activations import encode
from edge_infer.cuda.library import KernelCall, KernelSpec, grid_1d
from edge_infer.cuda.params import ptr
from edge_infer.errors import BackendError


class ActivationParams(ctypes.Structure):
    """``struct ActivationParams``."""

    _fields_ = [
        ("x", ctypes.c_void_p),
        ("y", ctypes.c_void_p),
        ("count", ctypes.c_int32),
        ("act", ctypes.c_int32),
        ("p0", ctypes.c_float),
        ("p1", ctypes.c_float),
    ]


SPECS = tuple(
    KernelSpec(f"ei_activation_{t}", "activation.cu", ActivationParams) for t in ("f32", "f16")
)
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16"}


def activation(x: np.ndarray, y: np.ndarray, name: str, params: Sequence[float] = ()) -> KernelCall:
    """``y = act(x)`` for a fused.py activation ``name`` (e.g. ``"sigmoid"``) and its params."""
    suffix = _SUFFIX.get(np.dtype(x.dtype))
    if suffix is None or x.dtype != y.dtype or x.size != y.size:
        raise BackendError(
            f"activation takes fp32 or fp16 of one dtype and size, got "
            f"{x.dtype}[{x.size}] -> {y.dtype}[{y.size}]"
        )
    code, p0, p1 = encode(name, params)
    call = ActivationParams(x=ptr(x), y=ptr(y), count=int(x.size), act=int(code), p0=p0, p1=p1)
    return KernelCall(
        f"ei_activation_{suffix}", grid_1d(x.size, 256), (256, 1, 1), call, keep=(x, y)
    )
