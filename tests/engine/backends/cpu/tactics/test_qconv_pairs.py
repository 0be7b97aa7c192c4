"""qconv_terms.pair_terms: the terms of a QConv in the order conv_int8.c's AVX2 tiles read two
at a time (two terms' int16 pair sums added before one vpmaddwd), the pairs that hold the
layer's input range in every channel first, the terms left over after them, each read alone
(the sign row's paired count). Bit for bit the reference's."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics.cpu_qconv import (
    PAIRED_SHIFT,
    PROVED_ROWS,
    QConvNative,
    QConvNativeOC,
)
from edge_infer.engine.backends.cpu.tactics.qconv_terms import pair_terms, shift_limits
from edge_infer.engine.ops.quantize import qconv
from tests.engine.backends.cpu.tactics.test_qconv_native import make_case

CONV = ((1, 8, 6, 7), 5, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1)


def _run(cls: type, spec: object, inputs: list, workers: int) -> np.ndarray:
    out = np.zeros(spec.out_shape, np.float32)  # type: ignore[attr-defined]
    pool = WorkPool(workers) if workers > 1 else None
    try:
        cls(spec).bind(inputs, [out], ScratchPool(pool))()
    finally:
        if pool is not None:
            pool.close()
    return out


def _pairs_hold(terms: np.ndarray, order: np.ndarray, paired: int, span: int) -> bool:
    g, t, c, _ = terms.shape
    lim = shift_limits(terms[:, order].reshape(g, t, 1, c, 4), paired)
    return bool(((lim >> 16) >= span).all())


def test_pair_terms() -> None:
    """Terms with a byte pair of (127, 127) in one channel pair only with terms light there:
    the consecutive pairs that hold stay, the others' terms pair again across channels,
    every pair holds, a term left without a partner comes after the pairs; their own order
    where the consecutive pairs hold or no span fits."""
    rng = np.random.default_rng(0)
    terms = rng.integers(-2, 3, (1, 10, 3, 4)).astype(np.int8)  # 254 + 4 <= 32767 // 127
    terms[0, [0, 1, 4, 5], 0, :2] = 127  # heavy in channel 0
    terms[0, [2, 3], 1, 2:] = 127  # heavy in channel 1
    order, paired = pair_terms(terms, 127)
    assert sorted(order.tolist()) == list(range(10))
    assert paired == 8 and _pairs_hold(terms, order, paired, 127)
    assert not _pairs_hold(terms, np.arange(10), 10, 127)
    assert set(order[8:].tolist()) < {0, 1, 4, 5}
    assert not _pairs_hold(terms, order, 10, 127)
    light = terms.copy()
    light[0, :, :, :] = 3
    assert pair_terms(light, 127)[1] == 10 and (pair_terms(light, 127)[0] == np.arange(10)).all()
    assert (pair_terms(terms, 255)[0] == np.arange(10)).all()


def _heavy_case() -> tuple:
    """A 3x3 layer whose input channels 0, 1 (a byte pair of quad 0) weigh 127 at every
    tap and channels 6, 7 (quad 1's other pair) at the taps of kernel rows 1 and 2, the
    other weights in [-1, 1]: 9 + 6 heavy terms, 3 light; inputs in [0, 127] (x_range) with
    channels 0 and 1 at 127: two of quad 0's terms added in int16 wrap. Consecutive pairs
    hold only at terms 8-11 (a heavy and a light term, two light); quad 0's other 8 terms
    pair with quad 1's 6 heavy ones, 2 are left over: 16 paired terms of 18."""
    spec, inputs = make_case(CONV, ("", ()), "none", None, "fp32", np.int8, seed=5)
    rng = np.random.default_rng(5)
    w = rng.integers(-1, 2, inputs[1].shape).astype(np.int8)
    w[:, 0:2] = 127
    w[:, 6:8, 1:] = 127
    x = rng.integers(0, 128, inputs[0].shape).astype(np.int8)
    x[:, 0:2] = 127
    spec = type(spec)(**{**spec.__dict__, "weight": w, "x_range": (0, 127)})
    return spec, [x, w, *inputs[2:]]


def test_leftover_terms_read_alone() -> None:
    """The heavy layer on both tactics, 1 and 2 threads: the reference's bits; 16 of its 18
    terms pair. With the paired count forced to every term the two heavy terms left over
    are added in int16 and wrap (the count is read)."""
    spec, inputs = _heavy_case()
    want = qconv(*inputs, **spec.attrs())
    lib = native.library()
    for cls in (QConvNative, QConvNativeOC):
        tactic = cls(spec)
        prep = tactic._prepared()
        sign = prep["wts"][0, prep["terms"] + PROVED_ROWS]
        assert (sign[: spec.cout] >> PAIRED_SHIFT == 16).all()
        for workers in (1, 2):
            np.testing.assert_array_equal(_run(cls, spec, inputs, workers), want)
        if lib is None or lib.qconv_int8_path() != 2:
            continue
        sign[:] = sign & ((1 << PAIRED_SHIFT) - 1) | 18 << PAIRED_SHIFT
        out = np.zeros(spec.out_shape, np.float32)
        tactic.bind(inputs, [out], ScratchPool(None))()
        assert (out != want).any()


pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")
