"""Fused epilogues: bias + residual + activation applied in place, in one pass where possible.

With numba installed (the ``fast`` extra) each (activation, bias, residual) combination is
compiled once to a single loop over memory; without it, numpy in-place ufuncs do the same
work in a few passes. Both follow the ONNX definitions of the activations exactly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edge_infer.engine.backends.cpu.native import Activation


def apply_activation(y: np.ndarray, kind: str, params: Sequence[float]) -> None:
    """``y = act(y)`` in place, with the reference definition of each activation
    (:func:`edge_infer.engine.ops.fused.apply_activation`); the path without numba."""
    from edge_infer.engine.ops.fused import apply_activation as reference

    if kind:
        with np.errstate(over="ignore"):  # exp overflow gives the right limits
            np.copyto(y, reference(y, kind, params))


def _numba() -> Any | None:
    try:
        import numba
    except ImportError:
        return None
    return numba


#: activations the compiled epilogues implement, by code (numba here, C in
#: backends/cpu/kernels/simd.h; the codes are native.Activation = args.h's enum); the others
#: use numpy after the bias
ACTIVATION_CODES = {a.attr: int(a) for a in Activation}


@functools.cache
def _compiled_epilogue() -> Callable[..., None] | None:
    """One compiled epilogue for every combination (cached on disk: compiled once per install).

    The activation is a run-time code tested once per tile; each tile stage is a small
    function of its own, which LLVM vectorizes (AVX2/AVX-512/NEON) — one function with every
    branch inside the loop does not vectorize.
    """
    numba = _numba()
    if numba is None:
        return None
    jit = numba.njit(fastmath=True, nogil=True, cache=True)
    stages = {name: jit(fn) for name, fn in _STAGES.items()}
    g = globals()
    g.update(stages)  # the driver refers to the compiled stages by their global names
    return jit(_epilogue_py)


# float32 constants (module globals are compile-time constants to numba; keeping them
# float32 keeps every loop in float32 so LLVM vectorizes it)
_F = np.float32
_LOG2E, _LN2_HI, _LN2_LO = _F(1.4426950408889634), _F(0.693359375), _F(-2.12194440e-4)
_P0, _P1, _P2 = _F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3)
_P3, _P4, _P5 = _F(4.1665795894e-2), _F(1.6666665459e-1), _F(5.0000001201e-1)
_EXP_LO, _EXP_HI = _F(-87.0), _F(88.0)
_ONE, _HALF, _ZERO, _SIXTH, _TWO = _F(1.0), _F(0.5), _F(0.0), _F(1.0 / 6.0), _F(2.0)
_B127, _S23 = np.int32(127), np.int32(23)
_TILE = 1024


def _st_exp_neg(buf, poly, bits, m, k):  # pragma: no cover - compiled
    """poly * 2**bits = exp(-k * buf): Cephes float32 range reduction + polynomial."""
    for i in range(m):
        x = min(max(-k * buf[i], _EXP_LO), _EXP_HI)
        nf = np.floor(x * _LOG2E + _HALF)
        r = x - nf * _LN2_HI - nf * _LN2_LO
        p = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
        poly[i] = p * r * r + r + _ONE
        bits[i] = (np.int32(nf) + _B127) << _S23


def _st_sigmoid(poly, scale, m):  # pragma: no cover - compiled
    for i in range(m):
        poly[i] = _ONE / (_ONE + poly[i] * scale[i])


def _st_mul(buf, poly, m):  # pragma: no cover - compiled
    for i in range(m):
        buf[i] = buf[i] * poly[i]


def _st_copy(buf, poly, m):  # pragma: no cover - compiled
    for i in range(m):
        buf[i] = poly[i]


def _st_tanh(buf, poly, m):  # pragma: no cover - compiled
    for i in range(m):
        buf[i] = _TWO * poly[i] - _ONE


def _st_simple(buf, m, act, q0, q1):  # pragma: no cover - compiled
    if act == 1:
        for i in range(m):
            buf[i] = max(buf[i], _ZERO)
    elif act == 2:
        for i in range(m):
            v = buf[i]
            buf[i] = v if v >= _ZERO else v * q0
    elif act == 3:
        for i in range(m):
            buf[i] = min(max(buf[i], q0), q1)
    elif act == 6:
        for i in range(m):
            v = buf[i]
            buf[i] = v * min(max(v * _SIXTH + _HALF, _ZERO), _ONE)
    elif act == 7:
        for i in range(m):
            buf[i] = min(max(buf[i] * q0 + q1, _ZERO), _ONE)


def _st_load(row, s, m, b, buf):  # pragma: no cover - compiled
    for i in range(m):
        buf[i] = row[s + i] + b


def _st_add(buf, row, s, m):  # pragma: no cover - compiled
    for i in range(m):
        buf[i] += row[s + i]


def _st_store(buf, row, s, m):  # pragma: no cover - compiled
    for i in range(m):
        row[s + i] = buf[i]


_STAGES = {
    "_st_exp_neg": _st_exp_neg,
    "_st_sigmoid": _st_sigmoid,
    "_st_mul": _st_mul,
    "_st_copy": _st_copy,
    "_st_tanh": _st_tanh,
    "_st_simple": _st_simple,
    "_st_load": _st_load,
    "_st_add": _st_add,
    "_st_store": _st_store,
}


def _epilogue_py(y, bias, z, act, p0, p1, residual, has_bias):  # pragma: no cover - compiled
    """Tiles of 1024 values: load (+bias, +residual), activate, store."""
    n_, c_, l_ = y.shape
    q0, q1 = np.float32(p0), np.float32(p1)
    buf = np.empty(_TILE, np.float32)
    poly = np.empty(_TILE, np.float32)
    bits = np.empty(_TILE, np.int32)
    scale = bits.view(np.float32)
    k = _TWO if act == 8 else _ONE
    for n in range(n_):
        for c in range(c_):
            b = bias[c] if has_bias else _ZERO
            row = y[n, c]
            for s in range(0, l_, _TILE):
                m = min(_TILE, l_ - s)
                _st_load(row, s, m, b, buf)
                if residual == 1:
                    _st_add(buf, z[n, c], s, m)
                if act == 4 or act == 5 or act == 8:
                    _st_exp_neg(buf, poly, bits, m, k)
                    _st_sigmoid(poly, scale, m)
                    if act == 5:
                        _st_mul(buf, poly, m)
                    elif act == 4:
                        _st_copy(buf, poly, m)
                    else:
                        _st_tanh(buf, poly, m)
                elif act != 0:
                    _st_simple(buf, m, act, q0, q1)
                if residual == 2:
                    _st_add(buf, z[n, c], s, m)
                _st_store(buf, row, s, m)


class Epilogue:
    """``y = act(y + bias [+ z]) [+ z]`` in place on (N, C, L) views.

    ``bind(y3, z3, c0)`` returns a no-argument run for a slice whose channel 0 is channel
    ``c0`` of the layer (chunks of one layer split channels, images or columns).
    """

    def __init__(
        self, activation: str, params: Sequence[float], bias: np.ndarray | None, residual: str
    ) -> None:
        self.activation = activation
        self.params = [float(v) for v in params]
        self.residual = {"none": 0, "pre": 1, "post": 2}[residual]
        self.bias = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
        self.code = ACTIVATION_CODES.get(activation)
        self.kernel = _compiled_epilogue() if self.code is not None else None

    def bind(self, y3: np.ndarray, z3: np.ndarray | None, c0: int = 0) -> Callable[[], None]:
        c1 = c0 + y3.shape[1]
        bias = None if self.bias is None else self.bias[c0:c1]
        res, act, p = self.residual, self.activation, self.params
        if self.kernel is not None:
            warm_up()  # compiled loops load at the bind (create_context), not in the first run
            code = self.code
            defaults = {2: [0.01, 0.0], 3: [-np.inf, np.inf], 7: [0.2, 0.5]}.get(code, [0.0, 0.0])
            p0, p1 = (p + defaults[len(p) :])[:2]
            kernel, has_bias = self.kernel, bias is not None
            b = bias if has_bias else np.zeros(1, np.float32)
            z = z3 if z3 is not None else np.zeros((1, 1, 1), np.float32)
            return lambda: kernel(y3, b, z, code, p0, p1, res, has_bias)
        bias3 = None if bias is None else bias.reshape(1, -1, 1)

        def numpy_epilogue() -> None:
            if bias3 is not None:
                np.add(y3, bias3, out=y3)
            if res == 1:
                np.add(y3, z3, out=y3)
            apply_activation(y3, act, p)
            if res == 2:
                np.add(y3, z3, out=y3)

        return numpy_epilogue


def make_epilogue(
    activation: str, params: Sequence[float], bias: np.ndarray | None, residual: str
) -> Epilogue:
    return Epilogue(activation, params, bias, residual)


@functools.cache
def warm_up() -> None:
    """Load the compiled epilogue for every array layout it meets, once per process.

    Loading numba's cached machine code costs about a second the first time; doing it when a
    context is created keeps that cost out of the first inference.
    """
    kernel = _compiled_epilogue()
    if kernel is None:
        return
    contiguous = np.zeros((1, 2, 4), np.float32)
    strided = np.zeros((1, 4, 4), np.float32)[:, ::2]
    bias = np.zeros(2, np.float32)
    for y in (contiguous, strided):
        for z in (contiguous, strided):
            kernel(y.copy() if y is contiguous else y, bias, z, 0, 0.0, 0.0, 0, False)
