"""Mirror of ``kernels/reformat.cu``: fp32 <-> fp16 <-> int8 (per-tensor scale) reformats."""

from __future__ import annotations

import ctypes

import numpy as np

from edge_infer.cuda.library import KernelCall, KernelSpec, grid_1d
from edge_infer.cuda.params import ptr
from edge_infer.errors import BackendError


class ReformatParams(ctypes.Structure):
    """``struct ReformatParams``."""

    _fields_ = [
        ("src", ctypes.c_void_p),
        ("dst", ctypes.c_void_p),
        ("count", ctypes.c_int32),
        ("scale", ctypes.c_float),
    ]


_NAMES = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16", np.dtype(np.int8): "i8"}
PAIRS = (("f32", "f16"), ("f16", "f32"), ("f32", "i8"), ("f16", "i8"), ("i8", "f32"), ("i8", "f16"))
SPECS = tuple(KernelSpec(f"ei_reformat_{a}_{b}", "reformat.cu", ReformatParams) for a, b in PAIRS)


def reformat(src: np.ndarray, dst: np.ndarray, scale: float = 1.0) -> KernelCall:
    """The call writing ``src`` into ``dst`` in ``dst``'s dtype (contiguous, same size).

    ``scale`` is the int8 side's per-tensor scale (real = q * scale); it must be positive.
    """
    names = _NAMES.get(np.dtype(src.dtype)), _NAMES.get(np.dtype(dst.dtype))
    if names not in PAIRS:
        raise BackendError(
            f"no reformat from {src.dtype} to {dst.dtype}; the pairs are "
            f"{['->'.join(p) for p in PAIRS]}"
        )
    if src.size != dst.size:
        raise BackendError(f"reformat needs equal sizes, got {src.size} and {dst.size}")
    if "i8" in names and not float(scale) > 0.0:
        raise BackendError(f"an int8 reformat needs a positive scale, got {scale}")
    params = ReformatParams(src=ptr(src), dst=ptr(dst), count=int(src.size), scale=float(scale))
    return KernelCall(
        f"ei_reformat_{names[0]}_{names[1]}",
        grid_1d(src.size, 256),
        (256, 1, 1),
        params,
        keep=(src, dst),
    )
