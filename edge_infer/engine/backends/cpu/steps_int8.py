"""The INT8 engines' own ops: edge_infer::Reformat (storage conversions) and
edge_infer::QGemm (INT8 fully connected), both bit for bit the reference (ops/quantize.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import split
from edge_infer.engine.backends.cpu.stepkit import Run, Scratch, step
from edge_infer.engine.ir import Node

#: storage kinds of the INT8 kernels (kernels/qsimd.h enum ei_storage)
_KINDS = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(np.int8): 2}
#: a storage conversion is split between threads from this many values (each part at least
#: half of it)
_REFORMAT_SPLIT = 1 << 16


@step("edge_infer::Reformat")
def _reformat(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    """edge_infer::Reformat (int8 <-> fp32 / fp16, fp32 <-> fp16) with the reformat kernel:
    the reference's numbers (ops/quantize.py reformat), in one pass, threaded when large."""
    x, out = ins[0], outs[0]
    if not (
        isinstance(x, np.ndarray)
        and x.dtype in _KINDS
        and out.dtype in _KINDS
        and x.shape == out.shape
        and x.flags.c_contiguous
        and out.flags.c_contiguous
        and native.library() is not None
    ):
        return None
    x_scale = float(node.attrs.get("x_scale", 0.0))
    y_scale = float(node.attrs.get("y_scale", 0.0))
    if out.dtype == np.int8 and not (y_scale > 0 and 1.0 / y_scale < np.finfo(np.float32).max):
        return None
    workers = getattr(scratch, "workers", 1)
    parts = max(1, min(workers, x.size // (_REFORMAT_SPLIT // 2))) if workers > 1 else 1
    calls = []
    for a, b in split(x.size, parts, align=64):
        args = dict(
            x=x.ctypes.data + a * x.itemsize,
            xkind=_KINDS[x.dtype],
            xscale=x_scale,
            xrs=0,
            y=out.ctypes.data + a * out.itemsize,
            ykind=_KINDS[out.dtype],
            yscale=y_scale,
            yrs=0,
            rows=1,
            n=b - a,
        )
        calls.append(native.NativeCall("reformat_f32", args, (x, out)))
    pool = getattr(scratch, "pool", None)
    if pool is not None and len(calls) > 1:
        return pool.bind(calls)
    return calls[0]


#: a QGemm is split between threads from this many int8 multiply-adds (each part at least
#: half of it): MobileNetV2's classifier (1 x 1280 x 1000) in 2 parts
_QGEMM_SPLIT = 1 << 20
#: qgemm_packed.c's output block (the packed weights' 16 outputs) and row tile
_QGEMM_BLOCK, _QGEMM_ROWS = 16, 8


def pack_qgemm(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 W [n, k] → qgemm_packed.c's wp [n / 16][ceil(k / 4)][16][4] (zeros past n and k)
    and wsum [n / 16 * 16] = 128 x each row's sum (int32)."""
    n, k = w.shape
    nb, kq = -(-n // _QGEMM_BLOCK), -(-k // 4)
    padded = np.zeros((nb * _QGEMM_BLOCK, kq * 4), np.int8)
    padded[:n, :k] = w
    wp = np.ascontiguousarray(padded.reshape(nb, _QGEMM_BLOCK, kq, 4).transpose(0, 2, 1, 3))
    wsum = np.zeros(nb * _QGEMM_BLOCK, np.int32)
    wsum[:n] = 128 * w.sum(axis=1, dtype=np.int64)
    return wp, wsum


@step("edge_infer::QGemm")
def _qgemm(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    """edge_infer::QGemm with the qgemm_packed_s8 kernel (exact int32 dot products: VNNI's
    over the packed weights where compiled, else row by row; the reference's float64
    requantization and fp32 / fp16 / int8 store); a float X quantized first. Threads split
    the rows (8-row tiles), or the outputs (16-output blocks) when the rows are few."""
    x, w, w_scale = ins[0], ins[1], ins[2]
    bias = ins[3] if len(ins) > 3 else None
    out = outs[0]
    a = node.attrs
    out_kind = {"fp32": 0, "fp16": 1, "int8": 2}.get(a.get("out_precision", "fp32"))
    out_scale, x_scale = float(a.get("out_scale", 0.0)), float(a["x_scale"])
    if not (
        isinstance(x, np.ndarray)
        and x.dtype in _KINDS
        and x.flags.c_contiguous
        and isinstance(w, np.ndarray)
        and w.dtype == np.int8
        and w.ndim == 2
        and (bias is None or (isinstance(bias, np.ndarray) and bias.dtype == np.int32))
        and out_kind is not None
        and out.flags.c_contiguous
        and (out_kind != 2 or (out_scale > 0 and 1.0 / out_scale < np.finfo(np.float32).max))
        and native.library() is not None
    ):
        return None
    n, k = w.shape
    rows = x.size // k
    wq = np.ascontiguousarray(w)
    wp, wsum = pack_qgemm(wq)
    bq = None if bias is None else np.ascontiguousarray(bias)
    mult = np.ascontiguousarray(x_scale * np.asarray(w_scale, np.float64))
    before: list[Run] = []
    if x.dtype != np.int8:  # the float input quantized as the reference does
        xq = scratch((rows, k), np.int8, "qgemm_in")
        args = dict(x=x.ctypes.data, xkind=_KINDS[x.dtype], xscale=0.0, xrs=0, y=xq.ctypes.data,
                    ykind=2, yscale=x_scale, yrs=0, rows=1, n=x.size)  # fmt: skip
        before.append(native.NativeCall("reformat_f32", args, (x, xq)))
        x = xq
    workers = getattr(scratch, "workers", 1)
    parts = max(1, min(2 * workers, rows * n * k // (_QGEMM_SPLIT // 2))) if workers > 1 else 1
    by_rows = rows >= parts * _QGEMM_ROWS
    ranges = [
        ((r0, r1), (0, n)) if by_rows else ((0, rows), (r0, r1))
        for r0, r1 in split(
            rows if by_rows else n, parts, align=_QGEMM_ROWS if by_rows else _QGEMM_BLOCK
        )
    ]
    calls = []
    for (r0, r1), (n0, n1) in ranges:
        args = dict(x=x.ctypes.data, xrs=k, w=wq.ctypes.data, k=k, n0=n0, n1=n1,
                    bias=None if bq is None else bq.ctypes.data, mult=mult.ctypes.data,
                    rows=rows, out=out.ctypes.data, okind=out_kind, ors=n, oscale=out_scale,
                    wp=wp.ctypes.data, wsum=wsum.ctypes.data, r0=r0, r1=r1)  # fmt: skip
        keep = (x, wq, wp, wsum, bq, mult, out)
        calls.append(native.NativeCall("qgemm_packed_s8_f32", args, keep))
    pool = getattr(scratch, "pool", None)
    if pool is not None and len(calls) > 1:
        steps: list[Run] = [*before, pool.bind(calls)]
    else:
        steps = [*before, *calls]
    if len(steps) == 1:
        return steps[0]

    def run() -> None:
        for one in steps:
            one()

    return run
