"""IR layers → kernel launches: which library kernel computes a node, with what parameters.

``LOWERINGS`` maps an op type to a function of a :class:`Layer` (the node, its inputs and
outputs as :class:`~edge_infer.cuda.arena.DeviceArray` views, constants also as host arrays)
that returns the node's :class:`~edge_infer.cuda.library.KernelCall` list, or ``None`` when
the library does not cover this instance (a dtype, an attribute, a layout): the program then
runs the layer on the host fallback (``program.py``), and the build lists it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_infer.cuda.arena import DeviceArray
from edge_infer.cuda.library import KernelCall
from edge_infer.cuda.params import conv as conv_params
from edge_infer.cuda.params.activation import activation
from edge_infer.cuda.params.copy import copy
from edge_infer.cuda.params.gemm import TACTICS as GEMM_TACTICS
from edge_infer.cuda.params.gemm import GemmParams
from edge_infer.cuda.params.pointwise import pointwise
from edge_infer.cuda.params.pool import global_pool, pool
from edge_infer.cuda.params.reformat import reformat
from edge_infer.cuda.params.resize import resize, resize_tables
from edge_infer.cuda.params.softmax import softmax
from edge_infer.engine.ir import Node
from edge_infer.errors import BackendError

_F32 = np.dtype(np.float32)
_F16 = np.dtype(np.float16)
_S8 = np.dtype(np.int8)
_OUT = {_F32: "f32", _F16: "f16", _S8: "s8"}
_PRECISION = {_F32: "fp32", _F16: "fp16", _S8: "int8"}


@dataclass
class Layer:
    """One node bound to device views. ``consts[k]`` is input k's host array when it is a
    constant (``ins[k]`` is then its uploaded copy); ``upload`` puts a host table on the
    device (kept for the engine's life)."""

    node: Node
    ins: list[DeviceArray | None]
    consts: list[np.ndarray | None]
    outs: list[DeviceArray]
    opset: int
    upload: Callable[[np.ndarray], DeviceArray]
    tactic: str | None = None
    extra_reads: list[DeviceArray] = field(default_factory=list)

    @property
    def attrs(self) -> dict[str, Any]:
        return self.node.attrs


Lowering = Callable[[Layer], "list[KernelCall] | None"]
LOWERINGS: dict[str, Lowering] = {}


def lowering(*op_types: str) -> Callable[[Lowering], Lowering]:
    def register(fn: Lowering) -> Lowering:
        for op in op_types:
            if op in LOWERINGS:
                raise ValueError(f"CUDA lowering for {op} registered twice")
            LOWERINGS[op] = fn
        return fn

    return register


def lower(layer: Layer) -> list[KernelCall] | None:
    """The launches computing ``layer``, or None for the host fallback."""
    fn = LOWERINGS.get(layer.node.op_type)
    if fn is None:
        return None
    try:
        return fn(layer)
    except BackendError:  # a planner refused this instance (layout, dtype): host fallback
        return None


def element_strides(a: DeviceArray) -> list[int]:
    return [s // a.itemsize for s in a.strides]


def narrow(a: DeviceArray, axis: int, start: int, stop: int, step: int = 1) -> DeviceArray:
    """``a[..., start:stop:step, ...]`` along ``axis`` (``step`` > 0)."""
    shape, strides = list(a.shape), list(a.strides)
    shape[axis] = max(0, -(-(stop - start) // step))
    strides[axis] *= step
    return DeviceArray(a.buffer, a.offset + start * a.strides[axis], shape, a.dtype, strides)


# -- convolution ---------------------------------------------------------------------------


def conv_geometry(
    node: Node, x_shape: Sequence[int], w_shape: Sequence[int]
) -> conv_params.ConvGeometry:
    a = node.attrs
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET"):
        raise BackendError("auto_pad convolutions go to the host fallback")
    return conv_params.ConvGeometry.from_conv(
        x_shape,
        w_shape,
        group=int(a.get("group", 1)),
        strides=a.get("strides"),
        pads=a.get("pads"),
        dilations=a.get("dilations"),
    )


def conv_candidates(
    node: Node, x_dtype: Any, y_dtype: Any, x_shape: Sequence[int], w_shape: Sequence[int], sm: int
) -> tuple[conv_params.ConvTactic, ...]:
    """The library tactics that compute this FusedConv/Conv: FP32 in and out, or FP16 in and
    out (an Fp16Layer's wrapped convolution)."""
    x_dtype, y_dtype = np.dtype(x_dtype), np.dtype(y_dtype)
    if x_dtype != y_dtype or x_dtype not in (_F32, _F16) or len(x_shape) != 4:
        return ()
    geom = conv_geometry(node, x_shape, w_shape)
    return conv_params.candidates(geom, _PRECISION[x_dtype], _OUT[x_dtype], sm)


@lowering("FusedConv", "Conv")
def _conv(layer: Layer) -> list[KernelCall] | None:
    node, ins, consts = layer.node, layer.ins, layer.consts
    x, w = ins[0], ins[1]
    y = layer.outs[0]
    if x is None or w is None or consts[1] is None or layer.tactic is None:
        return None
    tactic = conv_params.TACTICS_BY_ENTRY.get(layer.tactic)
    if (
        tactic is None
        or tactic.precision != _PRECISION.get(x.dtype)
        or tactic.out != _OUT.get(y.dtype)
        or w.dtype != x.dtype
    ):
        return None
    geom = conv_geometry(node, x.shape, w.shape)
    bias = ins[2] if len(ins) > 2 else None
    if bias is not None and bias.dtype != _F32:  # the float kernels take a float bias
        if consts[2] is None:
            return None
        bias = layer.upload(np.asarray(consts[2], np.float32))
        layer.extra_reads.append(bias)
    z = ins[3] if len(ins) > 3 else None
    a = node.attrs
    residual = str(a.get("residual", "none")) if node.op_type == "FusedConv" else "none"
    params = conv_params.conv_params(
        geom,
        x=x.gpudata,
        x_view=conv_params.tensor_view(element_strides(x)),
        weight=w.gpudata,
        y=y.gpudata,
        y_view=conv_params.tensor_view(element_strides(y)),
        bias=None if bias is None else bias.gpudata,
        z=None if z is None else z.gpudata,
        z_view=None if z is None else conv_params.tensor_view(element_strides(z)),
        activation=str(a.get("activation", "")) if node.op_type == "FusedConv" else "",
        activation_params=[float(v) for v in a.get("activation_params", ())]
        if node.op_type == "FusedConv"
        else (),
        residual=residual,
    )
    return [tactic.call(geom, params)]


# -- INT8 layers -----------------------------------------------------------------------------

_STORE = {"int8": _S8, "fp16": _F16, "fp32": _F32}


def qconv_candidates(
    node: Node, x_dtype: Any, y_dtype: Any, x_shape: Sequence[int], w_shape: Sequence[int], sm: int
) -> tuple[conv_params.ConvTactic, ...]:
    """The INT8 tactics of a QConv whose input is already int8 (a float input is quantized
    by the layer itself: the host fallback), writing its ``out_precision``."""
    if np.dtype(x_dtype) != _S8 or len(x_shape) != 4:
        return ()
    out = _STORE.get(str(node.attrs.get("out_precision", "fp32")))
    if out is None or out != np.dtype(y_dtype):
        return ()
    geom = conv_geometry(node, x_shape, w_shape)
    return conv_params.candidates(geom, "int8", _OUT[out], sm)


@lowering("QConv")
def _qconv(layer: Layer) -> list[KernelCall] | None:
    """INT8 convolution: int8 X at x_scale, int8 W with per-channel w_scale, int32 bias,
    requantized in the epilogue (residual Z in the output's storage, int8 at z_scale)."""
    node, ins, consts, y = layer.node, layer.ins, layer.consts, layer.outs[0]
    x, w, w_scale = ins[0], ins[1], ins[2]
    if x is None or w is None or w_scale is None or consts[1] is None or layer.tactic is None:
        return None
    tactic = conv_params.TACTICS_BY_ENTRY.get(layer.tactic)
    if tactic is None or tactic.precision != "int8" or tactic.out != _OUT.get(y.dtype):
        return None
    if x.dtype != _S8 or w.dtype != _S8 or w_scale.dtype != _F32:
        return None
    bias = ins[3] if len(ins) > 3 else None
    z = ins[4] if len(ins) > 4 else None
    if (bias is not None and bias.dtype != np.int32) or (z is not None and z.dtype != y.dtype):
        return None
    a = node.attrs
    geom = conv_geometry(node, x.shape, w.shape)
    params = conv_params.conv_params(
        geom,
        x=x.gpudata,
        x_view=conv_params.tensor_view(element_strides(x)),
        weight=w.gpudata,
        y=y.gpudata,
        y_view=conv_params.tensor_view(element_strides(y)),
        bias=None if bias is None else bias.gpudata,
        z=None if z is None else z.gpudata,
        z_view=None if z is None else conv_params.tensor_view(element_strides(z)),
        activation=str(a.get("activation", "")),
        activation_params=[float(v) for v in a.get("activation_params", ())],
        residual=str(a.get("residual", "none")),
        w_scale=w_scale.gpudata,
        x_scale=float(a["x_scale"]),
        y_scale=float(a.get("out_scale", 0.0)),
        z_scale=float(a.get("z_scale", 0.0)),
    )
    return [tactic.call(geom, params)]


@lowering("QGemm")
def _qgemm(layer: Layer) -> list[KernelCall] | None:
    """INT8 ``X @ W_q.T + B`` (X int8 [M, K], W_q [N, K], per-column scales, int32 bias)."""
    x, w, w_scale, y = layer.ins[0], layer.ins[1], layer.ins[2], layer.outs[0]
    bias = layer.ins[3] if len(layer.ins) > 3 else None
    out = _OUT.get(y.dtype)
    if x is None or w is None or w_scale is None or x.ndim != 2 or y.ndim != 2 or out is None:
        return None
    if x.dtype != _S8 or w.dtype != _S8 or (bias is not None and bias.dtype != np.int32):
        return None
    if not (x.contiguous and w.contiguous and y.strides[1] == y.itemsize):
        return None
    m, k = x.shape
    n = w.shape[0]
    a = layer.attrs
    p = GemmParams(
        a=x.gpudata,
        b=w.gpudata,
        c=None if bias is None else bias.gpudata,
        w_scale=w_scale.gpudata,
        y=y.gpudata,
        a_row=k,
        a_col=1,
        b_row=1,
        b_col=k,
        c_row=0,
        c_col=1,
        y_row=element_strides(y)[0],
        m=m,
        n=n,
        k=k,
        batch=1,
        alpha=1.0,
        beta=0.0 if bias is None else 1.0,
        x_scale=float(a["x_scale"]),
        y_scale=float(a.get("out_scale", 0.0)),
    )
    tactic = next(t for t in GEMM_TACTICS if t.entry == f"ei_gemm_s8_wmma_32x32_{out}")
    return [tactic.call(p)]


@lowering("Reformat")
def _reformat(layer: Layer) -> list[KernelCall] | None:
    x, y = layer.ins[0], layer.outs[0]
    if x is None or not (x.contiguous and y.contiguous):
        return None
    a = layer.attrs
    scale = a.get("x_scale") if x.dtype == _S8 else a.get("y_scale", 1.0)
    return [reformat(x, y, float(scale if scale is not None else 1.0))]  # type: ignore[arg-type]


# -- FP16 layers ---------------------------------------------------------------------------


@lowering("Fp16Layer")
def _fp16_layer(layer: Layer) -> list[KernelCall] | None:
    """The wrapped layer on FP16 storage, when every activation input and every output is
    float16 (the kernels then round once to FP16 as the wrapper does); otherwise (an input
    still float32, an output kept in float32) the host fallback."""
    a = layer.attrs
    op = str(a.get("op", ""))
    if any(
        x is not None and c is None and x.dtype != _F16
        for x, c in zip(layer.ins, layer.consts, strict=True)
    ):
        return None
    if any(y.dtype != _F16 for y in layer.outs) or op not in LOWERINGS or op == "Fp16Layer":
        return None
    inner = Node(op, layer.node.name, str(a.get("op_domain", "")), dict(a.get("op_attrs", {})))
    inner.meta = layer.node.meta
    sub = Layer(
        inner,
        layer.ins,
        layer.consts,
        layer.outs,
        int(a.get("opset", layer.opset)),
        layer.upload,
        layer.tactic,
        layer.extra_reads,
    )
    return LOWERINGS[op](sub)


# -- pooling, resize -----------------------------------------------------------------------


@lowering("MaxPool", "AveragePool")
def _pool(layer: Layer) -> list[KernelCall] | None:
    if len(layer.outs) != 1 or layer.ins[0] is None or layer.ins[0].ndim != 4:
        return None
    a = layer.attrs
    if a.get("storage_order", 0):
        return None
    kind = "max" if layer.node.op_type == "MaxPool" else "avg"
    return [
        pool(
            kind,
            layer.ins[0],
            layer.outs[0],
            kernel_shape=a["kernel_shape"],
            strides=a.get("strides"),
            dilations=a.get("dilations"),
            pads=a.get("pads"),
            auto_pad=str(a.get("auto_pad", "NOTSET")),
            ceil_mode=int(a.get("ceil_mode", 0)),
            count_include_pad=int(a.get("count_include_pad", 0)),
        )
    ]


@lowering("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(layer: Layer) -> list[KernelCall] | None:
    x = layer.ins[0]
    if x is None or x.ndim != 4:
        return None
    kind = "max" if layer.node.op_type == "GlobalMaxPool" else "avg"
    # one warp per plane when the plane is small (a head's 7x7 or smaller): more threads
    # would idle in the reduction
    block = 32 if x.shape[2] * x.shape[3] <= 256 else 128
    return [global_pool(kind, x, layer.outs[0], block)]


@lowering("Resize")
def _resize(layer: Layer) -> list[KernelCall] | None:
    x, consts = layer.ins[0], layer.consts
    if (
        x is None
        or x.ndim != 4
        or any(layer.ins[k] is not None and consts[k] is None for k in range(1, len(layer.ins)))
    ):
        return None  # scales/sizes computed at run time: host fallback
    a = layer.attrs

    def const(k: int) -> np.ndarray | None:
        return consts[k] if k < len(consts) and consts[k] is not None and consts[k].size else None

    tables = resize_tables(
        x.shape,
        roi=const(1),
        scales=const(2),
        sizes=const(3),
        mode=str(a.get("mode", "nearest")),
        coordinate_transformation_mode=str(a.get("coordinate_transformation_mode", "half_pixel")),
        nearest_mode=str(a.get("nearest_mode", "round_prefer_floor")),
        extrapolation_value=float(a.get("extrapolation_value", 0.0)),
        axes=a.get("axes"),
        keep_aspect_ratio_policy=str(a.get("keep_aspect_ratio_policy", "stretch")),
        antialias=int(a.get("antialias", 0)),
    )
    dev = [
        None if t is None else layer.upload(t)
        for t in (tables.row_index, tables.row_weight, tables.col_index, tables.col_weight)
    ]
    layer.extra_reads += [d for d in dev if d is not None]
    return [resize(x, layer.outs[0], tables, *dev)]


@lowering("Gemm")
def _gemm(layer: Layer) -> list[KernelCall] | None:
    """Y = alpha * A' @ B' + beta * C (FP32): transposes and C's broadcast are strides."""
    a, b, y = layer.ins[0], layer.ins[1], layer.outs[0]
    c = layer.ins[2] if len(layer.ins) > 2 else None
    if (
        a is None
        or b is None
        or a.ndim != 2
        or b.ndim != 2
        or y.ndim != 2
        or not (a.dtype == b.dtype == y.dtype == _F32)
        or (c is not None and c.dtype != _F32)
    ):
        return None
    at = element_strides(a)
    bt = element_strides(b)
    if layer.attrs.get("transA", 0):
        at = at[::-1]
    if layer.attrs.get("transB", 0):
        bt = bt[::-1]
    m, n = y.shape
    k = a.shape[0] if layer.attrs.get("transA", 0) else a.shape[1]
    p = GemmParams(
        a=a.gpudata,
        b=b.gpudata,
        c=None if c is None else c.gpudata,
        y=y.gpudata,
        a_row=at[0],
        a_col=at[1],
        b_row=bt[0],
        b_col=bt[1],
        y_row=element_strides(y)[0],
        m=m,
        n=n,
        k=k,
        batch=1,
        alpha=float(layer.attrs.get("alpha", 1.0)),
        beta=float(layer.attrs.get("beta", 1.0)) if c is not None else 0.0,
    )
    if c is not None:  # broadcast C to [M, N] by zero strides
        cs = element_strides(c)
        shape = (1,) * (2 - c.ndim) + c.shape
        cs = [0] * (2 - c.ndim) + cs
        p.c_row = 0 if shape[0] == 1 else cs[0]
        p.c_col = 0 if shape[1] == 1 else cs[1]
    tactic = next(t for t in GEMM_TACTICS if t.entry == "ei_gemm_f32_32x32")
    return [tactic.call(p)]


# -- elementwise -----------------------------------------------------------------------------


@lowering("Sigmoid")
def _sigmoid(layer: Layer) -> list[KernelCall] | None:
    x, y = layer.ins[0], layer.outs[0]
    if x is None or not (x.contiguous and y.contiguous):
        return None
    return [activation(x, y, "sigmoid")]


@lowering("Softmax", "LogSoftmax")
def _softmax(layer: Layer) -> list[KernelCall] | None:
    x, y = layer.ins[0], layer.outs[0]
    if x is None or layer.opset < 13 or not (x.contiguous and y.contiguous):
        return None
    return [softmax(x, y, int(layer.attrs.get("axis", -1)), log=layer.node.op_type == "LogSoftmax")]


@lowering("Pointwise")
def _pointwise(layer: Layer) -> list[KernelCall] | None:
    ins = [a for a in layer.ins]
    if any(a is None for a in ins) or not layer.outs[0].contiguous:
        return None
    return [
        pointwise(
            ins,
            layer.outs[0],
            layer.attrs["steps"],  # type: ignore[arg-type]
            int(layer.attrs.get("opset", layer.opset)),
        )
    ]


_BINARY = ("Add", "Sub", "Mul", "Div", "Max", "Min", "Pow")
_UNARY = ("Neg", "Abs", "Exp", "Log", "Sqrt", "Tanh", "Reciprocal", "Floor", "Ceil", "Relu")


@lowering(*_BINARY, *_UNARY)
def _elementwise(layer: Layer) -> list[KernelCall] | None:
    """One ONNX elementwise op as a one-step Pointwise program; the input with the output's
    shape goes first (the kernel broadcasts the others)."""
    ins, out = layer.ins, layer.outs[0]
    if any(a is None for a in ins) or not out.contiguous or not 1 <= len(ins) <= 2:
        return None
    order = sorted(range(len(ins)), key=lambda k: ins[k].shape != out.shape)  # type: ignore[union-attr]
    if ins[order[0]].shape != out.shape:  # type: ignore[union-attr]
        return None
    position = {k: order.index(k) for k in range(len(ins))}
    step = {"op": layer.node.op_type, "args": [position[k] for k in range(len(ins))], "attrs": {}}
    return [pointwise([ins[k] for k in order], out, [step], layer.opset)]  # type: ignore[misc]


# -- data movement -------------------------------------------------------------------------


def _copies(pairs: list[tuple[DeviceArray, DeviceArray]]) -> list[KernelCall] | None:
    calls = []
    for src, dst in pairs:
        if src.size == 0:
            continue
        if src.ndim > 4:
            return None
        calls.append(copy(src, dst))  # type: ignore[arg-type]
    return calls


@lowering("Concat")
def _concat(layer: Layer) -> list[KernelCall] | None:
    out = layer.outs[0]
    axis = int(layer.attrs.get("axis", 0)) % out.ndim
    pairs, start = [], 0
    for a in layer.ins:
        if a is None:
            return None
        pairs.append((a, narrow(out, axis, start, start + a.shape[axis])))
        start += a.shape[axis]
    return _copies(pairs)


@lowering("Split")
def _split(layer: Layer) -> list[KernelCall] | None:
    x = layer.ins[0]
    if x is None:
        return None
    axis = int(layer.attrs.get("axis", 0)) % x.ndim
    pairs, start = [], 0
    for out in layer.outs:
        pairs.append((narrow(x, axis, start, start + out.shape[axis]), out))
        start += out.shape[axis]
    return _copies(pairs)


@lowering("Slice")
def _slice(layer: Layer) -> list[KernelCall] | None:
    x, consts = layer.ins[0], layer.consts
    if x is None or any(
        layer.ins[k] is not None and consts[k] is None for k in range(1, len(layer.ins))
    ):
        return None
    starts, ends = consts[1].tolist(), consts[2].tolist()  # type: ignore[union-attr]
    axes = (
        consts[3].tolist()
        if len(consts) > 3 and consts[3] is not None
        else list(range(len(starts)))
    )
    steps = consts[4].tolist() if len(consts) > 4 and consts[4] is not None else [1] * len(starts)
    view = x
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        if st <= 0:
            return None
        ax %= x.ndim
        begin, stop, _ = slice(int(s), int(e), int(st)).indices(x.shape[ax])
        view = narrow(view, ax, begin, max(begin, stop), int(st))
    if view.shape != layer.outs[0].shape:
        return None
    return _copies([(view, layer.outs[0])])


@lowering("Transpose")
def _transpose(layer: Layer) -> list[KernelCall] | None:
    x = layer.ins[0]
    if x is None:
        return None
    perm = layer.attrs.get("perm") or list(reversed(range(x.ndim)))
    src = DeviceArray(
        x.buffer, x.offset, [x.shape[p] for p in perm], x.dtype, [x.strides[p] for p in perm]
    )
    return _copies([(src, layer.outs[0])])


@lowering("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")
def _reshape(layer: Layer) -> list[KernelCall] | None:
    x, out = layer.ins[0], layer.outs[0]
    if x is None or not x.contiguous:
        return None
    return (
        _copies([(x.reshape(out.shape), out)])
        if out.ndim <= 4
        else _copies([(x.reshape((out.size,)), out.reshape((out.size,)))])
    )
