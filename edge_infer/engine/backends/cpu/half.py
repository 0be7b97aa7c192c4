"""Float16 storage on the CPU: bound conversions between float16 and float32 arena views.

Each conversion is the native ``convert_half`` kernel (kernels/convert_f16.c: F16C or
AVX-512 on x86-64, NEON on aarch64; round to nearest even, as numpy's ``astype``), cut in
chunks the context's work pool shares between threads when the tensor is large; numpy's
``astype`` (the same values) where there is no native library or the view's layout is not
rows of contiguous values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import sequence, split

Run = Callable[[], None]

WIDEN, NARROW, ROUND = 0, 1, 2  # float16 → float32, float32 → float16, float32 → float32
#: values per chunk below which a thread hand-off costs more than it saves
MIN_CHUNK = 32768
F16, F32 = np.dtype(np.float16), np.dtype(np.float32)


def _rows(a: np.ndarray) -> tuple[int, int, int] | None:
    """``a`` as (rows, values per row, row stride in elements): rows of contiguous values at
    one stride, or None."""
    item = a.itemsize
    n, k = 1, a.ndim
    while k > 0 and (a.shape[k - 1] == 1 or a.strides[k - 1] == n * item):  # contiguous tail
        n *= a.shape[k - 1]
        k -= 1
    lead = [(d, s) for d, s in zip(a.shape[:k], a.strides[:k], strict=True) if d != 1]
    if not lead:
        return 1, n, n
    rows, stride = lead[-1]
    for d, s in reversed(lead[:-1]):  # the leading dims must collapse into one stride
        if s != stride * rows:
            return None
        rows *= d
    if stride % item or stride < n * item:
        return None
    return rows, n, stride // item


def convert(src: np.ndarray, dst: np.ndarray, mode: int, pool: Any = None) -> Run:
    """A run writing ``dst`` from ``src`` (same shape): ``WIDEN`` float16 → float32,
    ``NARROW`` float32 → float16 (nearest even), ``ROUND`` float32 → float32 rounded to
    float16's values (``dst`` may be ``src``)."""
    want = {WIDEN: (np.float16, np.float32), NARROW: (np.float32, np.float16)}.get(
        mode, (np.float32, np.float32)
    )
    if src.shape != dst.shape or (src.dtype, dst.dtype) != tuple(map(np.dtype, want)):
        raise ValueError(f"convert mode {mode}: {src.dtype}{src.shape} -> {dst.dtype}{dst.shape}")
    a, b = _rows(src), _rows(dst)
    if src.size == 0:
        return lambda: None
    if native.library() is None or a is None or b is None or a[:2] != b[:2]:
        return _numpy(src, dst, mode)
    rows, n = a[0], a[1]
    workers = getattr(pool, "workers", 1) if pool is not None else 1
    parts = max(1, min(workers, (rows * n) // MIN_CHUNK))
    calls = []
    if rows >= parts:
        for r0, r1 in split(rows, parts):
            calls.append(_call(src, dst, mode, r0, r1 - r0, 0, n, a[2], b[2]))
    else:  # one long row (or a few): cut along it, 64 values apart (whole cache lines)
        for r in range(rows):
            for i0, i1 in split(n, max(1, parts // rows), align=64):
                calls.append(_call(src, dst, mode, r, 1, i0, i1 - i0, a[2], b[2]))
    if len(calls) == 1 or pool is None:
        return sequence(calls)
    return pool.bind(calls)


def _call(
    src: np.ndarray,
    dst: np.ndarray,
    mode: int,
    r0: int,
    rows: int,
    i0: int,
    n: int,
    xrs: int,
    yrs: int,
) -> native.NativeCall:
    x = src.ctypes.data + (r0 * xrs + i0) * src.itemsize
    y = dst.ctypes.data + (r0 * yrs + i0) * dst.itemsize
    args = dict(x=x, y=y, rows=rows, n=n, xrs=xrs, yrs=yrs, mode=mode)
    return native.NativeCall("convert_half_f32", args, (src, dst))


def _numpy(src: np.ndarray, dst: np.ndarray, mode: int) -> Run:
    if mode == ROUND:
        return lambda: np.copyto(dst, src.astype(np.float16))
    return lambda: np.copyto(dst, src, casting="unsafe")  # astype's nearest even


def is_half(*arrays: Any) -> bool:
    """True when some array is a float16 ndarray and every one is float16 or float32."""
    kinds = [a.dtype for a in arrays if isinstance(a, np.ndarray)]
    return F16 in kinds and all(k in (F16, F32) for k in kinds)


def around_f32(
    factory: Callable[..., Run | None],
    node: Any,
    ins: list[Any],
    outs: list[np.ndarray],
    scratch: Any,
) -> Run | None:
    """``factory``'s float32 step run on float16 storage: float16 inputs widened into float32
    scratch, float16 outputs narrowed from it. Only for layers whose results are some of
    their inputs' values (max pooling, nearest resizing, copies): both conversions are then
    exact, and the result is what the layer computes on float16 directly."""
    pool = getattr(scratch, "pool", None)
    before: list[Run] = []
    after: list[Run] = []
    ins32: list[Any] = []
    for k, x in enumerate(ins):
        if isinstance(x, np.ndarray) and x.dtype == F16:
            x32 = scratch(x.shape, F32, f"half_in{k}")
            before.append(convert(x, x32, WIDEN, pool))
            ins32.append(x32)
        else:
            ins32.append(x)
    outs32: list[np.ndarray] = []
    for k, y in enumerate(outs):
        if y.dtype == F16:
            y32 = scratch(y.shape, F32, f"half_out{k}")
            after.append(convert(y32, y, NARROW, pool))
            outs32.append(y32)
        else:
            outs32.append(y)
    run = factory(node, ins32, outs32, scratch)
    if run is None:
        return None
    return sequence([*before, run, *after])


__all__ = ["NARROW", "ROUND", "WIDEN", "around_f32", "convert", "is_half"]
