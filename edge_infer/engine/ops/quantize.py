"""Quantization ops: ONNX QuantizeLinear / DequantizeLinear, and the reduced-precision layers
the precision pass creates in the ``edge_infer`` domain (version 1).

- ``QuantizeLinear`` / ``DequantizeLinear`` (opsets 10, 13, 19, 21): explicit quantization
  (Q/DQ models run with the scales they carry). Per-tensor or per-axis scales, uint8/int8
  zero points, round half to even and saturation as the ONNX reference does.
- ``QConv`` (inputs ``X, W_q, w_scale, [B_q], [Z]``): an INT8 FusedConv. ``X`` is int8
  storage at ``x_scale`` (read as is), or float (quantized symmetrically with ``x_scale``, as
  the layer did before activations were stored in int8); ``W_q`` is int8 with per-output-channel
  ``w_scale``, ``B_q`` is int32 in units of ``x_scale * w_scale``. The int8 products are
  accumulated exactly (float GEMMs over integer values sized so that every partial sum is an
  exactly representable integer, so the result *is* the int32 accumulator), then requantized
  to real values, and the
  FusedConv epilogue (residual, activation) runs on them. A residual ``Z`` stored in int8 is
  dequantized with ``z_scale``. ``out_precision`` is what the output tensor stores: ``"fp32"``
  keeps the float32 result, ``"fp16"`` rounds it to float16 (returned as float16), ``"int8"``
  requantizes it with ``out_scale`` (returned as int8).
- ``QGemm`` (inputs ``X, W_q [N, K], w_scale, [B_q]``): an INT8 fully connected layer
  (Gemm with ``transB=1`` or MatMul by a constant), same scheme as QConv, over X's last axis.
- ``Reformat`` (input ``X``): converts a tensor between storage dtypes where a consumer cannot
  read its producer's (``to`` = ``"fp32"``, ``"fp16"`` or ``"int8"``; ``x_scale`` when X is
  int8, ``y_scale`` when the result is). Semantics in :func:`reformat` and docs/precision.md.
- ``Fp16Layer``: any float layer run as an FP16 engine runs it — float16 weights are upcast
  for the arithmetic, float inputs rounded to float16 on the way in (``round_inputs``) and
  every float output rounded to float16 on the way out (returned as float16 for the outputs
  listed in ``fp16_outputs``, which the engine stores in float16; in float32 otherwise).
  ``op``/``op_domain``/``op_attrs`` name the wrapped layer; ``opset`` is the opset its kernel
  is resolved at.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edge_infer.engine.ir import Node, TensorType
from edge_infer.engine.ops.conv import _infer_conv, conv
from edge_infer.engine.ops.fused import DOMAIN, apply_activation, check_activation
from edge_infer.engine.ops.registry import InferContext, OpDef, OpList
from edge_infer.errors import EdgeInferError

OPS = OpList()

#: symmetric int8 ranges: activations use the full range, weights the narrow one (as TensorRT)
ACT_QMIN, ACT_QMAX = -128, 127
W_QMAX = 127
FP16_MAX = 65504.0
#: storage precision name -> numpy dtype
STORAGE_DTYPES = {
    "fp32": np.dtype(np.float32),
    "fp16": np.dtype(np.float16),
    "int8": np.dtype(np.int8),
}

_INT_RANGES = {
    np.dtype(t): (np.iinfo(t).min, np.iinfo(t).max)
    for t in (np.int8, np.uint8, np.int16, np.uint16, np.int32)
}


# -- QuantizeLinear / DequantizeLinear -----------------------------------------------------------


def _per_axis(param: np.ndarray, x_ndim: int, axis: int) -> np.ndarray:
    """Reshape a 1-D per-axis scale/zero point to broadcast along ``axis`` of an x_ndim array."""
    param = np.asarray(param)
    if param.ndim == 0 or (param.size == 1 and param.ndim <= 1):
        return param.reshape(())
    shape = [1] * x_ndim
    shape[axis % x_ndim] = param.shape[0]
    return param.reshape(shape)


def _infer_quantize(ctx: InferContext) -> list[TensorType]:
    out = np.dtype(ctx.dtype(2)) if ctx.has(2) else np.dtype(np.uint8)
    if out not in _INT_RANGES:
        ctx.fail(f"zero point dtype {out} is not supported (int8, uint8, int16, uint16, int32)")
    return [TensorType(ctx.shape(0), out)]


def quantize_linear(
    x: np.ndarray,
    y_scale: np.ndarray,
    y_zero_point: np.ndarray | None = None,
    *,
    axis: int = 1,
    saturate: int = 1,
    block_size: int = 0,
    output_dtype: int = 0,
) -> np.ndarray:
    """``saturate(round_half_even(x / y_scale) + y_zero_point)``."""
    if block_size:
        raise EdgeInferError(
            "QuantizeLinear with block_size (blocked quantization) is not supported"
        )
    dtype = np.dtype(np.uint8) if y_zero_point is None else np.asarray(y_zero_point).dtype
    lo, hi = _INT_RANGES[dtype]
    scale = _per_axis(y_scale, x.ndim, axis).astype(np.float32)
    zp = 0 if y_zero_point is None else _per_axis(y_zero_point, x.ndim, axis).astype(np.int64)
    q = np.rint(np.asarray(x, np.float32) / scale).astype(np.float64) + zp
    return np.clip(q, lo, hi).astype(dtype)


def _infer_dequantize(ctx: InferContext) -> list[TensorType]:
    return [TensorType(ctx.shape(0), ctx.dtype(1))]


def dequantize_linear(
    x: np.ndarray,
    x_scale: np.ndarray,
    x_zero_point: np.ndarray | None = None,
    *,
    axis: int = 1,
    block_size: int = 0,
) -> np.ndarray:
    """``(x - x_zero_point) * x_scale``."""
    if block_size:
        raise EdgeInferError("DequantizeLinear with block_size is not supported")
    scale = np.asarray(x_scale)
    zp = 0 if x_zero_point is None else _per_axis(x_zero_point, x.ndim, axis).astype(np.int64)
    diff = np.asarray(x).astype(np.int64) - zp
    return (diff * _per_axis(scale, x.ndim, axis)).astype(scale.dtype)


for _version in (10, 13, 19, 21):
    OPS.add(OpDef("QuantizeLinear", _version, quantize_linear, _infer_quantize))
    OPS.add(OpDef("DequantizeLinear", _version, dequantize_linear, _infer_dequantize))


# -- QConv ---------------------------------------------------------------------------------------


def quantize_activation(x: np.ndarray, scale: float) -> np.ndarray:
    """Symmetric int8 quantization of ``x`` as integer-valued float64 (round half to even)."""
    q = np.rint(np.asarray(x, np.float64) / float(scale))
    return np.clip(q, ACT_QMIN, ACT_QMAX, out=q)


#: int8×int8 products are below 2**14 in magnitude, so float32 (24-bit mantissa) sums of up to
#: 1024 of them are exact integers — GEMMs over at most this many terms run in float32
EXACT_F32_TERMS = 1024


def int8_conv_accumulate(
    xq: np.ndarray, wq: np.ndarray, bq: np.ndarray | None = None, **geometry: Any
) -> np.ndarray:
    """The int32 accumulator of an int8 convolution, exactly (returned as int32).

    ``xq`` and ``wq`` hold integers in the int8 range (any dtype); ``bq`` int32 per channel.
    Float sums of integers are exact while they stay below the mantissa's range: the
    reduction is split into chunks of at most :data:`EXACT_F32_TERMS` input terms, each a
    float32 GEMM (as fast as the FP32 path), and the chunks are added in float64 (exact far
    beyond any layer's fan-in). Grouped layers with a larger fan-in use one float64 GEMM.
    """
    w = np.asarray(wq)
    taps = int(np.prod(w.shape[2:], dtype=np.int64))
    fan_in = w.shape[1] * taps
    group = int(geometry.get("group", 1) or 1)
    if fan_in <= EXACT_F32_TERMS:
        acc = conv(np.asarray(xq, np.float32), w.astype(np.float32), None, **geometry).astype(
            np.float64
        )
    elif group == 1:
        step = max(1, EXACT_F32_TERMS // taps)
        x32, w32 = np.asarray(xq, np.float32), w.astype(np.float32)
        acc = None
        for c in range(0, w.shape[1], step):
            part = conv(
                np.ascontiguousarray(x32[:, c : c + step]),
                np.ascontiguousarray(w32[:, c : c + step]),
                None,
                **geometry,
            )
            acc = part.astype(np.float64) if acc is None else acc + part
    else:
        acc = conv(np.asarray(xq, np.float64), w.astype(np.float64), None, **geometry)
    if bq is not None:
        acc += np.asarray(bq, np.float64).reshape(1, -1, *([1] * (acc.ndim - 2)))
    return acc.astype(np.int32)


def round_fp16(x: np.ndarray) -> np.ndarray:
    """``x`` as an FP16 tensor would store it, returned in float32."""
    return np.asarray(x).astype(np.float16).astype(np.float32)


def quantize_int8(x: np.ndarray, scale: float) -> np.ndarray:
    """``x`` stored as an int8 tensor at ``scale``: :func:`quantize_activation`, as int8."""
    return quantize_activation(x, scale).astype(np.int8)


def dequantize_int8(q: np.ndarray, scale: float) -> np.ndarray:
    """An int8 tensor's real values: ``float32(q) * float32(scale)`` (one float32 rounding)."""
    return np.multiply(np.asarray(q, np.float32), np.float32(scale), dtype=np.float32)


def _as_float(x: np.ndarray, scale: float) -> np.ndarray:
    """A stored activation as float32: int8 dequantized with ``scale``, float16 widened."""
    x = np.asarray(x)
    if x.dtype == np.int8:
        return dequantize_int8(x, scale)
    return x.astype(np.float32, copy=False)


def _store(y: np.ndarray, out_precision: str, out_scale: float) -> np.ndarray:
    """A layer's float32 result as its output tensor stores it (see the module docstring)."""
    if out_precision == "int8":
        return quantize_int8(y, out_scale)
    return np.asarray(y).astype(np.float16) if out_precision == "fp16" else y


def _check_out(ctx: InferContext) -> np.dtype:
    out = ctx.attrs.get("out_precision", "fp32")
    if out not in ("fp32", "fp16", "int8"):
        ctx.fail(f"out_precision must be fp32, fp16 or int8, got {out!r}")
    if out == "int8" and not float(ctx.attrs.get("out_scale", 0.0)) > 0.0:
        ctx.fail(f"out_precision int8 needs a positive out_scale, got {ctx.attrs.get('out_scale')}")
    return STORAGE_DTYPES[out]


def _infer_qconv(ctx: InferContext) -> list[TensorType]:
    a = ctx.attrs
    problem = check_activation(a.get("activation", ""), a.get("activation_params", ()))
    if problem:
        ctx.fail(problem)
    if ctx.dtype(1) != np.int8:
        ctx.fail(f"W_q must be int8, got {ctx.dtype(1)}")
    if not float(a.get("x_scale", 0.0)) > 0.0:
        ctx.fail(f"x_scale must be positive, got {a.get('x_scale')}")
    if ctx.has(3) and ctx.dtype(3) != np.int32:
        ctx.fail(f"B_q must be int32, got {ctx.dtype(3)}")
    if ctx.shape(2) != (ctx.shape(1)[0],):
        ctx.fail(f"w_scale must have one scale per output channel, got {ctx.shape(2)}")
    x = TensorType(ctx.shape(0), np.float32)
    conv_ctx = InferContext(
        ctx.node, [x, TensorType(ctx.shape(1), np.float32)], [None, None], dict(a)
    )
    (out,) = _infer_conv(conv_ctx)
    residual = a.get("residual", "none")
    if (residual != "none") != ctx.has(4):
        ctx.fail(f"residual={residual!r} needs input Z exactly when it is not 'none'")
    return [TensorType(out.shape, _check_out(ctx))]


@OPS.register("QConv", 1, domain=DOMAIN, infer=_infer_qconv, foldable=False)
def qconv(
    X: np.ndarray,
    W: np.ndarray,
    w_scale: np.ndarray,
    B: np.ndarray | None = None,
    Z: np.ndarray | None = None,
    *,
    x_scale: float,
    group: int = 1,
    strides: list[int] | None = None,
    pads: list[int] | None = None,
    dilations: list[int] | None = None,
    kernel_shape: list[int] | None = None,
    activation: str = "",
    activation_params: Sequence[float] = (),
    residual: str = "none",
    out_precision: str = "fp32",
    out_scale: float = 0.0,
    z_scale: float = 0.0,
) -> np.ndarray:
    """INT8 convolution: quantize X, int32-accumulate, requantize, epilogue (see module doc)."""
    xq = X if np.asarray(X).dtype == np.int8 else quantize_activation(X, x_scale)
    if Z is not None:
        Z = _as_float(Z, z_scale)
    acc = int8_conv_accumulate(
        xq,
        W,
        B,
        group=group,
        strides=strides,
        pads=pads,
        dilations=dilations,
        kernel_shape=kernel_shape,
    )
    multiplier = (float(x_scale) * np.asarray(w_scale, np.float64)).reshape(1, -1, 1, 1)
    y = (acc * multiplier).astype(np.float32)
    if residual == "pre" and Z is not None:
        y = np.add(y, Z)
    y = apply_activation(y, activation, activation_params)
    if residual == "post" and Z is not None:
        y = np.add(y, Z)
    return _store(np.asarray(y, np.float32), out_precision, out_scale)


# -- QGemm --------------------------------------------------------------------------------------


def int8_matmul_accumulate(xq: np.ndarray, wq: np.ndarray) -> np.ndarray:
    """``xq [M, K] @ wq[N, K].T`` exactly, as int32 (float32 chunks of K, summed in float64)."""
    x32, w32 = np.asarray(xq, np.float32), np.asarray(wq, np.float32)
    k = x32.shape[1]
    acc = np.zeros((x32.shape[0], w32.shape[0]), np.float64)
    for c in range(0, k, EXACT_F32_TERMS):
        acc += x32[:, c : c + EXACT_F32_TERMS] @ w32[:, c : c + EXACT_F32_TERMS].T
    return acc.astype(np.int32)


def _infer_qgemm(ctx: InferContext) -> list[TensorType]:
    if ctx.dtype(1) != np.int8 or len(ctx.shape(1)) != 2:
        ctx.fail(f"W_q must be int8 [N, K], got {ctx.type(1)}")
    n, k = ctx.shape(1)
    x = ctx.shape(0)
    if not x or x[-1] != k:
        ctx.fail(f"X's last dim must be K={k}, got {x}")
    if ctx.shape(2) != (n,) or (ctx.has(3) and ctx.shape(3) != (n,)):
        ctx.fail(f"w_scale and B_q must have one value per output ({n})")
    if not float(ctx.attrs.get("x_scale", 0.0)) > 0.0:
        ctx.fail(f"x_scale must be positive, got {ctx.attrs.get('x_scale')}")
    return [TensorType((*x[:-1], n), _check_out(ctx))]


@OPS.register("QGemm", 1, domain=DOMAIN, infer=_infer_qgemm, foldable=False)
def qgemm(
    X: np.ndarray,
    W: np.ndarray,
    w_scale: np.ndarray,
    B: np.ndarray | None = None,
    *,
    x_scale: float,
    out_precision: str = "fp32",
    out_scale: float = 0.0,
) -> np.ndarray:
    """INT8 ``X @ W.T + B`` over X's last axis (an INT8 Gemm with transB=1, or MatMul)."""
    lead = X.shape[:-1]
    flat = np.reshape(X, (-1, X.shape[-1]))
    xq = flat if flat.dtype == np.int8 else quantize_activation(flat, x_scale)
    acc = int8_matmul_accumulate(xq, W).astype(np.float64)
    if B is not None:
        acc += np.asarray(B, np.float64)
    y = (acc * (float(x_scale) * np.asarray(w_scale, np.float64))).astype(np.float32)
    return _store(y.reshape(*lead, W.shape[0]), out_precision, out_scale)


# -- Reformat -----------------------------------------------------------------------------------


def _infer_reformat(ctx: InferContext) -> list[TensorType]:
    to = ctx.attrs.get("to")
    if to not in STORAGE_DTYPES:
        ctx.fail(f"attribute to must be one of {sorted(STORAGE_DTYPES)}, got {to!r}")
    if ctx.dtype(0) == np.int8 and not float(ctx.attrs.get("x_scale", 0.0)) > 0.0:
        ctx.fail("an int8 input needs a positive x_scale")
    if to == "int8" and not float(ctx.attrs.get("y_scale", 0.0)) > 0.0:
        ctx.fail("an int8 result needs a positive y_scale")
    return [TensorType(ctx.shape(0), STORAGE_DTYPES[to])]


@OPS.register("Reformat", 1, domain=DOMAIN, infer=_infer_reformat, foldable=False)
def reformat(X: np.ndarray, *, to: str, x_scale: float = 0.0, y_scale: float = 0.0) -> np.ndarray:
    """``X`` in another storage dtype: int8 → float is ``float32(q) * float32(x_scale)`` (then
    rounded to float16 for ``"fp16"``); float → int8 is :func:`quantize_int8` with ``y_scale``
    (round half to even of ``x / y_scale`` in float64, saturated to [-128, 127]); float →
    float16 rounds to nearest even (beyond ±65504: ±inf); float16 → float32 is exact."""
    x = _as_float(X, x_scale) if np.asarray(X).dtype == np.int8 else np.asarray(X)
    if to == "int8":
        return quantize_int8(x, y_scale)
    return x.astype(STORAGE_DTYPES[to])


# -- Fp16Layer -----------------------------------------------------------------------------------


def _inner(op: str, domain: str, opset: int) -> OpDef:
    from edge_infer.engine.ops import get_registry  # late: the registry imports this module

    found = get_registry().resolve(domain, op, int(opset))
    if found is None:
        raise EdgeInferError(
            f"Fp16Layer wraps {domain or 'ai.onnx'}::{op}, which has no kernel at opset {opset}"
        )
    return found


def _infer_fp16_layer(ctx: InferContext) -> list[TensorType]:
    a = ctx.attrs
    try:
        inner = _inner(a["op"], a.get("op_domain", ""), a.get("opset", 17))
    except (KeyError, EdgeInferError) as exc:
        ctx.fail(f"cannot resolve the wrapped op: {exc}")
    types = [
        None if t is None else TensorType(t.shape, np.float32) if t.dtype == np.float16 else t
        for t in ctx.input_types
    ]
    sub = InferContext(
        Node(a["op"], ctx.node.name, a.get("op_domain", "")),
        types,
        ctx.input_values,
        {**inner.defaults, **a.get("op_attrs", {})},
    )
    outs = list(inner.infer(sub))
    for k in a.get("fp16_outputs", ()):
        if not (isinstance(k, int) and 0 <= k < len(outs) and outs[k].dtype == np.float32):
            ctx.fail(f"fp16_outputs names output {k!r}, which is not a float32 output")
        outs[k] = TensorType(outs[k].shape, np.float16)
    return outs


@OPS.register("Fp16Layer", 1, domain=DOMAIN, infer=_infer_fp16_layer, foldable=False)
def fp16_layer(
    *inputs: np.ndarray | None,
    op: str,
    op_domain: str = "",
    op_attrs: dict[str, Any] | None = None,
    opset: int = 17,
    round_inputs: Sequence[int] = (),
    fp16_outputs: Sequence[int] = (),
) -> Any:
    """Run the wrapped layer on FP16-stored data; float outputs come back FP16-rounded, as
    float16 for the outputs in ``fp16_outputs`` (stored in float16), else in float32."""
    inner = _inner(op, op_domain, opset)
    args = [
        None if x is None else np.asarray(x, np.float32) if np.asarray(x).dtype == np.float16 else x
        for x in inputs
    ]
    for k in round_inputs:
        if args[k] is not None:
            args[k] = round_fp16(args[k])
    result = inner.kernel(*args, **{**inner.defaults, **(op_attrs or {})})
    many = isinstance(result, tuple | list)
    results = [_round_float(r) for r in (result if many else (result,))]
    for k in fp16_outputs:
        results[k] = results[k].astype(np.float16)  # exact: the values are FP16-rounded
    return type(result)(results) if many else results[0]


def _round_float(x: Any) -> Any:
    arr = np.asarray(x)
    return round_fp16(arr) if arr.dtype == np.float32 else arr


# -- the int8 values a tensor can hold -------------------------------------------------------

#: ops whose output holds only values of their (first) input: they pick or move, never compute
_VALUE_PRESERVING = frozenset(
    {
        "MaxPool",
        "Reshape",
        "Flatten",
        "Transpose",
        "Resize",
        "Identity",
        "Slice",
        "Split",
        "Squeeze",
        "Unsqueeze",
        "Concat",
    }
)


def _moved_range(node: Node, range_of: Callable[[Any], tuple[int, int]]) -> tuple[int, int] | None:
    """For an op that only picks or moves values (_VALUE_PRESERVING): the union of its data
    inputs' ranges (``range_of`` each; the whole range where one is a constant). None for any
    other op."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in _VALUE_PRESERVING:
        return None
    ins = [v for v in node.inputs[: None if node.op_type == "Concat" else 1] if v is not None]
    if not ins or any(v.const is not None for v in ins):
        return int(ACT_QMIN), int(ACT_QMAX)
    ranges = [range_of(v) for v in ins]
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def int8_value_range(value: Any, _depth: int = 0) -> tuple[int, int]:
    """The int8 values ``value`` (an int8-stored graph value) can hold, as its producer bounds
    them: a QConv / QGemm writing int8 under an activation maps every pre-activation onto
    part of the range (ReLU: [0, 127]; SiLU: [round(-0.2785 / scale), 127]), and ops that only
    pick or move values (max pooling, reshapes, concatenation) keep their inputs' range.
    The whole range [-128, 127] where nothing is known. The builder's self-check draws a
    layer's int8 inputs from this range, so that the tactics are timed on the paths real
    activations take (the AVX2 INT8 tiles read narrower byte ranges faster)."""
    full = (int(ACT_QMIN), int(ACT_QMAX))
    node = getattr(value, "producer", None)
    if node is None or _depth > 16:
        return full
    moved = _moved_range(node, lambda v: int8_value_range(v, _depth + 1))
    if moved is not None:
        return moved
    if node.domain == DOMAIN and node.op_type == "Reformat":
        scale = float(node.attrs.get("y_scale", 0.0) or 0.0)
        if node.attrs.get("to") != "int8" or scale <= 0 or not node.inputs:
            return full
        return _float_int8_range(node.inputs[0], scale, _depth + 1)
    if node.domain != DOMAIN or node.op_type not in ("QConv", "QGemm"):
        return full
    a = node.attrs
    scale = float(a.get("out_scale", 0.0) or 0.0)
    if a.get("out_precision") != "int8" or scale <= 0 or a.get("residual") == "post":
        return full
    params = tuple(float(p) for p in a.get("activation_params", ()))
    return _activation_int8_range(str(a.get("activation", "")), params, scale)


#: activations the float kernels compute exactly (a max or a clamp): their quantized extremes
#: are the reference's; any other one is approximated there (a vector exp), so a range read
#: off the reference is widened by one step each way
_EXACT_ACTIVATIONS = frozenset({"relu", "clip"})


def _float_int8_range(value: Any, scale: float, _depth: int) -> tuple[int, int]:
    """The int8 values a float ``value`` can take when quantized at ``scale`` (a Reformat to
    int8 in a mixed-precision engine), as its producer bounds it: a float convolution (FP32,
    or FP16 storage in an Fp16Layer) or an INT8 one with a float output (its value read by a
    float layer too) under an activation and no residual added after it, or ops that only
    pick or move such values. The whole range where nothing is known."""
    full = (int(ACT_QMIN), int(ACT_QMAX))
    node = getattr(value, "producer", None)
    if node is None or _depth > 16:
        return full
    moved = _moved_range(node, lambda v: _float_int8_range(v, scale, _depth + 1))
    if moved is not None:
        return moved
    attrs: dict[str, Any] | None = None
    if node.domain == DOMAIN and node.op_type in ("FusedConv", "QConv", "QGemm"):
        attrs = node.attrs  # (an INT8 layer's float output: read by a float layer too)
    elif (
        node.domain == DOMAIN
        and node.op_type == "Fp16Layer"
        and node.attrs.get("op") == "FusedConv"
    ):
        attrs = node.attrs.get("op_attrs") or {}
    if attrs is None or attrs.get("residual", "none") == "post":
        return full
    activation = str(attrs.get("activation", "") or "")
    if not activation:
        return full
    params = tuple(float(p) for p in attrs.get("activation_params", ()))
    lo, hi = _activation_int8_range(activation, params, scale)
    if activation not in _EXACT_ACTIVATIONS:
        lo, hi = max(lo - 1, full[0]), min(hi + 1, full[1])
    return lo, hi


@functools.lru_cache(maxsize=1024)
def _activation_int8_range(
    activation: str, params: tuple[float, ...], scale: float
) -> tuple[int, int]:
    """min and max of the int8 storage of ``activation(y)`` at ``scale`` over every real y: a
    coarse grid far beyond the stored range (saturating functions reach their limits there)
    and a fine one over [-8, 8], where the non-monotone activations (SiLU, Mish, GELU, hard
    swish) have their minimum. Engines are bound at load through this (every int8 layer's
    spec), hence the cache and the small grids."""
    reach = max(256.0 * scale, 64.0)
    grid = np.concatenate(
        [
            np.linspace(-reach, reach, 4097),
            np.linspace(-8.0, 8.0, 8193),
            np.arange(-128, 128) * scale,
        ]
    ).astype(np.float32)
    y = apply_activation(grid, activation, params)
    q = quantize_activation(np.asarray(y, np.float32), scale)
    return int(q.min()), int(q.max())
