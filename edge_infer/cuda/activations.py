"""The epilogue activation codes of ``kernels/epilogue.cuh`` (``enum EiAct``), and the map from
the IR's fused activation names (:data:`edge_infer.engine.ops.fused.ACTIVATIONS`) to the
``(code, p0, p1)`` a kernel's params carry."""

from __future__ import annotations

import enum
from collections.abc import Sequence

from edge_infer.engine.ops.fused import check_activation
from edge_infer.errors import BackendError


class EiAct(enum.IntEnum):
    """``enum EiAct`` of epilogue.cuh, value for value."""

    NONE = 0
    RELU = 1
    LEAKY_RELU = 2  # p0 = alpha
    CLIP = 3  # p0 = min, p1 = max
    SIGMOID = 4
    SILU = 5
    HARD_SWISH = 6
    HARD_SIGMOID = 7  # p0 = alpha, p1 = beta
    MISH = 8
    GELU = 9  # exact (erf)
    GELU_TANH = 10
    TANH = 11
    ELU = 12  # p0 = alpha


#: fused.py activation name -> code (``gelu`` with params ``[1.0]`` is GELU_TANH)
BY_NAME: dict[str, EiAct] = {
    "": EiAct.NONE,
    "relu": EiAct.RELU,
    "leaky_relu": EiAct.LEAKY_RELU,
    "clip": EiAct.CLIP,
    "sigmoid": EiAct.SIGMOID,
    "silu": EiAct.SILU,
    "hard_swish": EiAct.HARD_SWISH,
    "hard_sigmoid": EiAct.HARD_SIGMOID,
    "mish": EiAct.MISH,
    "gelu": EiAct.GELU,
    "tanh": EiAct.TANH,
    "elu": EiAct.ELU,
}


def encode(activation: str, params: Sequence[float] = ()) -> tuple[EiAct, float, float]:
    """``(code, p0, p1)`` for a FusedConv-style ``activation`` and its ``activation_params``."""
    problem = check_activation(activation, params)
    if problem:
        raise BackendError(f"cannot encode the activation for a CUDA kernel: {problem}")
    code = BY_NAME[activation]
    if code is EiAct.GELU:
        return (EiAct.GELU_TANH if params and params[0] else EiAct.GELU), 0.0, 0.0
    values = [float(v) for v in params] + [0.0, 0.0]
    return code, values[0], values[1]
