"""qwinograd_native (kernels/conv_int8_wino.c: INT8 Winograd F(2x2, 3x3)) against the
reference QConv, bit for bit: its accumulators are the direct sum's exactly (the output
transform's 4 acc, int32 sums wrapping), so every output is the reference's, and the same
bits as qconv_native's (one epilogue, conv_int8.c's) where an exp-based activation's
float32 differs from numpy's. Random layers of every geometry the tactic takes (odd sizes,
asymmetric and wide pads, tiles across tile rows, a batch, thread splits), every activation,
residual and output kind, the extremes (all -128 inputs against all -128 / +127 weights,
input channels at the limit), every x86 build and aarch64 under qemu."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS
from edge_infer.engine.backends.cpu.tactics.cpu_qconv import QConvNative
from edge_infer.engine.backends.cpu.tactics.cpu_qwinograd import (
    MAX_CIN,
    QWinogradNative,
    pack_weights,
    transform_weights,
)
from edge_infer.engine.ops.quantize import qconv
from edge_infer.engine.tactics.quantized import QConvSpec
from tests.engine.backends.cpu import isa_builds
from tests.engine.backends.cpu.tactics.test_qconv_native import EXP_ACTS, check, make_case

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

ACTS = [
    ("", ()),
    ("relu", ()),
    ("clip", (-1.0, 2.5)),
    ("leaky_relu", (0.1,)),
    ("silu", ()),
    ("sigmoid", ()),
    ("hard_swish", ()),
    ("hard_sigmoid", (0.2, 0.5)),
    ("tanh", ()),
]
# x shape, cout, pads (top, left, bottom, right): a block of tiles across several tile rows
# (odd sizes: the last output row and column of a tile dropped), unpadded, asymmetric and
# wider pads, a 1 x 1 output, a row of tiles longer than a vector of 16 (and its tail), odd
# input channels (the last pair's second zero), a batch, output channels off the 6-blocks
SHAPES = [
    ((1, 16, 9, 11), 8, (1, 1, 1, 1)),
    ((1, 7, 10, 12), 13, (0, 0, 0, 0)),
    ((2, 5, 7, 6), 7, (0, 1, 2, 0)),
    ((1, 9, 3, 3), 5, (0, 0, 0, 0)),
    ((1, 12, 5, 70), 6, (2, 2, 2, 2)),
    ((1, 33, 20, 20), 20, (1, 1, 1, 1)),
    ((3, 4, 4, 37), 11, (1, 0, 1, 2)),
]


def case(k: int, act: tuple, residual: str = "none", z_dtype=None, out="int8", seed=0):
    x_shape, cout, pads = SHAPES[k]
    conv = (x_shape, cout, (3, 3), (1, 1), pads, (1, 1), 1)
    return make_case(conv, act, residual, z_dtype, out, np.int8, seed=seed + k)


def run(spec: QConvSpec, inputs: list, tactic: type = QWinogradNative, workers: int = 1):
    dtype = {"fp32": np.float32, "fp16": np.float16, "int8": np.int8}[spec.out_precision]
    out = np.full(spec.out_shape, 77, dtype)  # an output never written shows
    pool = WorkPool(workers) if workers > 1 else None
    try:
        tactic(spec).bind(inputs, [out], ScratchPool(pool))()
    finally:
        if pool is not None:
            pool.close()
    return out


def exact(spec: QConvSpec, inputs: list, got: np.ndarray, what: str) -> None:
    """The reference's bits (an exp-based activation: within its float32 last bit, and
    qconv_native's bits exactly)."""
    want = qconv(*inputs, **spec.attrs())
    check(spec, got, want, what)
    if spec.activation in EXP_ACTS:
        np.testing.assert_array_equal(got, run(spec, inputs, QConvNative), err_msg=what)


def test_applicable_only_to_its_layers() -> None:
    spec, _ = case(0, ACTS[0])
    assert QWinogradNative.applicable(spec)
    assert QWinogradNative in CPU_TACTICS["qconv"]
    wide = QConvSpec(**{**spec.__dict__, "x_shape": (1, MAX_CIN + 1, 9, 11),
                        "weight": np.zeros((8, MAX_CIN + 1, 3, 3), np.int8)})  # fmt: skip
    assert not QWinogradNative.applicable(wide)
    heavy = QConvSpec(**{**spec.__dict__, "x_shape": (1, 256, 9, 11),
                         "weight": np.zeros((129, 256, 3, 3), np.int8)})  # fmt: skip
    assert not QWinogradNative.applicable(heavy)  # 32 cin cout past MAX_WEIGHT_BYTES
    light = QConvSpec(**{**heavy.__dict__, "weight": np.zeros((128, 256, 3, 3), np.int8)})
    assert QWinogradNative.applicable(light)
    for change in (
        {"strides": (2, 2)},
        {"dilations": (2, 2)},
        {"x_dtype": np.dtype(np.float32)},
        {"weight": np.zeros((8, 16, 1, 1), np.int8)},
        {"weight": np.zeros((8, 16, 5, 5), np.int8)},
        {"group": 2, "weight": np.zeros((8, 8, 3, 3), np.int8)},
    ):
        assert not QWinogradNative.applicable(QConvSpec(**{**spec.__dict__, **change})), change


def test_weight_transform() -> None:
    """U = G' g G'^T (G' = 2 G) in integers; packed [ob][e][pair][6], channel 2k low."""
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (13, 7, 3, 3)).astype(np.int8)
    g = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    u = transform_weights(w)
    np.testing.assert_array_equal(u, np.einsum("ai,ocij,bj->ocab", g, w.astype(float), g) * 4)
    assert np.abs(transform_weights(np.full((1, 1, 3, 3), -128, np.int8))).max() == 1152
    p = pack_weights(w).view(np.int16).reshape(3, 16, 4, 6, 2)
    oc, c, e = 8, 5, 9  # block 1, row 2; pair 2, high half
    assert p[1, e, 2, 2, 1] == u[oc, c].reshape(16)[e]
    assert (p[2, :, :, 1:] == 0).all() and (p[:, :, 3, :, 1] == 0).all()  # past 13, past 7


@pytest.mark.parametrize("act", ACTS, ids=lambda a: a[0] or "none")
def test_every_geometry_int8_out(act) -> None:
    for k in range(len(SHAPES)):
        spec, inputs = case(k, act)
        exact(spec, inputs, run(spec, inputs, workers=1 + k % 2), f"{SHAPES[k]} {act}")


@pytest.mark.parametrize(
    "residual,z_dtype,out",
    [
        ("none", None, "fp32"),
        ("none", None, "fp16"),
        ("pre", np.int8, "int8"),
        ("post", np.int8, "int8"),
        ("pre", np.float32, "fp32"),
        ("post", np.float32, "int8"),
    ],
)
def test_epilogue_and_storage(residual, z_dtype, out) -> None:
    for k in range(len(SHAPES)):
        act = ACTS[k % len(ACTS)]
        spec, inputs = case(k, act, residual, z_dtype, out)
        exact(spec, inputs, run(spec, inputs, workers=1 + k % 2), f"{SHAPES[k]} {act}")


def test_thread_splits() -> None:
    """Tile ranges of whole blocks and blocks of 6 output channels on 2 threads (a map of
    many tiles; few tiles and many channels)."""
    for conv in (((2, 8, 30, 34), 10), ((1, 24, 6, 6), 40)):
        x_shape, cout = conv
        spec, inputs = make_case((x_shape, cout, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
                                 ACTS[2], "pre", np.int8, "int8", np.int8, seed=3)  # fmt: skip
        for workers in (2, 3):
            exact(spec, inputs, run(spec, inputs, workers=workers), f"{conv} {workers}")


def test_a_small_map_splits_its_tiles_evenly_without_channel_blocks() -> None:
    """2 threads, a 20 x 20 map of 64 channels (100 tiles): TASKS_PER_WORKER tasks a thread,
    tile ranges at multiples of the register tile's 16 (16, 32, 32, 20), every one over all
    output channels (a channel split lays the same tiles' input out again); exact."""
    from edge_infer.engine.backends.cpu.tactics import cpu_qwinograd, qconv_chunks

    assert (qconv_chunks.TASKS_PER_WORKER, cpu_qwinograd.SPLIT_TILES) == (2, 16)
    conv = ((1, 64, 20, 20), 64, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1)
    spec, inputs = make_case(conv, ACTS[2], "none", None, "int8", np.int8, seed=5)
    out = np.full(spec.out_shape, 77, np.int8)
    pool = WorkPool(2)
    try:
        run = QWinogradNative(spec).bind(inputs, [out], ScratchPool(pool))
        (chunks,) = [r.keep[1] for r in getattr(run, "parts", [run]) if hasattr(r, "keep")]
        ranges = [(c.args.t0, c.args.t1, c.args.cout) for c in chunks]
        assert ranges == [(0, 16, 64), (16, 48, 64), (48, 80, 64), (80, 100, 64)]
        run()
    finally:
        pool.close()
    exact(spec, inputs, out, "20 x 20, 2 threads")


def extreme_case(cin: int, x_value: int, w_value: int, hw=(5, 6), pads=(1, 1, 1, 1)):
    """Every input x_value, every weight w_value, float32 outputs of the accumulators
    themselves (x_scale w_scale = 1) plus a bias per channel that takes the interior's,
    an edge's and a corner's (9, 6, 4 taps) to exactly 0 in channels 0, 1, 2: an
    accumulator off by one there is not 0."""
    x_shape = (1, cin, *hw)
    spec, inputs = make_case((x_shape, 3, (3, 3), (1, 1), pads, (1, 1), 1), ("", ()),
                             "none", None, "fp32", np.int8, seed=0)  # fmt: skip
    inputs[0] = np.full(x_shape, x_value, np.int8)
    inputs[1] = np.full((3, cin, 3, 3), w_value, np.int8)
    inputs[2] = np.ones(3, np.float32)
    inputs[3] = -np.array([9, 6, 4], np.int32) * cin * x_value * w_value
    fields = {"weight": inputs[1], "w_scale": inputs[2], "bias": inputs[3], "x_scale": 1.0}
    return QConvSpec(**{**spec.__dict__, **fields}), inputs


@pytest.mark.parametrize("w_value", [-128, 127])
@pytest.mark.parametrize("cin", [1, 2, 3, 255, MAX_CIN])
def test_extremes(cin, w_value) -> None:
    spec, inputs = extreme_case(cin, -128, w_value)
    got = run(spec, inputs)
    np.testing.assert_array_equal(got, qconv(*inputs, **spec.attrs()))
    assert (got[0, 0, 1:-1, 1:-1] == 0).all() and (got[0, 2, [0, -1]][:, [0, -1]] == 0).all()
    assert (got[0, 1, 0, 1:-1] == 0).all() and (got[0, 1, 1:-1, 0] == 0).all()


def test_many_channels_random_extremes() -> None:
    """Input channels at the limit, every input and weight -128 or 127 (sums of M and of the
    output transform far past int32 before the last), accumulators small enough for float32
    to hold them exactly (so any error shows)."""
    rng = np.random.default_rng(5)
    cin = MAX_CIN
    spec, inputs = extreme_case(cin, -128, 127, hw=(6, 7), pads=(1, 0, 2, 1))
    inputs[0] = rng.choice(np.array([-128, 127], np.int8), spec.x_shape)
    inputs[1] = rng.choice(np.array([-128, 127], np.int8), (3, cin, 3, 3))
    inputs[3] = np.zeros(3, np.int32)
    spec = QConvSpec(**{**spec.__dict__, "weight": inputs[1], "bias": inputs[3]})
    want = qconv(*inputs, **spec.attrs())
    assert np.abs(want).max() < 2**24 and np.abs(want).max() > 2**20
    np.testing.assert_array_equal(run(spec, inputs), want)


def side_library(flags: list[str]) -> ctypes.CDLL:
    lib = isa_builds.build_kernels(None, ["conv_int8_wino.c", "conv_int8.c", "args.c"], flags)
    lib.qwino_int8_f32.restype = None
    lib.qwino_int8_f32.argtypes = [ctypes.POINTER(native.ARGS["qwino_int8_f32"])]
    return lib


@pytest.mark.parametrize("build", sorted(isa_builds.X86_BUILDS))
def test_every_x86_build(build, monkeypatch) -> None:
    """The AVX2 code on the AVX-512 and AVX2 builds, the plain C on x86-64: the same bits."""
    flags, needs = isa_builds.X86_BUILDS[build]
    isa_builds.need_features(needs)
    lib = side_library(flags)
    monkeypatch.setattr(native, "library", lambda: lib)
    for k in range(len(SHAPES)):
        act, residual = ACTS[k % 3], ("none", "pre")[k % 2]
        spec, inputs = case(k, act, residual, np.int8 if residual == "pre" else None)
        exact(spec, inputs, run(spec, inputs), f"{build} {SHAPES[k]}")
    spec, inputs = case(5, ACTS[4], out="fp32")
    want = qconv(*inputs, **spec.attrs())
    check(spec, run(spec, inputs), want, build)
    spec, inputs = extreme_case(MAX_CIN, -128, -128)
    np.testing.assert_array_equal(run(spec, inputs), qconv(*inputs, **spec.attrs()))


def test_aarch64_replay(tmp_path) -> None:
    """The calls recorded here replayed under qemu on the Jetson's cores (Cortex-A78AE: the
    plain C path)."""
    from tests.engine.backends.cpu.aarch64 import replay
    from tests.engine.backends.cpu.aarch64.test_aarch64_kernels import compile_driver, emulate

    exe = compile_driver(tmp_path, "cortex-a78ae", only=("conv_int8_wino.c", "conv_int8.c"))
    cases = []
    for k in range(len(SHAPES)):
        act, residual = ACTS[(k + 1) % 4], ("none", "pre")[(k + 1) % 2]
        spec, inputs = case(k, act, residual, np.int8 if residual == "pre" else None)
        want = qconv(*inputs, **spec.attrs())
        out = np.full(spec.out_shape, 0x55, np.int8)  # unwritten outputs show
        arrays = [a for a in inputs if isinstance(a, np.ndarray)]
        with replay.recording(f"qwino {SHAPES[k]} {act[0]} {residual}", arrays, out) as rec:
            QWinogradNative(spec).bind(inputs, [out], ScratchPool())()
        np.testing.assert_array_equal(out, want)
        cases.append((rec, want))
    replay.write(tmp_path / "calls.bin", [rec for rec, _ in cases])
    emulate(exe, "replay", str(tmp_path / "calls.bin"), str(tmp_path / "out.bin"))
    regions = replay.read(tmp_path / "out.bin")
    first = 0
    for rec, want in cases:
        got = rec.output(regions[first : first + len(rec.regions)])
        first += len(rec.regions)
        np.testing.assert_array_equal(got, want, err_msg=rec.name)
