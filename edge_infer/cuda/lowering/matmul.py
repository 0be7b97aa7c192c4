"""Fully connected layers: Gemm (FP32) and QGemm (INT8), transposes and broadcasts as strides."""

from __future__ import annotations

import numpy as np

from edge_infer.cuda.library import KernelCall
from edge_infer.cuda.lowering import F16, F32, OUT, S8, Layer, element_strides, lowering
from edge_infer.cuda.params.gemm import TACTICS as GEMM_TACTICS
from edge_infer.cuda.params.gemm import GemmParams


@lowering("Gemm")
def _gemm(layer: Layer) -> list[KernelCall] | None:
    """Y = alpha * A' @ B' + beta * C, FP32 (SIMT) or FP16 (wmma, FP32 accumulation, C as
    float: an FP16 bias is uploaded as float32): transposes and C's broadcast are strides."""
    a, b, y = layer.ins[0], layer.ins[1], layer.outs[0]
    c = layer.ins[2] if len(layer.ins) > 2 else None
    if (
        a is None
        or b is None
        or a.ndim != 2
        or b.ndim != 2
        or y.ndim != 2
        or not (a.dtype == b.dtype == y.dtype)
        or a.dtype not in (F32, F16)
    ):
        return None
    if c is not None and c.dtype != F32:
        if c.dtype != F16 or layer.consts[2] is None:
            return None
        c = layer.upload(np.asarray(layer.consts[2], np.float32))
        layer.extra_reads.append(c)
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
    entry = "ei_gemm_f32_32x32" if a.dtype == F32 else "ei_gemm_f16_wmma_32x32"
    tactic = next(t for t in GEMM_TACTICS if t.entry == entry)
    return [tactic.call(p)]


@lowering("QGemm")
def _qgemm(layer: Layer) -> list[KernelCall] | None:
    """INT8 ``X @ W_q.T + B`` (X int8 [M, K], W_q [N, K], per-column scales, int32 bias)."""
    x, w, w_scale, y = layer.ins[0], layer.ins[1], layer.ins[2], layer.outs[0]
    bias = layer.ins[3] if len(layer.ins) > 3 else None
    out = OUT.get(y.dtype)
    if x is None or w is None or w_scale is None or x.ndim != 2 or y.ndim != 2 or out is None:
        return None
    if x.dtype != S8 or w.dtype != S8 or (bias is not None and bias.dtype != np.int32):
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
