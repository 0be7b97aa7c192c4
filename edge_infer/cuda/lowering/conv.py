"""Convolutions: FusedConv/Conv (FP32, and FP16 inside an Fp16Layer) and QConv (INT8)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_infer.cuda.library import KernelCall
from edge_infer.cuda.lowering import F16, F32, OUT, PRECISION, S8, Layer, element_strides, lowering
from edge_infer.cuda.params import conv as conv_params
from edge_infer.cuda.params.reformat import reformat
from edge_infer.engine.ir import Node
from edge_infer.errors import BackendError

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
    if x_dtype != y_dtype or x_dtype not in (F32, F16) or len(x_shape) != 4:
        return ()
    geom = conv_geometry(node, x_shape, w_shape)
    return conv_params.candidates(geom, PRECISION[x_dtype], OUT[x_dtype], sm)


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
        or tactic.precision != PRECISION.get(x.dtype)
        or tactic.out != OUT.get(y.dtype)
        or w.dtype != x.dtype
    ):
        return None
    geom = conv_geometry(node, x.shape, w.shape)
    bias = ins[2] if len(ins) > 2 else None
    if bias is not None and bias.dtype != F32:  # the float kernels take a float bias
        if consts[2] is None:
            return None
        bias = layer.upload(np.asarray(consts[2], np.float32))
        layer.extra_reads.append(bias)
    z = ins[3] if len(ins) > 3 else None
    a = node.attrs
    residual = str(a.get("residual", "none")) if node.op_type == "FusedConv" else "none"
    params = conv_params.conv_params(
        geom,
        **_operands(x, w, y, bias, z),
        activation=str(a.get("activation", "")) if node.op_type == "FusedConv" else "",
        activation_params=[float(v) for v in a.get("activation_params", ())]
        if node.op_type == "FusedConv"
        else (),
        residual=residual,
    )
    return [tactic.call(geom, params)]


def _operands(x: Any, w: Any, y: Any, bias: Any, z: Any) -> dict[str, Any]:
    """The device addresses and views of a convolution's tensors for ``conv_params``."""
    return {
        "x": x.gpudata,
        "x_view": conv_params.tensor_view(element_strides(x)),
        "weight": w.gpudata,
        "y": y.gpudata,
        "y_view": conv_params.tensor_view(element_strides(y)),
        "bias": None if bias is None else bias.gpudata,
        "z": None if z is None else z.gpudata,
        "z_view": None if z is None else conv_params.tensor_view(element_strides(z)),
    }


# -- INT8 layers -----------------------------------------------------------------------------

_STORE = {"int8": S8, "fp16": F16, "fp32": F32}


def qconv_candidates(
    node: Node, x_dtype: Any, y_dtype: Any, x_shape: Sequence[int], w_shape: Sequence[int], sm: int
) -> tuple[conv_params.ConvTactic, ...]:
    """The INT8 tactics of a QConv writing its ``out_precision`` (a float input is quantized
    first, by the reformat kernel)."""
    if np.dtype(x_dtype) not in (S8, F32) or len(x_shape) != 4:
        return ()
    out = _STORE.get(str(node.attrs.get("out_precision", "fp32")))
    if out is None or out != np.dtype(y_dtype):
        return ()
    geom = conv_geometry(node, x_shape, w_shape)
    return conv_params.candidates(geom, "int8", OUT[out], sm)


@lowering("QConv")
def _qconv(layer: Layer) -> list[KernelCall] | None:
    """INT8 convolution: int8 X at x_scale, int8 W with per-channel w_scale, int32 bias,
    requantized in the epilogue (residual Z in the output's storage, int8 at z_scale)."""
    node, ins, consts, y = layer.node, layer.ins, layer.consts, layer.outs[0]
    x, w, w_scale = ins[0], ins[1], ins[2]
    if x is None or w is None or w_scale is None or consts[1] is None or layer.tactic is None:
        return None
    tactic = conv_params.TACTICS_BY_ENTRY.get(layer.tactic)
    if tactic is None or tactic.precision != "int8" or tactic.out != OUT.get(y.dtype):
        return None
    if x.dtype == F32 and x.contiguous:  # the layer quantizes its float input: as reformat does
        quantized = layer.scratch(x.shape, S8)
        pre = [reformat(x, quantized, float(node.attrs["x_scale"]))]  # type: ignore[arg-type]
        x = quantized
    else:
        pre = []
    if x.dtype != S8 or w.dtype != S8 or w_scale.dtype != F32:
        return None
    bias = ins[3] if len(ins) > 3 else None
    z = ins[4] if len(ins) > 4 else None
    if (bias is not None and bias.dtype != np.int32) or (z is not None and z.dtype != y.dtype):
        return None
    a = node.attrs
    geom = conv_geometry(node, x.shape, w.shape)
    params = conv_params.conv_params(
        geom,
        **_operands(x, w, y, bias, z),
        activation=str(a.get("activation", "")),
        activation_params=[float(v) for v in a.get("activation_params", ())],
        residual=str(a.get("residual", "none")),
        w_scale=w_scale.gpudata,
        x_scale=float(a["x_scale"]),
        y_scale=float(a.get("out_scale", 0.0)),
        z_scale=float(a.get("z_scale", 0.0)),
    )
    return [*pre, tactic.call(geom, params)]
