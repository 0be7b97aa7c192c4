"""Mirror of ``kernels/pointwise.cu``: the IR's ``Pointwise`` chains, interpreted per element.

:func:`pointwise` turns a node's ``steps`` (``{"op", "args", "attrs"}``, see
``edge_infer/engine/ops/fused.py``) into the kernel's step program: each op an ``EiPwOp`` code,
each argument a source (the running value, an input index, or none), attributes with the
ONNX defaults of the op at the node's opset, as the reference kernel resolves them.
"""

from __future__ import annotations

import ctypes
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edge_infer.cuda.library import KernelCall, KernelSpec, grid_1d
from edge_infer.cuda.params import ptr
from edge_infer.errors import BackendError

MAX_INPUTS, MAX_STEPS, MAX_RANK = 4, 8, 6
ACC, NONE = -1, -2

#: ONNX op type -> EiPwOp code, in the enum's order
OPS: dict[str, int] = {
    name: code
    for code, name in enumerate(
        (
            "Relu",
            "LeakyRelu",
            "Sigmoid",
            "Tanh",
            "HardSigmoid",
            "HardSwish",
            "Elu",
            "Selu",
            "Celu",
            "Softplus",
            "Softsign",
            "Mish",
            "Gelu",
            "GeluTanh",
            "ThresholdedRelu",
            "Exp",
            "Log",
            "Sqrt",
            "Reciprocal",
            "Neg",
            "Abs",
            "Floor",
            "Ceil",
            "Round",
            "Erf",
            "Sin",
            "Cos",
            "Clip",
            "Add",
            "Sub",
            "Mul",
            "Div",
            "Pow",
            "Max",
            "Min",
            "PRelu",
        )
    )
}
#: attributes carried in (f0, f1) per op
_ATTRS: dict[str, tuple[str, ...]] = {
    "LeakyRelu": ("alpha",),
    "HardSigmoid": ("alpha", "beta"),
    "Elu": ("alpha",),
    "Selu": ("alpha", "gamma"),
    "Celu": ("alpha",),
    "ThresholdedRelu": ("alpha",),
    "Clip": ("min", "max"),
}
_FLT_MAX = float(np.finfo(np.float32).max)


class PwStep(ctypes.Structure):
    """``struct PwStep``."""

    _fields_ = [
        ("op", ctypes.c_int32),
        ("a", ctypes.c_int32),
        ("b", ctypes.c_int32),
        ("c", ctypes.c_int32),
        ("f0", ctypes.c_float),
        ("f1", ctypes.c_float),
    ]


class PointwiseParams(ctypes.Structure):
    """``struct PointwiseParams``."""

    _fields_ = [
        ("in_", ctypes.c_void_p * MAX_INPUTS),
        ("out", ctypes.c_void_p),
        ("shape", ctypes.c_int32 * MAX_RANK),
        ("strides", (ctypes.c_int32 * MAX_RANK) * MAX_INPUTS),
        ("count", ctypes.c_int32),
        ("num_inputs", ctypes.c_int32),
        ("num_steps", ctypes.c_int32),
        ("in_half", ctypes.c_int32),
        ("out_half", ctypes.c_int32),
        ("steps", PwStep * MAX_STEPS),
    ]


SPECS = (KernelSpec("ei_pointwise", "pointwise.cu", PointwiseParams),)
_FLOAT = (np.dtype(np.float32), np.dtype(np.float16))


def _source(arg: Any, num_inputs: int) -> int:
    if arg is None:
        return NONE
    if arg == "$acc":
        return ACC
    if isinstance(arg, int | np.integer) and 0 <= int(arg) < num_inputs:
        return int(arg)
    raise BackendError(f"Pointwise step argument {arg!r} is not '$acc', None or an input index")


def encode_step(step: Mapping[str, Any], opset: int, num_inputs: int) -> PwStep:
    """One IR step as the kernel's :class:`PwStep`."""
    from edge_infer.engine.ops.fused import resolve_step

    op = str(step["op"])
    opdef = resolve_step(op, opset)
    # the reference kernel's own keyword defaults are the ONNX attribute defaults
    defaults = {
        name: p.default
        for name, p in inspect.signature(opdef.kernel).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    attrs = {**defaults, **opdef.defaults, **step.get("attrs", {})}
    name = op
    if op == "Gelu" and attrs.get("approximate", "none") == "tanh":
        name = "GeluTanh"
    if name not in OPS:
        raise BackendError(f"Pointwise step {op} has no CUDA kernel code; supported: {sorted(OPS)}")
    srcs = [_source(a, num_inputs) for a in step.get("args", [])] + [NONE, NONE, NONE]
    if srcs[0] == NONE:
        raise BackendError(f"Pointwise step {op}: its first operand is missing")
    values = [float(attrs[k]) for k in _ATTRS.get(op, ()) if k in attrs]
    if op == "Clip":  # opset < 11 attributes, else omitted inputs mean no bound
        values = [float(attrs.get("min", -np.inf)), float(attrs.get("max", np.inf))]
        if opset < 11:
            values = [float(attrs.get("min", -_FLT_MAX)), float(attrs.get("max", _FLT_MAX))]
    values += [0.0, 0.0]
    return PwStep(op=OPS[name], a=srcs[0], b=srcs[1], c=srcs[2], f0=values[0], f1=values[1])


def _strides(a: np.ndarray, shape: tuple[int, ...]) -> list[int]:
    """``a``'s element strides in ``shape``'s index space (right-aligned, 0 where broadcast)."""
    if a.ndim > len(shape):
        raise BackendError(f"input of shape {a.shape} does not broadcast to {shape}")
    pad = len(shape) - a.ndim
    out = [0] * len(shape)
    for d, (n, s) in enumerate(zip(a.shape, a.strides)):
        if n != 1 and n != shape[pad + d]:
            raise BackendError(f"input of shape {a.shape} does not broadcast to {shape}")
        if s % a.dtype.itemsize:
            raise BackendError("input strides must be whole elements")
        out[pad + d] = 0 if n == 1 else s // a.dtype.itemsize
    return out


def pointwise(
    inputs: Sequence[np.ndarray],
    out: np.ndarray,
    steps: Sequence[Mapping[str, Any]],
    opset: int = 17,
) -> KernelCall:
    """The call running a Pointwise node's ``steps`` over ``inputs`` (input 0 has ``out``'s
    shape; the others broadcast to it) into contiguous ``out``; fp32 and fp16 mix freely."""
    if not 1 <= len(inputs) <= MAX_INPUTS or not 1 <= len(steps) <= MAX_STEPS:
        raise BackendError(
            f"the Pointwise kernel takes 1-{MAX_INPUTS} inputs and 1-{MAX_STEPS} "
            f"steps, got {len(inputs)} and {len(steps)}; split the chain"
        )
    shape = tuple(out.shape)
    if len(shape) > MAX_RANK or tuple(inputs[0].shape) != shape:
        raise BackendError(
            f"input 0 must have the output's shape {shape} (rank <= {MAX_RANK}), "
            f"got {inputs[0].shape}"
        )
    if any(np.dtype(a.dtype) not in _FLOAT for a in (*inputs, out)):
        raise BackendError("Pointwise inputs and output must be fp32 or fp16")
    pad = MAX_RANK - len(shape)
    full = (1,) * pad + shape
    params = PointwiseParams(
        out=ptr(out),
        count=int(out.size),
        num_inputs=len(inputs),
        num_steps=len(steps),
        out_half=int(out.dtype == np.float16),
    )
    params.shape[:] = full
    for k, a in enumerate(inputs):
        params.in_[k] = ptr(a)
        params.strides[k][:] = _strides(a, full)
        params.in_half |= int(a.dtype == np.float16) << k
    for s, step in enumerate(steps):
        params.steps[s] = encode_step(step, opset, len(inputs))
    return KernelCall(
        "ei_pointwise", grid_1d(out.size, 256), (256, 1, 1), params, keep=(*inputs, out)
    )
