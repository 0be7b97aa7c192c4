"""Float32 dense layers as BLAS products: Gemm, MatMul and GlobalAveragePool.

The reference kernels (``engine/ops/linalg.py``, ``ops/pool.py``) allocate their results and
are copied into the arena; here each layer is bound once to its arena views and writes in
place, its products split by output columns between the context's threads:

- ``Gemm`` / ``MatMul`` with a constant B: B is laid out once, at bind, in the order the
  product reads fastest for the layer's row count. Up to ``NATIVE_ROWS`` rows (a classifier
  at batch 1..8, memory-bound) get op(B)'s rows of K packed by groups of four for
  ``kernels/gemv.c`` (``pack_rows``: each thread's columns one forward stream of memory),
  which reads each row once for every row of A, its column ranges native pool tasks (no
  Python between threads); more rows (or no compiler) get a contiguous (K, N) for BLAS
  ``sgemm`` (one row without a compiler: numpy's matrix-vector product). ``beta * C`` is
  computed once (the reference's float32 product) and broadcast to the output's shape.
- ``GlobalAveragePool``: each (H·W) plane summed as one matrix-vector product with a
  vector of ones (``kernels/gemv.c``: the planes are its rows; numpy's BLAS without a
  compiler), then divided by H·W as the reference does.

Numbers: float32 products like the reference's (it computes in float32 too, through numpy's
BLAS); only the order of the float32 additions differs (BLAS's blocking against numpy's
pairwise sums), a few float32 ulps of the output scale. Other dtypes are not bound here
(the callers return None and the reference kernel runs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.blas import bound_sgemm
from edge_infer.engine.backends.cpu.parallel import sequence, share, split

Run = Callable[[], None]
F32 = np.dtype(np.float32)
#: a product is split between threads from this many multiply-adds per part
MIN_PART_MACS = 1 << 18
#: a global average pool is split between threads from this many inputs per part
MIN_PART_VALUES = 1 << 15
#: products of up to this many rows run kernels/gemv.c (each row of B read once for all rows
#: of A); more rows run BLAS sgemm (measured at 8 x 1280 x 1000: gemv.c 459 µs, sgemm 556)
NATIVE_ROWS = 8
#: output columns per part are a multiple of this (whole 64-byte lines of the output)
COLUMN_ALIGN = 16


def is_f32(*arrays: Any) -> bool:
    """Every array a float32 ndarray (None counts as absent)."""
    return all(a is None or (isinstance(a, np.ndarray) and a.dtype == F32) for a in arrays)


def bind_product(
    a: np.ndarray,
    b: np.ndarray,
    out: np.ndarray,
    *,
    b_const: bool,
    c: np.ndarray | None = None,
    c_const: bool = True,
    alpha: float = 1.0,
    beta: float = 1.0,
    workers: int = 1,
    pool: Any = None,
) -> Run:
    """A run writing ``out = alpha * a @ b + beta * c`` (the ONNX Gemm, with op(A) and op(B)
    already applied as views): ``a`` (M, K), ``b`` (K, N), ``out`` (M, N), ``c`` broadcast to
    (M, N), all float32. ``b_const``: ``b`` never changes (laid out once here);
    ``c_const``: ``c`` never changes (``beta * c`` computed once)."""
    m, k = a.shape
    n = b.shape[1]
    bias = _bias(c, c_const, beta, (m, n))
    parts = max(1, min(workers, m * n * k // MIN_PART_MACS)) if workers > 1 else 1
    ranges = split(n, parts, align=COLUMN_ALIGN)
    native_run = _native_product(a, b, out, b_const, bias, alpha, ranges, pool)
    if native_run is not None:
        return native_run
    if m == 1:  # a matrix-vector product: dot products of contiguous rows of K
        rows = np.ascontiguousarray(b.T) if b_const else b.T
        chunks = [_gemv(a[0], rows[n0:n1], out[0, n0:n1], alpha, bias, n0, n1) for n0, n1 in ranges]
        return share(chunks, pool)
    panel = np.ascontiguousarray(b) if b_const else b
    chunks = []
    for n0, n1 in ranges:
        y = out[:, n0:n1]
        gemm = bound_sgemm(a, panel[:, n0:n1], y, alpha=alpha, beta=0.0 if bias is None else 1.0)
        if bias is None:
            chunks.append(gemm)
        else:
            chunks.append(sequence([_fill(bias, y, n0, n1), gemm]))
    return share(chunks, pool)


def _native_product(
    a: np.ndarray,
    b: np.ndarray,
    out: np.ndarray,
    b_const: bool,
    bias: tuple[np.ndarray, float] | None,
    alpha: float,
    ranges: list[tuple[int, int]],
    pool: Any,
) -> Run | None:
    """The product by kernels/gemv.c (rows of op(B) dotted with each row of A) for at most
    ``NATIVE_ROWS`` rows, the column ranges one native pool task each; None where the
    library or the views do not allow it."""
    m = a.shape[0]
    if m > NATIVE_ROWS or native.library() is None:
        return None
    rows = np.ascontiguousarray(b.T) if b_const else b.T
    if not (_rows_ok(a) and _rows_ok(out) and rows.flags.c_contiguous):
        return None
    if bias is not None and (bias[1] != 1.0 or not _rows_ok(bias[0])):
        return None  # a changing C scaled at run time, or broadcast along rows: BLAS path
    kernel = "gemv_f32"
    if b_const and all(n0 % 4 == 0 for n0, _ in ranges):  # packed once, read as one stream
        rows, kernel = pack_rows(rows), "gemv_packed_f32"
    c = None if bias is None else bias[0]
    k = a.shape[1]
    calls = []
    for n0, n1 in ranges:
        args = dict(x=a.ctypes.data, xrs=a.strides[0] // 4, rows=m, k=k, w=rows.ctypes.data,
                    n0=n0, n1=n1, alpha=alpha, bias=None if c is None else c.ctypes.data,
                    brs=0 if c is None else c.strides[0] // 4, out=out.ctypes.data,
                    ors=out.strides[0] // 4)  # fmt: skip
        calls.append(native.NativeCall(kernel, args, (a, rows, c, out)))
    return share(list(calls), pool)


def pack_rows(rows: np.ndarray) -> np.ndarray:
    """``rows`` (N, K) in gemv_packed's order: groups of four rows (the last one padded with
    zero rows), each group the four rows' 16 values of every 16 columns one after another,
    then the four rows' last K % 16 values. Group g starts at 4 g K."""
    n, k = rows.shape
    groups = -(-n // 4)
    padded = np.zeros((groups * 4, k), F32)
    padded[:n] = rows
    k16 = k // 16 * 16
    body = padded[:, :k16].reshape(groups, 4, k16 // 16, 16).transpose(0, 2, 1, 3)
    tail = padded[:, k16:].reshape(groups, 4 * (k - k16))
    return np.ascontiguousarray(np.concatenate([body.reshape(groups, -1), tail], axis=1).ravel())


def _rows_ok(x: np.ndarray) -> bool:
    """A 2-D float32 view of contiguous rows at a non-negative whole-float row stride."""
    return x.strides[1] == 4 and x.strides[0] >= 0 and x.strides[0] % 4 == 0


def _bias(
    c: np.ndarray | None, c_const: bool, beta: float, shape: tuple[int, int]
) -> tuple[np.ndarray, float] | None:
    """(C broadcast to ``shape``, the factor still to apply at run time) or None: a constant
    C is multiplied by beta once, in float32 as the reference does."""
    if c is None or beta == 0.0:
        return None
    if c_const:
        scaled = np.asarray(c, F32) if beta == 1.0 else np.float32(beta) * np.asarray(c, F32)
        return np.ascontiguousarray(np.broadcast_to(scaled, shape)), 1.0
    return np.broadcast_to(c, shape), beta


def _fill(bias: tuple[np.ndarray, float], y: np.ndarray, n0: int, n1: int) -> Run:
    """A run writing ``beta * C`` into the output columns ``y`` (= columns n0:n1)."""
    src, factor = bias[0][:, n0:n1], np.float32(bias[1])
    if factor == 1.0:
        return lambda: np.copyto(y, src)
    return lambda: np.multiply(src, factor, out=y)


def _gemv(
    x: np.ndarray,
    rows: np.ndarray,
    y: np.ndarray,
    alpha: float,
    bias: tuple[np.ndarray, float] | None,
    n0: int,
    n1: int,
) -> Run:
    """``y = alpha * rows @ x + beta * C[n0:n1]``: products, alpha, then the bias added, in
    the reference's order."""
    scale = np.float32(alpha)
    c_row = None if bias is None else bias[0][0, n0:n1]
    factor = np.float32(1.0 if bias is None else bias[1])
    tmp = np.empty(n1 - n0, F32) if factor != 1.0 else None  # beta * C of a C that changes

    def run() -> None:
        np.matmul(rows, x, out=y)
        if scale != 1.0:
            np.multiply(y, scale, out=y)
        if c_row is not None:
            if tmp is not None:
                np.add(y, np.multiply(c_row, factor, out=tmp), out=y)
            else:
                np.add(y, c_row, out=y)

    return run


def bind_global_average_pool(
    x: np.ndarray, out: np.ndarray, *, workers: int = 1, pool: Any = None
) -> Run | None:
    """A run writing ``out`` (N, C, 1, ...) = the mean of each (spatial) plane of ``x``
    (N, C, ...), float32, or None where the views are not (N, C, plane) matrices."""
    n, c = x.shape[:2]
    size = int(np.prod(x.shape[2:], dtype=np.int64))
    if size == 0 or n * c == 0:
        return None
    x3 = _planes(x, size)
    y2 = out.reshape(n, c) if out.flags.c_contiguous else None
    if x3 is None or y2 is None:
        return None
    ones = np.ones(size, F32)
    count = np.float32(size)
    if x.flags.c_contiguous:  # one (N·C, plane) matrix
        mats, outs = [x.reshape(n * c, size)], [y2.reshape(n * c)]
    else:  # one (C, plane) matrix per image, rows at the channel stride
        mats, outs = list(x3), list(y2)
    parts = max(1, min(workers, x.size // MIN_PART_VALUES)) if workers > 1 else 1
    sums = _native_plane_sums(mats, outs, ones, parts, pool)
    if sums is not None:  # then one division, as the reference's
        flat = y2.reshape(-1)
        return sequence([sums, lambda: np.divide(flat, count, out=flat)])
    chunks: list[Run] = []
    for mat, y in zip(mats, outs, strict=True):
        for r0, r1 in split(mat.shape[0], max(1, parts // len(mats)), align=COLUMN_ALIGN):
            chunks.append(_plane_means(mat[r0:r1], ones, count, y[r0:r1]))
    return share(chunks, pool)


def _native_plane_sums(
    mats: list[np.ndarray], outs: list[np.ndarray], ones: np.ndarray, parts: int, pool: Any
) -> Run | None:
    """Each plane's sum by kernels/gemv.c (the planes as rows of K dotted with ones), plane
    ranges as native pool tasks; None without the library or where an image's planes are not
    rows at the plane's own stride. numpy's product goes through BLAS, whose threads sleep
    between layers: waking them cost ~80 µs on a 2048 x 7 x 7 pool that takes 9 µs."""
    if native.library() is None:
        return None
    size = ones.shape[0]
    if any(
        m.strides != (size * 4, 4) or y.strides != (4,) for m, y in zip(mats, outs, strict=True)
    ):
        return None
    calls = []
    for mat, y in zip(mats, outs, strict=True):
        for r0, r1 in split(mat.shape[0], max(1, parts // len(mats)), align=COLUMN_ALIGN):
            args = dict(x=ones.ctypes.data, xrs=0, rows=1, k=size, w=mat[r0:r1].ctypes.data,
                        n0=0, n1=r1 - r0, alpha=1.0, bias=None, brs=0, out=y[r0:r1].ctypes.data,
                        ors=0)  # fmt: skip
            calls.append(native.NativeCall("gemv_f32", args, (ones, mat, y)))
    return share(list(calls), pool)


def _planes(x: np.ndarray, size: int) -> np.ndarray | None:
    """``x`` as an (N, C, plane) view (no copy), or None: each plane contiguous, the planes
    of an image at one stride (a channel slice of a bigger buffer qualifies)."""
    inner = x.reshape(x.shape[0], x.shape[1], -1) if x.flags.c_contiguous else None
    if inner is not None:
        return inner
    n, c = x.shape[:2]
    item = x.itemsize
    expect = item
    for dim, stride in zip(reversed(x.shape[2:]), reversed(x.strides[2:]), strict=True):
        if dim != 1 and stride != expect:
            return None
        expect *= dim
    if c > 1 and x.strides[1] < size * item:
        return None
    return np.lib.stride_tricks.as_strided(
        x, (n, c, size), (x.strides[0], x.strides[1], item), writeable=False
    )


def _plane_means(mat: np.ndarray, ones: np.ndarray, count: np.float32, y: np.ndarray) -> Run:
    def run() -> None:
        np.matmul(mat, ones, out=y)
        np.divide(y, count, out=y)

    return run


__all__ = ["bind_global_average_pool", "bind_product", "is_f32"]
