"""qconv_native_oc: conv_int8.c's AVX2 output-channel tiles (4 positions x 24 channels, the
activation quads broadcast, shifted by k and read as u8 by vpmaddubsw, two terms' int16
sums added where the limit row's L2 allows). Bit for bit the reference's wherever they run
(the kernel's count of calls they finished proves they did), and the position tiles'
where the activations' range passes a channel's L."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics.cpu_qconv import (
    BLOCK_ORDER,
    PAIRED_SHIFT,
    PROVED_ROWS,
    QConvNativeOC,
)
from edge_infer.engine.ops.quantize import qconv
from tests.engine.backends.cpu.tactics.test_qconv_native import check, make_case
from tests.engine.backends.cpu.tactics.test_qconv_shift import limit_case, limit_row

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")


def avx2() -> bool:
    lib = native.library()
    return lib is not None and lib.qconv_int8_path() == 2


def oc_calls() -> int:
    fn = native.library().qconv_int8_oc_calls
    fn.restype, fn.argtypes = ctypes.c_long, []
    return int(fn())


def run_oc(spec, inputs, workers: int = 1) -> tuple[np.ndarray, int]:
    """The layer by qconv_native_oc, and how many kernel calls took its tiles."""
    dtype = {"fp32": np.float32, "fp16": np.float16, "int8": np.int8}[spec.out_precision]
    out = np.zeros(spec.out_shape, dtype)
    pool = WorkPool(workers) if workers > 1 else None
    before = oc_calls()
    try:
        QConvNativeOC(spec).bind(inputs, [out], ScratchPool(pool))()
    finally:
        if pool is not None:
            pool.close()
    return out, oc_calls() - before


# x shape, Cout, kernel, strides, pads, dilations, group: positions not a multiple of 4,
# channels not of 24 (a short last tile), strides, a 1 x 1 (position chunks), groups, a
# batch, a channel split between calls (2 workers); stride 2 on rows wide enough for the
# AVX2 layout's 16 columns a step (then its tail); last tiles of 16 and 8 channels
CONVS = [
    ((1, 8, 5, 70), 16, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),
    ((1, 8, 4, 75), 40, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1),
    ((1, 13, 9, 11), 14, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((2, 8, 11, 9), 30, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),
    ((1, 20, 7, 7), 50, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1),
    ((1, 16, 6, 10), 24, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((1, 12, 8, 8), 18, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 3),
    ((1, 64, 5, 5), 100, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
]
# (lo, hi) of the int8 inputs: at k = 0 and shifted, one term a step (hi + k past L2 = 64
# of random weights) and two (within it)
RANGES = [(0, 120), (-30, 90), (0, 60), (-7, 50)]
OUTS = [
    (("relu", ()), "none", None, "int8"),
    (("silu", ()), "none", None, "int8"),
    (("", ()), "pre", np.int8, "int8"),
    (("clip", (0.0, 6.0)), "post", np.float32, "fp32"),
    (("hard_swish", ()), "none", None, "fp16"),
]


@pytest.mark.skipif(not avx2(), reason="the AVX2 path only")
@pytest.mark.parametrize("conv", CONVS, ids=lambda c: f"{c[0]}-{c[1]}-k{c[2][0]}s{c[3][0]}g{c[6]}")
def test_the_reference_bits_by_output_channel_tiles(conv) -> None:
    for k, (lo, hi) in enumerate(RANGES):
        act, residual, z_dtype, store = OUTS[k % len(OUTS)]
        spec, inputs = make_case(conv, act, residual, z_dtype, store, np.int8, seed=k)
        rng = np.random.default_rng(k)
        x = rng.integers(lo, hi + 1, inputs[0].shape).astype(np.int8)
        x.flat[::5] = hi
        x.flat[::7] = lo
        inputs = [x, *inputs[1:]]
        want = qconv(*inputs, **spec.attrs())
        got, calls = run_oc(spec, inputs, workers=1 + k % 2)
        assert calls > 0, (lo, hi)
        check(spec, got, want, f"{act} {residual} {store} [{lo}, {hi}]")


@pytest.mark.skipif(not avx2(), reason="the AVX2 path only")
def test_float_input_and_the_fifth_output() -> None:
    """A float input (quantized by the layout: bytes in [0, 127], some on half steps) and
    the last of OUTS, by the tiles."""
    conv = ((1, 3, 10, 10), 16, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1)
    act, residual, z_dtype, store = OUTS[-1]
    spec, inputs = make_case(conv, act, residual, z_dtype, store, np.float32, seed=9)
    inputs = [np.abs(inputs[0]), *inputs[1:]]
    want = qconv(*inputs, **spec.attrs())
    got, calls = run_oc(spec, inputs)
    assert calls > 0
    check(spec, got, want, "float input")


@pytest.mark.skipif(not avx2(), reason="the AVX2 path only")
def test_the_limits_hold_and_are_read() -> None:
    """Inputs in [-2, 127] (x + 2 reaches L = 129) and in [-2, 62] (L2 = 64: two terms a
    step): the reference's bits by the tiles. With L2 forced to 255 the first inputs take
    two terms a step and their int16 sums wrap; past L (inputs in [-128, 127]) the call is
    left to the position tiles: the reference's bits, no tile call."""
    spec, inputs = limit_case(-2, 127)
    narrow = [limit_case(-2, 62)[1][0], *inputs[1:]]
    for case in (inputs, narrow):
        got, calls = run_oc(spec, case)
        assert calls > 0
        np.testing.assert_array_equal(got, qconv(*case, **spec.attrs()))
    tactic = QConvNativeOC(spec)
    limit_row(tactic._prepared())[:] = 129 | 255 << 16
    out = np.zeros(spec.out_shape, np.float32)
    tactic.bind(inputs, [out], ScratchPool(None))()
    assert (out != qconv(*inputs, **spec.attrs())).any()
    case = [limit_case(-128, 127, seed=1)[1][0], *inputs[1:]]
    got, calls = run_oc(spec, case, workers=2)
    assert calls == 0
    np.testing.assert_array_equal(got, qconv(*case, **spec.attrs()))


def test_applicable_on_the_avx2_path_only() -> None:
    spec, _ = make_case(CONVS[0], ("relu", ()), "none", None, "int8", np.int8, seed=0)
    assert QConvNativeOC.applicable(spec) == avx2()


def _heavy_case(
    conv: tuple, heavy: np.ndarray, weigh: Callable[[np.ndarray, np.random.Generator], None]
) -> tuple[Any, list[Any], np.ndarray]:
    """(spec, inputs, the reference's output) of ``conv`` on weights in {-1, 0, 1} that
    ``weigh`` then changes, inputs in [0, 127] and 127 on the input channels ``heavy``."""
    spec, inputs = make_case(conv, ("", ()), "none", None, "fp32", np.int8, seed=3)
    rng = np.random.default_rng(3)
    w = rng.integers(-1, 2, inputs[1].shape).astype(np.int8)
    weigh(w, rng)
    x = rng.integers(0, 128, inputs[0].shape).astype(np.int8)
    x[:, heavy] = 127
    spec = type(spec)(**{**spec.__dict__, "weight": w, "x_range": (0, 127)})
    inputs = [x, w, *inputs[2:]]
    return spec, inputs, qconv(*inputs, **spec.attrs())


@pytest.mark.skipif(not avx2(), reason="the AVX2 path only")
def test_paired_and_leftover_terms_across_chunks() -> None:
    """153 terms (68 input channels, 3 x 3): the tiles read them in chunks (conv_int8.c
    EI_OCT), here 2 of 78. Quads 10-16 weigh 127 on their first byte pair at every tap (63
    heavy terms), quads 0-9 are light: no two heavy terms pair, so the 90 light ones pair
    (past the first chunk's end) and the heavy ones are left over, read one at a time. The
    reference's bits, 1 and 2 threads; with the paired count forced to every term the heavy
    sums wrap."""
    conv = ((1, 68, 6, 7), 5, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1)
    heavy = np.arange(40, 68).reshape(7, 4)[:, :2].ravel()

    def heavy_weights(w: np.ndarray, rng: np.random.Generator) -> None:
        w[:, heavy] = 127

    spec, inputs, want = _heavy_case(conv, heavy, heavy_weights)
    tactic = QConvNativeOC(spec)
    prep = tactic._prepared()
    sign = prep["wts"][0, prep["terms"] + PROVED_ROWS]
    assert (sign[: spec.cout] >> PAIRED_SHIFT == 90).all()
    for workers in (1, 2):
        got, calls = run_oc(spec, inputs, workers)
        assert calls > 0
        np.testing.assert_array_equal(got, want)
    sign[:] = sign & ((1 << PAIRED_SHIFT) - 1) | 152 << PAIRED_SHIFT
    out = np.zeros(spec.out_shape, np.float32)
    tactic.bind(inputs, [out], ScratchPool(None))()
    assert (out != want).any()


@pytest.mark.skipif(not avx2(), reason="the AVX2 path only")
@pytest.mark.parametrize("k", [3, 1])
def test_terms_ordered_per_block_of_channels(k: int) -> None:
    """48 output channels, two tiles' blocks: the first's weights as the test above's but
    heavy on quads 0-6 (the light terms pair, one heavy with the odd last: 92, not in the
    terms' own order), the second's weigh 66-68 everywhere (no two terms pair). No pair holds
    in both: in one order for the layer no term pairs; each block its own order and count
    (BLOCK_ORDER). The reference's bits, 1 and 2 threads (the second call starts at the
    second block's offsets); with the first block reading the second's offsets (the terms'
    own order) they differ. 3 x 3 and 1 x 1 (in chunks of positions: offsets per block)."""
    conv = ((1, 68, 6, 7), 48, (k, k), (1, 1), (k // 2,) * 4, (1, 1), 1)
    heavy = np.arange(0, 28).reshape(7, 4)[:, :2].ravel()

    def two_blocks(w: np.ndarray, rng: np.random.Generator) -> None:
        w[:24, heavy] = 127
        w[24:] = rng.integers(66, 69, w[24:].shape)

    spec, inputs, want = _heavy_case(conv, heavy, two_blocks)
    tactic = QConvNativeOC(spec)
    prep = tactic._prepared()
    terms = prep["terms"]
    sign = prep["wts"][0, terms + PROVED_ROWS]
    assert (sign & BLOCK_ORDER).all()
    assert (sign[:24] >> PAIRED_SHIFT == {3: 92, 1: 12}[k]).all() and (
        sign[24:48] >> PAIRED_SHIFT == 0
    ).all()
    assert prep["toff"].size == 2 * terms
    for workers in (1, 2):
        got, calls = run_oc(spec, inputs, workers)
        assert calls > 0
        np.testing.assert_array_equal(got, want)
    prep["toff"][:terms] = prep["toff"][terms:]
    prep["order"][0] = prep["order"][1]  # (the chunks' offsets)
    out = np.zeros(spec.out_shape, np.float32)
    tactic.bind(inputs, [out], ScratchPool(None))()
    assert (out != want).any()


@pytest.mark.skipif(not avx2(), reason="the AVX2 path only")
def test_int8_epilogue_of_the_tiles_near_halves() -> None:
    """The float32 int8 epilogue after the output-channel tiles on layers with most outputs
    within about 1e-6 of a half (test_qconv_fast_epilogue's cases, there by position tiles):
    its check sends those to the exact path, bit for bit (40 channels: tiles of 24 and 16; a
    short last tile of positions)."""
    from tests.engine.backends.cpu.tactics.test_qconv_fast_epilogue import (
        near_half_case,
        near_halves,
    )

    convs = [
        ((1, 16, 14, 14), 40, (1, 1), (1, 1), (0, 0, 0, 0)),
        ((1, 8, 9, 11), 24, (3, 3), (1, 1), (1, 1, 1, 1)),
    ]
    for k, act in enumerate([("", ()), ("relu", ()), ("clip", (0.0, 3.0))]):
        for conv in convs:
            spec, inputs = near_half_case(conv, act, "none", seed=k)
            assert near_halves(spec, inputs) > 0.15
            want = qconv(*inputs, **spec.attrs())
            got, calls = run_oc(spec, inputs)
            assert calls > 0
            np.testing.assert_array_equal(got, want, err_msg=f"{act[0]} {conv}")


@pytest.mark.skipif(not avx2(), reason="the AVX2 path only")
def test_position_chunks_split_a_small_map_evenly() -> None:
    """A 14 x 14 1x1 layer (ResNet-50's third stage) on 2 workers: four chunks of 48, 48, 48
    and 52 positions (multiples of 8 but the last), not strips of 64 (64, 64, 64, 4: one
    thread's share twice the other's); the reference's bits by the tiles."""
    conv = ((1, 16, 14, 14), 24, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    spec, inputs = make_case(conv, ("relu", ()), "none", None, "int8", np.int8, seed=3)
    x = np.random.default_rng(3).integers(0, 121, inputs[0].shape).astype(np.int8)
    inputs = [x, *inputs[1:]]  # within the tiles' limits
    out = np.zeros(spec.out_shape, np.int8)
    chunks = QConvNativeOC(spec)._position_chunks(
        inputs[0], out.reshape(1, 24, -1), None, 2, ScratchPool(None)
    )
    assert chunks is not None
    assert [c.calls[1].args.g1 for c in chunks] == [48, 48, 48, 52]
    got, calls = run_oc(spec, inputs, workers=2)
    assert calls > 0
    check(spec, got, qconv(*inputs, **spec.attrs()), "14 x 14 in chunks")


@pytest.mark.skipif(not avx2(), reason="the AVX2 path only")
def test_a_wide_1x1_on_few_positions_splits_its_channels() -> None:
    """A 1x1 layer of more output channels than twice its positions (ResNet-50's 14 x 14
    256 -> 1024) splits its channels between 2 workers (each reads part of the weights),
    not its positions; the reference's bits. Fewer channels keep the position chunks."""
    wide = ((1, 16, 6, 6), 80, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    spec, inputs = make_case(wide, ("relu", ()), "pre", np.int8, "int8", np.int8, seed=4)
    x = np.random.default_rng(4).integers(0, 121, inputs[0].shape).astype(np.int8)
    inputs = [x, *inputs[1:]]
    tactic = QConvNativeOC(spec)
    assert tactic._by_channels(2) and not tactic._by_channels(1)
    out = np.zeros(spec.out_shape, np.int8)
    assert tactic._position_chunks(x, out.reshape(1, 80, -1), None, 2, ScratchPool(None)) is None
    got, calls = run_oc(spec, inputs, workers=2)
    assert calls > 0
    check(spec, got, qconv(*inputs, **spec.attrs()), "by channels")
    narrow = ((1, 16, 6, 6), 72, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    spec, _ = make_case(narrow, ("relu", ()), "none", None, "int8", np.int8, seed=4)
    assert not QConvNativeOC(spec)._by_channels(2)
