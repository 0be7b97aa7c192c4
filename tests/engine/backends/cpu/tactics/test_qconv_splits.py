"""How qconv_native(_oc) splits a layer between 2 workers: layers of fewer channel quads than
threads (stems: 3 input channels) in row chunks (cpu_qconv.QConvNative._row_chunks: each
chunk lays out the phase rows it reads in its own buffer, then runs its GEMM), a small 1x1
map in position chunks of equal size, a batch's small 1x1 maps in chunks across its images;
the reference's bits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics import qconv_chunks
from edge_infer.engine.backends.cpu.tactics.cpu_qconv import QConvNative, QConvNativeOC
from edge_infer.engine.backends.cpu.tactics.qconv_chunks import (
    VECTOR_POSITIONS,
    _int8_path,
    longest_share,
)
from edge_infer.engine.ops.quantize import qconv
from tests.engine.backends.cpu.tactics.test_qconv_native import ACTS, check, make_case

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

# x shape, Cout, kernel, strides, pads (t, l, b, r), dilations, group: MobileNetV2's and
# ResNet-50's stems on smaller maps, uneven pads, a dilation, 2 input channels, a batch of 2
STEMS = [
    ((1, 3, 80, 76), 32, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),
    ((1, 3, 70, 66), 64, (7, 7), (2, 2), (3, 3, 3, 3), (1, 1), 1),
    ((1, 3, 71, 57), 32, (3, 3), (2, 1), (0, 2, 1, 0), (2, 1), 1),
    ((2, 2, 48, 40), 24, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 1),
]
CASES = [
    (("clip", (0.0, 6.0)), "none", None, "int8", np.float32),
    (("relu", ()), "none", None, "int8", np.int8),
    (("silu", ()), "none", None, "fp16", np.float32),
    (("", ()), "pre", np.int8, "int8", np.float32),
    (("hard_swish", ()), "post", np.float32, "fp32", np.int8),
]


def run(tactic: type[QConvNative], spec, inputs, workers: int) -> np.ndarray:
    dtype = {"fp32": np.float32, "fp16": np.float16, "int8": np.int8}[spec.out_precision]
    out = np.zeros(spec.out_shape, dtype)
    pool = WorkPool(workers) if workers > 1 else None
    try:
        tactic(spec).bind(inputs, [out], ScratchPool(pool))()
    finally:
        if pool is not None:
            pool.close()
    return out


def tactics() -> list[type[QConvNative]]:
    lib = native.library()
    avx2 = lib is not None and lib.qconv_int8_path() == 2
    return [QConvNative, QConvNativeOC] if avx2 else [QConvNative]


@pytest.mark.parametrize("conv", STEMS, ids=lambda c: f"{c[0]}-k{c[2][0]}s{c[3][0]}")
def test_row_chunks(conv) -> None:
    for k, (act, residual, z_dtype, out_precision, x_dtype) in enumerate(CASES):
        spec, inputs = make_case(conv, act, residual, z_dtype, out_precision, x_dtype, seed=k)
        x = np.asarray(inputs[0])
        out3 = np.zeros(spec.out_shape, np.float32).reshape(*spec.out_shape[:2], -1)
        chunks = QConvNative(spec)._row_chunks(x, out3, None, 2, ScratchPool(None))
        assert chunks is not None and len(chunks) >= 4, conv
        want = qconv(*inputs, **spec.attrs())
        for tactic in tactics():
            got = run(tactic, spec, inputs, workers=2)
            check(spec, got, want, f"{tactic.name} {act[0]} {residual} {out_precision}")


def test_row_chunks_only_where_the_quads_cannot_split() -> None:
    """Not on one worker, not on 8 input channels (two quads: the quad split), not on a
    batch of whole images per task."""
    spec, inputs = make_case(STEMS[0], ("relu", ()), "none", None, "int8", np.int8, seed=0)
    x, out3 = np.asarray(inputs[0]), np.zeros((1, 32, 40 * 38), np.int8)
    assert QConvNative(spec)._row_chunks(x, out3, None, 1, ScratchPool(None)) is None
    wide = ((1, 8, 80, 76), *STEMS[0][1:])
    spec, inputs = make_case(wide, ("relu", ()), "none", None, "int8", np.int8, seed=0)
    assert QConvNative(spec)._row_chunks(inputs[0], out3, None, 2, ScratchPool(None)) is None
    batch = ((4, 3, 80, 76), *STEMS[0][1:])
    spec, inputs = make_case(batch, ("relu", ()), "none", None, "int8", np.int8, seed=0)
    out3 = np.zeros((4, 32, 40 * 38), np.int8)
    assert QConvNative(spec)._row_chunks(inputs[0], out3, None, 2, ScratchPool(None)) is None


def short_tiles_by_vector() -> None:
    """Skip unless this CPU's path computes a short tile's vectors only (AVX2, AVX-512 VNNI:
    qconv_chunks.VECTOR_POSITIONS), the paths that split small maps finer than tiles."""
    if _int8_path() not in VECTOR_POSITIONS:
        pytest.skip("the AVX2 and AVX-512 VNNI paths only")


def test_position_chunks_split_a_small_map_evenly() -> None:
    """qconv_native on the AVX2 and AVX-512 VNNI paths: a 14 x 14 1x1 layer (MobileNetV2's
    576 -> 96 projections) in four chunks of 48, 48, 48 and 52 positions, not strips of whole
    64-position tiles (64, 64, 64, 4: one thread's share twice the other's)."""
    short_tiles_by_vector()
    conv = ((1, 24, 14, 14), 16, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    spec, inputs = make_case(conv, ("", ()), "pre", np.int8, "int8", np.int8, seed=3)
    out3 = np.zeros((1, 16, 196), np.int8)
    chunks = QConvNative(spec)._position_chunks(inputs[0], out3, None, 2, ScratchPool(None))
    assert chunks is not None
    assert [c.calls[1].args.g1 for c in chunks] == [48, 48, 48, 52]
    want = qconv(*inputs, **spec.attrs())
    check(spec, run(QConvNative, spec, inputs, workers=2), want, "14 x 14 in chunks")


def test_position_chunks_a_multiple_of_the_threads() -> None:
    """A 1x1 layer whose layouts fit 5 chunks an image (ResNet-50's 256 channels over 56 x 56
    positions, CHUNK_LAYOUT_BYTES) takes 6 on 2 workers, not 5 (3 on one thread, 2 on the
    other)."""
    conv = ((1, 256, 56, 56), 24, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    spec, inputs = make_case(conv, ("relu", ()), "none", None, "int8", np.int8, seed=6)
    out3 = np.zeros((1, 24, 3136), np.int8)
    assert -(-3136 * 256 // qconv_chunks.CHUNK_LAYOUT_BYTES) == 5
    chunks = QConvNative(spec)._position_chunks(inputs[0], out3, None, 2, ScratchPool(None))
    assert chunks is not None and len(chunks) == 6
    want = qconv(*inputs, **spec.attrs())
    check(spec, run(QConvNative, spec, inputs, workers=2), want, "6 chunks")


# x shape, Cout, kernel, strides, pads, dilations, group; the terms of its packed taps
PACKED = [
    (((1, 3, 21, 19), 16, (3, 3), (2, 2), (1, 0, 1, 2), (1, 1), 1), 7),  # 6 quads + a tap
    (((1, 3, 12, 13), 8, (2, 2), (1, 1), (0, 0, 1, 1), (1, 1), 1), 3),  # 12 bytes: 3 quads
    (((1, 3, 15, 14), 8, (1, 3), (2, 1), (0, 1, 0, 1), (1, 1), 1), 3),  # 9: 2 + 1 byte
    (((1, 2, 17, 16), 12, (5, 5), (2, 2), (3, 3, 3, 3), (2, 2), 1), 13),  # 50: 12 + a tap
    (((2, 1, 11, 12), 8, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1), 3),  # 9: 2 + a tap
    (((1, 1, 10, 9), 8, (3, 2), (1, 1), (1, 1, 1, 1), (1, 1), 1), 2),  # 6: 1 + 2 bytes
]


@pytest.mark.parametrize("conv,terms", PACKED, ids=[f"{c[0]}-k{c[2]}" for c, _ in PACKED])
def test_packed_taps(conv, terms) -> None:
    """1-3 input channels: the taps' bytes packed in quads (conv_int8.c pack_taps), the last
    tap read from the phases where it fills the last quad alone; on 1 and 2 workers."""
    for k, (act, residual, z_dtype, out_precision, x_dtype) in enumerate(CASES):
        spec, inputs = make_case(conv, act, residual, z_dtype, out_precision, x_dtype, seed=k)
        assert QConvNative(spec)._prepared()["terms"] == terms
        want = qconv(*inputs, **spec.attrs())
        for tactic in tactics():
            for workers in (1, 2):
                got = run(tactic, spec, inputs, workers)
                check(spec, got, want, f"{tactic.name} {workers} {act[0]} {out_precision}")


def test_grid_strips_split_a_small_map_evenly(monkeypatch) -> None:
    """On the AVX2 and AVX-512 VNNI paths a 14 x 14 3 x 3 layer's grid (14 rows of 16: 224
    positions) splits between 2 workers' GEMM calls at multiples of 16 (48, 64, 48, 64: 112 a
    share), not strips of whole 64-position tiles (64, 64, 64, 32: 128 against 96); the
    reference's bits."""
    short_tiles_by_vector()
    calls: list[tuple[int, int]] = []
    real = native.NativeCall

    def spy(name: str, fields: dict, keep: tuple) -> native.NativeCall:
        if name == "qconv_int8_f32":
            calls.append((fields["g0"], fields["g1"]))
        return real(name, fields, keep)

    monkeypatch.setattr(native, "NativeCall", spy)
    conv = ((1, 32, 14, 14), 40, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1)
    for tactic in tactics():
        spec, inputs = make_case(conv, ("relu", ()), "none", None, "int8", np.int8, seed=5)
        calls.clear()
        got = run(tactic, spec, inputs, workers=2)
        assert sorted(set(calls)) == [(0, 48), (48, 112), (112, 160), (160, 224)], tactic.name
        check(spec, got, qconv(*inputs, **spec.attrs()), tactic.name)


def test_longest_share() -> None:
    """Chunks handed out in order, each to the thread free first."""
    assert longest_share([(0, 64), (64, 128), (128, 192), (192, 196)], 2) == 128
    assert longest_share([(0, 48), (48, 96), (96, 144), (144, 196)], 2) == 100
    assert longest_share([(0, 832), (832, 1664), (1664, 2496), (2496, 3136)], 2) == 1664
    assert longest_share([(0, 10), (10, 30)], 1) == 30


@pytest.mark.parametrize(
    "positions,workers,want",
    [
        (196, 2, [48, 48, 48, 52]),  # whole tiles: 64, 64, 64, 4 (128 against 100)
        (784, 2, [192, 192, 192, 208]),  # whole tiles: 256 x 3 + 16 (512 against 400)
        (3136, 2, [832, 832, 832, 640]),  # even: 784 x 4 (1568), within EVEN_SHARE
        (196, 1, [128, 68]),  # one thread: whole tiles (short tiles cost there)
    ],
)
def test_vnni_chunk_bounds(monkeypatch, positions, workers, want) -> None:
    """On the AVX-512 VNNI path a 1x1 layer's position chunks are whole 64-position tiles
    unless those leave one of the threads EVEN_SHARE or more of the even split's longest
    share: then multiples of 16 (its short tiles compute only the vectors they have)."""
    monkeypatch.setattr(qconv_chunks, "_int8_path", lambda: qconv_chunks.VNNI512_PATH)
    conv = ((1, 24, 14, 14), 16, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    spec, _ = make_case(conv, ("", ()), "none", None, "int8", np.int8, seed=3)
    parts = len(want)
    bounds = QConvNative(spec)._chunk_bounds(positions, parts, workers)
    assert [g1 - g0 for g0, g1 in bounds] == want
    assert bounds[0][0] == 0 and bounds[-1][1] == positions


# 1x1 layers of a batch whose map is not whole vectors of 16: MobileNetV2's 7 x 7 (49
# positions), 45 positions, a 14 x 14 one (196)
BATCHED = [
    ((8, 64, 7, 7), 40, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((3, 20, 5, 9), 70, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((4, 96, 14, 14), 24, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
]
RESIDUALS = [
    ("none", None, "int8"), ("pre", np.int8, "int8"), ("post", np.float32, "fp32"),
    ("pre", np.float32, "fp16"),
]  # fmt: skip


def gemm_calls(monkeypatch) -> list[dict]:
    """The fields of every qconv_int8_f32 call bound from here on."""
    calls: list[dict] = []
    real = native.NativeCall

    def spy(name: str, fields: dict, keep: tuple) -> native.NativeCall:
        if name == "qconv_int8_f32":
            calls.append(dict(fields))
        return real(name, fields, keep)

    monkeypatch.setattr(native, "NativeCall", spy)
    return calls


def batch_chunks_here(monkeypatch) -> None:
    """This CPU's path in the batch chunks' paths (qconv_chunks.BATCH_CHUNK_PATHS: AVX-512
    VNNI only, as measured; the kernel's runs across images are path-independent code)."""
    monkeypatch.setattr(qconv_chunks, "BATCH_CHUNK_PATHS", {_int8_path()})


@pytest.mark.parametrize("conv", BATCHED, ids=lambda c: f"{c[0]}-{c[1]}")
@pytest.mark.parametrize("residual,z_dtype,out_precision", RESIDUALS)
def test_batch_chunks(conv, residual, z_dtype, out_precision, monkeypatch) -> None:
    """A batch's positions in chunks across its images (QConvChunks._batch_chunks: each
    chunk's parts of its images laid out side by side, one GEMM whose output runs end at the
    images' ends, conv_int8.c pimg; int8 outputs by tile_segs, the others finish_tile), on
    1 and 2 workers: the reference's bits, and chunks that do cross images."""
    batch_chunks_here(monkeypatch)
    calls = gemm_calls(monkeypatch)
    n, _, h, w = conv[0]
    for k, act in enumerate((ACTS[1], ACTS[3], ACTS[5])):
        spec, inputs = make_case(conv, act, residual, z_dtype, out_precision, np.int8, seed=k)
        want = qconv(*inputs, **spec.attrs())
        for workers in (1, 2):
            calls.clear()
            check(spec, run(QConvNative, spec, inputs, workers), want, f"{act} {workers}")
            assert calls and all(c["pimg"] == h * w for c in calls)
            spans = sorted((c["pfirst"], c["pfirst"] + c["g1"]) for c in calls)
            assert spans[0][0] == 0 and spans[-1][1] == n * h * w
            assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
            assert any(f0 // (h * w) != (f1 - 1) // (h * w) for f0, f1 in spans)


def test_batch_chunks_a_multiple_of_the_threads(monkeypatch) -> None:
    """A batch whose layouts fit 5 chunks (MobileNetV2 b8's 576 -> 96 layer at 14 x 14:
    1568 positions of 144 quads, CHUNK_LAYOUT_BYTES) takes 6 on 2 workers, equal ones."""
    batch_chunks_here(monkeypatch)
    calls = gemm_calls(monkeypatch)
    conv = ((8, 576, 14, 14), 16, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    spec, inputs = make_case(conv, ("relu", ()), "pre", np.int8, "int8", np.int8, seed=8)
    fit = qconv_chunks.CHUNK_LAYOUT_BYTES // (4 * 144) // qconv_chunks.STRIP * qconv_chunks.STRIP
    assert -(-1568 // fit) == 5
    check(spec, run(QConvNative, spec, inputs, 2), qconv(*inputs, **spec.attrs()), "6")
    sizes = [c["g1"] for c in calls]
    assert len(sizes) == 6 and max(sizes) - min(sizes) <= VECTOR_POSITIONS.get(_int8_path(), 64)


def test_batch_chunks_only_where_an_image_is_not_whole_vectors(monkeypatch) -> None:
    """Not for one image, not for a map of whole vectors (28 x 28: 784 = 49 x 16), not for
    a map past BATCH_CHUNK_MAX_POSITIONS, not on a path outside BATCH_CHUNK_PATHS (the
    images' own chunks there: pimg 0)."""
    batch_chunks_here(monkeypatch)
    calls = gemm_calls(monkeypatch)
    vector = VECTOR_POSITIONS.get(_int8_path(), qconv_chunks.STRIP)
    side = 28 if vector == 16 else 32  # whole vectors of this path
    cases = [
        ((1, 64, 7, 7), 40),
        ((2, 16, side, side), 24),
        ((2, 8, 33, 33), 8),  # 1089 positions
    ]
    for shape, cout in cases:
        conv = (shape, cout, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
        spec, inputs = make_case(conv, ("relu", ()), "pre", np.int8, "int8", np.int8, seed=2)
        calls.clear()
        check(spec, run(QConvNative, spec, inputs, 2), qconv(*inputs, **spec.attrs()), shape)
        assert calls and all(c["pimg"] == 0 for c in calls), shape
    monkeypatch.setattr(qconv_chunks, "BATCH_CHUNK_PATHS", set())
    spec, inputs = make_case(BATCHED[0], ("relu", ()), "none", None, "int8", np.int8, seed=1)
    calls.clear()
    check(spec, run(QConvNative, spec, inputs, 1), qconv(*inputs, **spec.attrs()), "off")
    assert calls and all(c["pimg"] == 0 for c in calls)
