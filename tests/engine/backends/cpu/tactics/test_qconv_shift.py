"""qconv_native's AVX2 tile on shifted activations (kernels/conv_int8.c tile_shift8): x + k
read as u8 by vpmaddubsw, exact where x + k lies in [0, L] (the weight array's limit row,
qconv_terms.shift_limits), two terms' int16 sums added where it lies in [0, L2]; k from each
strip's range of bytes; the sign tile where no k fits. Bit for bit the reference's on
every range of inputs."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics.cpu_qconv import (
    PROVED_ROWS,
    SIGN_ROWS,
    QConvNative,
)
from edge_infer.engine.backends.cpu.tactics.qconv_terms import shift_limits
from edge_infer.engine.ops.quantize import qconv
from tests.engine.backends.cpu.tactics.test_qconv_native import make_case, run_native

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

# a padded 3 x 3 (the padding read as k too) over a 9 x 11 map: 9 x 13 grid positions, the
# last strip's last vector 5 positions (its other lanes read the buffer's slack)
CONV = ((1, 12, 9, 11), 14, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1)


def avx2() -> bool:
    lib = native.library()
    return lib is not None and lib.qconv_int8_path() == 2


def limit_row(prep: dict) -> np.ndarray:
    return prep["wts"][0, prep["terms"] + PROVED_ROWS + SIGN_ROWS]


def limit_case(lo: int, hi: int, seed: int = 0) -> tuple:
    """Weights with a pair (127, 127) in the first two terms of every channel (L = 32767 //
    254 = 129, L2 = 32767 // 508 = 64), inputs in [lo, hi] with both ends present and the
    pair's two channels often at hi."""
    spec, inputs = make_case(CONV, ("", ()), "none", None, "fp32", np.int8, seed=seed)
    w = inputs[1].copy()
    w[:, 0:2, 0, 0:2] = 127
    rng = np.random.default_rng(seed)
    x = rng.integers(lo, hi + 1, inputs[0].shape).astype(np.int8)
    x[:, 0:2].flat[::3] = hi
    x.flat[::11] = lo
    spec = type(spec)(**{**spec.__dict__, "weight": w})
    return spec, [x, w, *inputs[2:]]


def test_shift_limits() -> None:
    """L * the largest positive pair sum <= 32767 < (L + 1) * it, likewise the negative
    side against -32768, capped at 255; pairs are bytes (0, 1) and (2, 3) of a quad."""
    q = np.zeros((1, 1, 1, 4, 4), np.int8)
    q[0, 0, 0, 0] = [127, 127, 0, 0]
    q[0, 0, 0, 1] = [-128, -128, 127, 0]
    q[0, 0, 0, 2] = [100, 0, 0, 100]  # two pairs of 100: 327
    lim = shift_limits(q)[0]
    assert (lim & 0xFFFF).tolist() == [129, 128, 255, 255]
    assert (lim >> 16).tolist() == [255] * 4  # one term: no two-term sums
    q[0, 0, 0, 3] = [1, 0, 0, 1]
    assert shift_limits(q)[0, 3] & 0xFFFF == 255
    # two terms: the pairs' 4 weights (127, 127, 127, 1): 32767 // 382; an odd last term
    # alone counts for L only
    q3 = np.zeros((1, 1, 3, 2, 4), np.int8)
    q3[0, 0, 0, 0] = [127, 127, 0, 0]
    q3[0, 0, 1, 0] = [127, 1, 0, 0]
    q3[0, 0, 2, 1] = [0, 0, -128, -128]
    lim = shift_limits(q3)[0]
    assert (lim >> 16).tolist() == [32767 // 382, 255]
    assert (lim & 0xFFFF).tolist() == [129, 128]


@pytest.mark.skipif(not avx2(), reason="the AVX2 path only")
def test_shifted_tile_exact_at_the_limit() -> None:
    """Inputs in [-2, 127] (x + 2 reaches L = 129 exactly), then in [-2, 62] (x + 2 reaches
    L2 = 64: two terms a step): the reference's bits; the shifted tile took them (wrong sums
    of weights change the outputs: only it reads them on AVX2). With L2 forced to 255 the
    first inputs take the two-term tile, whose int16 sums wrap (the limit's high half is
    read)."""
    spec, inputs = limit_case(-2, 127)
    narrow = [limit_case(-2, 62)[1][0], *inputs[1:]]
    tactic = QConvNative(spec)
    prep = tactic._prepared()
    assert (limit_row(prep)[: spec.cout] == 129 | 64 << 16).all()
    out = np.zeros(spec.out_shape, np.float32)
    for case in (inputs, narrow):
        want = qconv(*case, **spec.attrs())
        tactic.bind(case, [out], ScratchPool(None))()
        np.testing.assert_array_equal(out, want)
        prep["wsum"] += 1000
        tactic.bind(case, [out], ScratchPool(None))()
        prep["wsum"] -= 1000
        assert (out != want).mean() > 0.5
    want = qconv(*inputs, **spec.attrs())
    limit_row(prep)[:] = 129 | 255 << 16
    tactic.bind(inputs, [out], ScratchPool(None))()
    assert (out != want).any()


@pytest.mark.skipif(not avx2(), reason="the AVX2 path only")
def test_range_past_the_limit_falls_back() -> None:
    """Inputs in [-128, 127] (a range of 255 > L), then in [0, 100] and -128 (read as 128 <= L
    at k = 0: caught): no shift fits, the sign tile: the
    reference's bits, 1 and 2 threads. With the limit row forced to 255 the shifted tile
    takes them and its int16 pairs saturate (the row is read)."""
    spec, inputs = limit_case(-128, 127, seed=1)
    want = qconv(*inputs, **spec.attrs())
    for workers in (1, 2):
        np.testing.assert_array_equal(run_native(spec, inputs, workers), want)
    # bytes in [0, 100] and -128 only: at k = 0 the -128 reads as 128 < L
    x = np.random.default_rng(2).integers(0, 101, inputs[0].shape).astype(np.int8)
    x.flat[::7] = -128
    alias = [x, *inputs[1:]]
    np.testing.assert_array_equal(run_native(spec, alias), qconv(*alias, **spec.attrs()))
    tactic = QConvNative(spec)
    prep = tactic._prepared()
    limit_row(prep)[:] = 255 | 255 << 16
    out = np.zeros(spec.out_shape, np.float32)
    tactic.bind(inputs, [out], ScratchPool(None))()
    assert (out != want).any()


@pytest.mark.skipif(not avx2(), reason="the AVX2 path only")
def test_shift_per_strip() -> None:
    """The first image's inputs in [-50, 60], the second's in [-3, 120] (shifts 50 and 3), an
    int8 output with SiLU, 1 and 2 threads: the reference's result (SiLU: the exp's last
    bit, one step on at most 1 %)."""
    conv = ((2, 12, 9, 11), 14, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1)
    spec, inputs = make_case(conv, ("silu", ()), "none", None, "int8", np.int8, seed=3)
    w = inputs[1].copy()
    w[:, 0:2, 0, 0:2] = 127
    rng = np.random.default_rng(3)
    x = np.concatenate(
        [rng.integers(-50, 61, (1, 12, 9, 11)), rng.integers(-3, 121, (1, 12, 9, 11))]
    ).astype(np.int8)
    spec = type(spec)(**{**spec.__dict__, "weight": w})
    inputs = [x, w, *inputs[2:]]
    want = qconv(*inputs, **spec.attrs()).astype(np.int32)
    for workers in (1, 2):
        diff = np.abs(run_native(spec, inputs, workers).astype(np.int32) - want)
        assert diff.max() <= 1 and (diff > 0).mean() <= 0.01
