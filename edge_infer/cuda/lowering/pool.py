"""Pooling (max, average, global) and Resize (its tables uploaded once)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edge_infer.cuda.arena import DeviceArray
from edge_infer.cuda.library import KernelCall
from edge_infer.cuda.lowering import F32, S8, Layer, into_contiguous, lowering
from edge_infer.cuda.params.copy import copy
from edge_infer.cuda.params.pool import global_pool, pool
from edge_infer.cuda.params.reformat import reformat
from edge_infer.cuda.params.resize import resize, resize_tables

# -- pooling, resize -----------------------------------------------------------------------


@lowering("MaxPool", "AveragePool")
def _pool(layer: Layer) -> list[KernelCall] | None:
    if len(layer.outs) != 1 or layer.ins[0] is None or layer.ins[0].ndim != 4:
        return None
    a = layer.attrs
    if a.get("storage_order", 0):
        return None
    kind = "max" if layer.node.op_type == "MaxPool" else "avg"

    def run(x: DeviceArray, y: DeviceArray) -> list[KernelCall]:
        return [
            pool(
                kind,
                x,
                y,
                kernel_shape=a["kernel_shape"],
                strides=a.get("strides"),
                dilations=a.get("dilations"),
                pads=a.get("pads"),
                auto_pad=str(a.get("auto_pad", "NOTSET")),
                ceil_mode=int(a.get("ceil_mode", 0)),
                count_include_pad=int(a.get("count_include_pad", 0)),
            )
        ]

    if layer.ins[0].dtype == S8:
        return _via_fp32(layer, run) if kind == "max" else None
    return run(layer.ins[0], layer.outs[0])


def _via_fp32(
    layer: Layer, run: Callable[[DeviceArray, DeviceArray], list[KernelCall]]
) -> list[KernelCall] | None:
    """An INT8 layer that only selects or moves values (max pooling, nearest resize) through
    FP32 scratch: dequantize (q * s), ``run``, quantize with the same scale. Selection
    commutes with the monotonic dequantization, and ``q * s / s`` rounds back to ``q`` for
    |q| <= 127 (a relative error of about 1e-7): the result equals the CPU's on the int8
    values. Input and output must share their scale (they do: the op only moves values)."""
    x, y = layer.ins[0], layer.outs[0]
    scales = [
        (v.meta.get("storage") or {}).get("scale")
        for v in (layer.node.inputs[0], layer.node.outputs[0])
        if v is not None
    ]
    if x is None or len(scales) != 2 or scales[0] is None or scales[0] != scales[1]:
        return None
    scale = float(scales[0])
    if not scale > 0:
        return None
    pre: list[KernelCall] = []
    if not x.contiguous:  # a concat's slice: gathered first (the reformat reads contiguously)
        packed = layer.scratch(x.shape, S8)
        pre.append(copy(x, packed))  # type: ignore[arg-type]
        x = packed
    wide_in, wide_out = layer.scratch(x.shape, F32), layer.scratch(y.shape, F32)
    pre.append(reformat(x, wide_in, scale))  # type: ignore[arg-type]
    post = into_contiguous(layer, y, lambda dst: [reformat(wide_out, dst, scale)])  # type: ignore[arg-type]
    return [*pre, *run(wide_in, wide_out), *post]


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

    def run(src: DeviceArray, dst: DeviceArray) -> list[KernelCall]:
        return [resize(src, dst, tables, *dev)]

    if x.dtype == S8:  # nearest only selects values; linear would interpolate
        return _via_fp32(layer, run) if a.get("mode", "nearest") == "nearest" else None
    return run(x, layer.outs[0])
