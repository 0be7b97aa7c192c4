"""Direct CBLAS ``sgemm`` on strided views: the primitive behind implicit-GEMM convolution.

numpy's ``matmul`` needs contiguous operands (or copies them) and cannot accumulate into its
output; CBLAS takes leading dimensions and ``beta``, so a convolution can sum one GEMM per
kernel tap over *shifted views* of the padded input, straight into the output, copying
nothing. We bind the OpenBLAS that numpy itself ships (same threads, same kernels); when it
cannot be found, :func:`sgemm` falls back to numpy (correct, slower).
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
from typing import Any

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


@functools.cache
def _cblas() -> tuple[Any, type] | None:
    """(sgemm function, integer type) from numpy's bundled OpenBLAS, or None."""
    base = os.path.dirname(np.__file__)
    candidates = sorted(glob.glob(os.path.join(base, "..", "numpy.libs", "*openblas*.so*")))
    candidates += sorted(glob.glob(os.path.join(base, ".dylibs", "*openblas*")))
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol, int_type in (
            ("scipy_cblas_sgemm64_", ctypes.c_int64),
            ("cblas_sgemm64_", ctypes.c_int64),
            ("scipy_cblas_sgemm", ctypes.c_int32),
            ("cblas_sgemm", ctypes.c_int32),
        ):
            fn = getattr(lib, symbol, None)
            if fn is None:
                continue
            fn.restype = None
            fn.argtypes = [
                ctypes.c_int,
                ctypes.c_int,
                ctypes.c_int,
                int_type,
                int_type,
                int_type,
                ctypes.c_float,
                ctypes.c_void_p,
                int_type,
                ctypes.c_void_p,
                int_type,
                ctypes.c_float,
                ctypes.c_void_p,
                int_type,
            ]
            return fn, int_type
    return None


def available() -> bool:
    return _cblas() is not None


def _matrix(a: np.ndarray) -> tuple[bool, int]:
    """(transposed, leading dim) describing a 2-D float32 view for row-major CBLAS."""
    s0, s1 = a.strides[0] // 4, a.strides[1] // 4
    if s1 == 1 and s0 >= max(a.shape[1], 1):
        return False, s0
    if s0 == 1 and s1 >= max(a.shape[0], 1):
        return True, s1
    raise ValueError(f"operand with strides {a.strides} is not a BLAS matrix")


def is_blas_matrix(a: np.ndarray) -> bool:
    if a.ndim != 2 or a.dtype != np.float32 or a.strides[0] % 4 or a.strides[1] % 4:
        return False
    try:
        _matrix(a)
    except ValueError:
        return False
    return True


def sgemm(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, *, alpha: float = 1.0, beta: float = 0.0
) -> None:
    """``c = alpha * a @ b + beta * c`` in place; operands are 2-D float32 strided views."""
    n = b.shape[1]
    lib = _cblas()
    if (
        lib is None
        or not (is_blas_matrix(a) and is_blas_matrix(b))
        or c.strides[1] != 4
        or c.dtype != np.float32
        or c.strides[0] < 4 * max(n, 1)
    ):
        if beta == 0.0:
            np.matmul(a, b, out=c)
            if alpha != 1.0:
                c *= alpha
        else:
            c *= beta
            c += alpha * (a @ b)
        return
    fn, _ = lib
    fn(*_cblas_args(a, b, c, alpha, beta))


def _cblas_args(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, alpha: float, beta: float
) -> tuple[Any, ...]:
    """``cblas_sgemm``'s arguments for ``c = alpha * a @ b + beta * c`` (row major)."""
    ta, lda = _matrix(a)
    tb, ldb = _matrix(b)
    m, k = a.shape
    n = b.shape[1]
    return (
        _ROW_MAJOR,
        _TRANS if ta else _NO_TRANS,
        _TRANS if tb else _NO_TRANS,
        m,
        n,
        k,
        alpha,
        a.ctypes.data,
        lda,
        b.ctypes.data,
        ldb,
        beta,
        c.ctypes.data,
        c.strides[0] // 4,
    )


def bound_sgemm(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, *, alpha: float = 1.0, beta: float = 0.0
) -> Any:
    """``sgemm`` with every argument resolved once: returns a no-argument callable.

    The operands must stay alive and in place (arena views and packed weights do), so the
    per-call cost is one foreign call — no shape checks, no pointer look-ups.
    """
    lib = _cblas()
    n = b.shape[1]
    if (
        lib is None
        or not (is_blas_matrix(a) and is_blas_matrix(b))
        or c.strides[1] != 4
        or c.dtype != np.float32
        or c.strides[0] < 4 * max(n, 1)
    ):
        return lambda: sgemm(a, b, c, alpha=alpha, beta=beta)
    fn, _ = lib
    args = _cblas_args(a, b, c, alpha, beta)
    keep = (a, b, c)  # the callable owns references: the pointers stay valid

    def call() -> None:
        fn(*args)

    call.keep = keep  # type: ignore[attr-defined]
    return call
