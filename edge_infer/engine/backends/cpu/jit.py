"""Compiled loops for what numpy does in many passes (numba, the ``fast`` extra).

Each function is compiled once per install (``cache=True``) and releases the GIL. Callers
check :func:`available` and keep a numpy path for machines without numba.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np


@functools.cache
def _numba() -> Any | None:
    try:
        import numba
    except ImportError:
        return None
    return numba


def available() -> bool:
    return _numba() is not None


def _jit(fn: Callable[..., Any]) -> Callable[..., Any]:
    numba = _numba()
    if numba is None:
        return fn
    return numba.njit(fastmath=True, nogil=True, cache=True)(fn)


def _depthwise_py(xp, w, out, sy, sx, dy, dx):  # pragma: no cover - compiled
    """out[n, c] = sum_taps w[c, i, j] * xp[n, c, oh*sy + i*dy, ow*sx + j*dx] (xp padded)."""
    n_, c_, ho, wo = out.shape
    kh, kw = w.shape[1], w.shape[2]
    acc = np.empty(wo, np.float32)
    for n in range(n_):
        for c in range(c_):
            for oh in range(ho):
                for o in range(wo):
                    acc[o] = np.float32(0.0)
                for i in range(kh):
                    row = xp[n, c, oh * sy + i * dy]
                    for j in range(kw):
                        wt = w[c, i, j]
                        base = j * dx
                        if sx == 1:
                            for o in range(wo):
                                acc[o] += wt * row[base + o]
                        else:
                            for o in range(wo):
                                acc[o] += wt * row[base + o * sx]
                dst = out[n, c, oh]
                for o in range(wo):
                    dst[o] = acc[o]


@functools.cache
def _depthwise() -> Callable[..., Any]:
    return _jit(_depthwise_py)


def depthwise(
    xp: np.ndarray, w: np.ndarray, out: np.ndarray, sy: int, sx: int, dy: int, dx: int
) -> None:
    """The compiled :func:`_depthwise_py` (numba imported at the first call, not at import)."""
    _depthwise()(xp, w, out, sy, sx, dy, dx)


@functools.cache
def warm_up() -> None:
    """Load the compiled loops once per process (see ``activations.warm_up``)."""
    if not available():
        return
    x = np.zeros((1, 2, 4, 4), np.float32)
    w = np.zeros((2, 3, 3), np.float32)
    out = np.zeros((1, 2, 2, 2), np.float32)
    depthwise(x, w, out, 1, 1, 1, 1)
    depthwise(x[:, :1], w[:1], out[:, :1], 1, 1, 1, 1)  # channel slices: another layout
