"""Elementwise steps: float32 binary and unary ufuncs in place, Relu, Sigmoid and Softmax
(native passes split between the layer's threads) and fused edge_infer::Pointwise chains."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_infer.engine.backends.cpu import dense, native
from edge_infer.engine.backends.cpu.parallel import share
from edge_infer.engine.backends.cpu.stepkit import (
    Run,
    Scratch,
    is_float,
    native_ok,
    step,
    thread_parts,
)
from edge_infer.engine.ir import Node

F16, F32 = np.dtype(np.float16), np.dtype(np.float32)
#: the most values along a softmax's axis that its float16-storage kernel takes
#: (kernels/pointwise.c SOFTMAX_HALF_AXIS)
SOFTMAX_HALF_AXIS = 512

_BINARY = {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": np.divide,
    "Max": np.maximum,
    "Min": np.minimum,
}
_UNARY = {
    "Neg": np.negative,
    "Abs": np.abs,
    "Exp": np.exp,
    "Log": np.log,
    "Sqrt": np.sqrt,
    "Tanh": np.tanh,
    "Reciprocal": np.reciprocal,
    "Floor": np.floor,
    "Ceil": np.ceil,
}


@step(*_BINARY)
def _binary(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    if len(ins) != 2 or not is_float(*ins) or ins[0].dtype != ins[1].dtype:
        return None
    ufunc, (a, b), out = _BINARY[node.op_type], ins, outs[0]
    if np.broadcast_shapes(np.shape(a), np.shape(b)) != out.shape:
        return None
    return lambda: ufunc(a, b, out=out)


@step(*_UNARY)
def _unary(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    if not is_float(ins[0]):
        return None
    ufunc, x, out = _UNARY[node.op_type], ins[0], outs[0]
    return lambda: ufunc(x, out=out)


@step("Relu")
def _relu(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    x, out = ins[0], outs[0]
    return lambda: np.maximum(x, 0, out=out)


def _contiguous(*arrays: Any) -> bool:
    """Every array a C-contiguous float32 or float16 ndarray."""
    return all(
        isinstance(a, np.ndarray) and a.dtype in (F32, F16) and a.flags.c_contiguous for a in arrays
    )


def bind_unary(
    x: np.ndarray, out: np.ndarray, kind: int, scratch: Scratch, half: int = 0
) -> Run | None:
    """``unary_f32`` (sigmoid or tanh) over C-contiguous ``x`` into ``out`` of its shape, one
    vectorized pass split between the layer's threads; ``half``: its float16 storage bits
    (kernels/pointwise.c: FP16 layers, tactics/cpu_fp16.py). None where it cannot run."""
    if native.library() is None or not _contiguous(x, out) or x.shape != out.shape:
        return None
    xs, ys = x.itemsize, out.itemsize
    calls = [
        native.NativeCall("unary_f32", dict(x=x.ctypes.data + xs * a, y=out.ctypes.data + ys * a,
                          n=b - a, kind=kind, half=half), (x, out))
        for a, b in thread_parts(x.size, scratch, -(-x.size // 64))
        for a, b in [(64 * a, min(x.size, 64 * b))]
    ]  # fmt: skip
    return share(calls, getattr(scratch, "pool", None))


def bind_softmax(
    x: np.ndarray, out: np.ndarray, axis: int, scratch: Scratch, half: int = 0
) -> Run | None:
    """``softmax_f32`` over axis ``axis`` of C-contiguous ``x`` into ``out`` of its shape,
    outer indices split between the layer's threads; ``half``: float16 storage bits (at most
    SOFTMAX_HALF_AXIS values along the axis). None where it cannot run."""
    if native.library() is None or not _contiguous(x, out) or x.shape != out.shape:
        return None
    if half and x.shape[axis] > SOFTMAX_HALF_AXIS:
        return None
    outer, inner = int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis + 1 :]))
    block = x.shape[axis] * inner  # values of one outer index
    calls = [
        native.NativeCall("softmax_f32", dict(x=x.ctypes.data + a * block * x.itemsize,
                          y=out.ctypes.data + a * block * out.itemsize, outer=b - a,
                          axis=x.shape[axis], inner=inner, half=half), (x, out))
        for a, b in thread_parts(x.size, scratch, outer)
    ]  # fmt: skip
    return share(calls, getattr(scratch, "pool", None))


@step("Sigmoid")
def _sigmoid(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    if not is_float(ins[0]):
        return None
    x, out = ins[0], outs[0]
    if native_ok(x, out) is not None:  # one vectorized pass, split between threads
        run = bind_unary(x, out, native.Activation.SIGMOID, scratch)
        if run is not None:
            return run

    def run() -> None:  # 1 / (1 + exp(-x)), in place; exp overflow gives the right limit
        np.negative(x, out=out)
        with np.errstate(over="ignore"):
            np.exp(out, out=out)
        np.add(out, 1, out=out)
        np.reciprocal(out, out=out)

    return run


@step("Softmax")
def _softmax(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    x, out = ins[0], outs[0]
    opset_axis = node.attrs.get("axis", -1)
    if node.graph is not None and node.graph.opsets.get("", 17) < 13:
        return None  # old flatten-to-2D semantics: keep the reference
    if not is_float(x):
        return None
    axis = int(opset_axis) % x.ndim
    if native_ok(x, out) is not None:
        run = bind_softmax(x, out, axis, scratch)
        if run is not None:
            return run
    reduced = list(x.shape)
    reduced[axis] = 1
    tmp = scratch(tuple(reduced), x.dtype, "softmax")

    def run() -> None:
        np.max(x, axis=axis, keepdims=True, out=tmp)
        np.subtract(x, tmp, out=out)
        np.exp(out, out=out)
        np.sum(out, axis=axis, keepdims=True, out=tmp)
        np.divide(out, tmp, out=out)

    return run


#: the ops a float32 edge_infer::Pointwise chain runs here: the same numpy ufuncs as their
#: reference kernels (ops/elementwise.py) for float32
_CHAIN: dict[str, Any] = {**_BINARY, **_UNARY}


@step("edge_infer::Pointwise")
def _pointwise(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    """A float32 chain of elementwise ops (fused Add/Sub/Mul/Div/... with constants) as
    ufuncs writing the output in place, step after step; anything else: the reference."""
    out = outs[0]
    steps = node.attrs.get("steps")
    if not (steps and dense.is_f32(out) and all(dense.is_f32(a) for a in ins if a is not None)):
        return None
    calls: list[tuple[Any, list[Any]]] = []
    acc: Any = ins[0]
    for one in steps:
        ufunc = _CHAIN.get(one.get("op")) if isinstance(one, dict) else None
        if ufunc is None or one.get("attrs") or ufunc.nin != len(one.get("args", ())):
            return None
        args = []
        for a in one["args"]:
            arg = acc if a == "$acc" else None if a is None else ins[int(a)]
            if arg is None:
                return None
            if calls and a != "$acc" and np.may_share_memory(arg, out):
                return None  # an input in the output's memory, read after a step wrote it
            args.append(arg)
        if np.broadcast_shapes(*(np.shape(a) for a in args)) != out.shape:
            return None
        calls.append((ufunc, args))
        acc = out

    def run() -> None:
        with np.errstate(divide="ignore", invalid="ignore"):  # as the reference's Div
            for ufunc, args in calls:
                ufunc(*args, out=out)

    return run
