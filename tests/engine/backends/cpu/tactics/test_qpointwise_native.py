"""qpointwise_native (kernels/conv_int8_pw.c) against the reference QConv, bit for bit: the
AVX-512 VNNI path of this host (its fast epilogue, the exact lanes near halves, the register
tiles of 1 to 4 position vectors, tasks of position ranges), the plain C path of the other x86
builds, and aarch64 under qemu (calls recorded here, replayed there)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics.cpu_qpointwise import (
    AVX2,
    MIN_CIN,
    QPointwiseNative,
    pack_quads,
)
from edge_infer.engine.ops.quantize import qconv
from edge_infer.engine.tactics.quantized import QConvSpec
from tests.engine.backends.cpu import isa_builds
from tests.engine.backends.cpu.tactics.test_qconv_native import make_case

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

ACTS = [("", ()), ("relu", ()), ("clip", (0.0, 6.0))]
# x shape, Cout: 49 positions (3 vectors and a tail of one by output-channel vectors; 2 tasks:
# 2 vectors, a vector and the tail), a batch (a last vector of 13), 3 vectors, 13 vectors and a
# tail of 2 (Cin not a multiple of 4), many input channels (a last vector of 9), a tail of 2 x
# 70 output channels
SHAPES = [
    ((1, 24, 7, 7), 20),
    ((2, 13, 5, 9), 7),
    ((1, 40, 6, 8), 33),
    ((1, 9, 3, 70), 17),
    ((1, 100, 5, 5), 12),
    ((1, 20, 3, 6), 70),
]


def _case(k: int, act: tuple, residual: str) -> tuple[QConvSpec, list]:
    x_shape, cout = SHAPES[k]
    conv = (x_shape, cout, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    z_dtype = np.int8 if residual == "pre" else None
    return make_case(conv, act, residual, z_dtype, "int8", np.int8, seed=k)


def run(spec: QConvSpec, inputs: list, workers: int = 1) -> np.ndarray:
    out = np.zeros(spec.out_shape, np.int8 if spec.out_precision == "int8" else np.float32)
    pool = WorkPool(workers) if workers > 1 else None
    try:
        QPointwiseNative(spec).bind(inputs, [out], ScratchPool(pool))()
    finally:
        if pool is not None:
            pool.close()
    return out


def test_applicable_only_to_its_layers() -> None:
    conv = ((1, MIN_CIN, 4, 4), 8, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    spec, _ = make_case(conv, ACTS[0], "none", None, "int8", np.int8, seed=0)
    assert QPointwiseNative.applicable(spec)
    # few input channels, many positions: only the AVX2 path takes them
    avx2 = native.library().qpw_int8_path() == AVX2
    assert QPointwiseNative.applicable(_case(0, ACTS[0], "none")[0]) == avx2
    conv = ((1, MIN_CIN, 10, 11), 8, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    spec_big = make_case(conv, ACTS[0], "none", None, "int8", np.int8, 0)[0]
    assert QPointwiseNative.applicable(spec_big) == avx2
    for change in (
        {"kernel_shape_3x3": None},
        {"out_precision": "fp16"},
        {"out_precision": "fp32", "residual": "pre", "z_dtype": np.dtype(np.int8)},
        {"activation": "sigmoid"},
        {"x_dtype": np.dtype(np.float32)},
        {"strides": (2, 2)},
        {"residual": "post", "z_dtype": np.dtype(np.int8)},
    ):
        fields = {**spec.__dict__, **change}
        if "kernel_shape_3x3" in change:
            del fields["kernel_shape_3x3"]
            fields["weight"] = np.zeros((spec.cout, spec.cin, 3, 3), np.int8)
        assert not QPointwiseNative.applicable(QConvSpec(**fields)), change


def test_weight_quads_layouts() -> None:
    """Channel oc's quad t (its input channels 4t .. 4t + 3 as one little-endian int32):
    rows [quad][coutp] at t * coutp + oc, panels at oc // P * cq * P + t * P + oc % P; the
    AVX2 and plain C builds read panels of 16, the VNNI one rows."""
    coutp, cq = 48, 3
    w = np.random.default_rng(0).integers(-128, 128, (coutp, 4 * cq)).astype(np.int8)
    oc, t = np.meshgrid(np.arange(coutp), np.arange(cq), indexing="ij")
    u = w.astype(np.int64) & 0xFF
    want = u[oc, 4 * t] | u[oc, 4 * t + 1] << 8 | u[oc, 4 * t + 2] << 16 | u[oc, 4 * t + 3] << 24
    want = want.astype(np.uint32).view(np.int32)
    np.testing.assert_array_equal(pack_quads(w, 0)[t * coutp + oc], want)
    np.testing.assert_array_equal(pack_quads(w, 16)[oc // 16 * cq * 16 + t * 16 + oc % 16], want)
    lib = native.library()
    assert lib.qpw_int8_panel() == (0 if lib.qpw_int8_path() == 1 else 16)


@pytest.mark.parametrize("residual", ["none", "pre"])
@pytest.mark.parametrize("act", ACTS, ids=lambda a: a[0] or "none")
def test_bit_exact_with_the_reference(act, residual) -> None:
    for k in range(len(SHAPES)):
        spec, inputs = _case(k, act, residual)
        want = qconv(*inputs, **spec.attrs())
        for workers in (1, 2):
            got = run(spec, inputs, workers)
            np.testing.assert_array_equal(got, want, err_msg=f"{SHAPES[k]} {workers}")


def test_layers_share_their_layout_buffers() -> None:
    """Layers bound in one context lay their tasks out in the same shared buffers (one per
    task index), and each stays bit-exact when the others ran in between (a layout left by a
    larger layer with other channels in the buffer)."""
    pool = WorkPool(2)
    try:
        scratch = ScratchPool(pool)
        layers = []
        for k in (4, 0, 2):  # 100, 24, 40 input channels
            spec, inputs = _case(k, ACTS[2], "none")
            out = np.zeros(spec.out_shape, np.int8)
            run = QPointwiseNative(spec).bind(inputs, [out], scratch)
            layers.append((run, out, qconv(*inputs, **spec.attrs())))
        roles = {key[0] for key in scratch._shared}
        assert {"qpw_layout0", "qpw_layout1"} <= roles
        for _ in range(2):
            for run, out, want in layers:
                out[...] = 0
                run()
                np.testing.assert_array_equal(out, want)
    finally:
        pool.close()


def sign_cases() -> list[tuple[str, QConvSpec, list]]:
    """The AVX2 path's three dot products: activations all non-negative (x read as u8), some
    negative with no weight -128 (|x| . (w * sign(x))), and with one (int16 products); each
    with the extreme products (x -128 or 127, w -127, -128 or 127) in one vector; u8 and
    int16 on maps with a last position or two (the output-channel tail)."""
    out = []
    for k, (name, x_lo, w_min, shape) in enumerate(
        [("u8", 0, -128, 0), ("sign", -128, -127, 2), ("wide", -128, -128, 3)]
    ):
        spec, inputs = _case(shape, ACTS[k % 3], "none")
        rng = np.random.default_rng(11 + k)
        x = rng.integers(x_lo, 128, spec.x_shape).astype(np.int8)
        x.flat[:4] = (x_lo, 127, x_lo, 127)
        w = rng.integers(w_min, 128, spec.weight.shape).astype(np.int8)
        w[0, :, 0, 0] = w_min
        w[1, :, 0, 0] = 127
        fields = dict(weight=w)
        out.append((name, QConvSpec(**{**spec.__dict__, **fields}), [x, w, *inputs[2:]]))
    return out


@pytest.mark.parametrize("k", range(3), ids=["u8", "sign", "wide"])
def test_dot_products(k) -> None:
    name, spec, inputs = sign_cases()[k]
    assert ((inputs[0] < 0).any(), (inputs[1] == -128).any()) == (
        name != "u8",
        name != "sign",
    )
    np.testing.assert_array_equal(run(spec, inputs), qconv(*inputs, **spec.attrs()))


def f32_case(k: int, act: tuple) -> tuple[QConvSpec, list]:
    """SHAPES[k] with a float32 output (no residual)."""
    x_shape, cout = SHAPES[k]
    conv = (x_shape, cout, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    return make_case(conv, act, "none", None, "fp32", np.int8, seed=k)


@pytest.mark.parametrize("act", ACTS, ids=lambda a: a[0] or "none")
def test_float32_output(act) -> None:
    """The AVX2 path's float32 epilogue (float32(double(acc) * mult), the activation), the
    tiles and the output-channel tail; elsewhere not applicable."""
    spec, inputs = f32_case(0, act)
    avx2 = native.library().qpw_int8_path() == AVX2
    assert QPointwiseNative.applicable(spec) == avx2
    if not avx2:
        pytest.skip("a float32 output only on the AVX2 path")
    for k in (0, 1, 3, 5):
        spec, inputs = f32_case(k, act)
        want = qconv(*inputs, **spec.attrs())
        assert want.dtype == np.float32 and (want == 0).mean() < 0.9
        for workers in (1, 2):
            got = run(spec, inputs, workers)
            np.testing.assert_array_equal(got, want, err_msg=f"{SHAPES[k]} {workers}")


def tie_case() -> tuple[QConvSpec, list]:
    """Small accumulators requantized to acc / 2 (x_scale 0.125, w_scale 0.5, out_scale
    0.03125): every odd one lands on a half, which the fast epilogue redoes exactly, half to
    even."""
    spec, _ = _case(0, ACTS[0], "none")
    rng = np.random.default_rng(7)
    x = rng.integers(-3, 4, spec.x_shape).astype(np.int8)
    w = rng.integers(-2, 3, spec.weight.shape).astype(np.int8)
    ws = np.full(spec.cout, 0.5, np.float32)
    bias = rng.integers(-20, 21, spec.cout).astype(np.int32)
    fields = dict(weight=w, w_scale=ws, bias=bias, x_scale=0.125, out_scale=0.03125)
    return QConvSpec(**{**spec.__dict__, **fields}), [x, w, ws, bias, None]


#: the AVX2 path's layouts: blocks of 16 positions from 64 input channels (groups of 4 blocks a
#: channel tile; 260 channels: 2), else rows (8 channels); Cout 20, 23, 9, 11: a last tile of
#: 4, 3, 1, 3 channels; positions: 49 (3 blocks and a tail of 1), 81 (a group of 4 blocks,
#: one of 1 and a tail of 1), 35 (a last block of 3), 24 (a last vector of 8)
LAYOUT_SHAPES = [((1, 64, 7, 7), 20), ((1, 72, 9, 9), 23), ((1, 260, 5, 7), 9), ((1, 8, 3, 8), 11)]


@pytest.mark.parametrize("x_lo", [0, -128], ids=["u8", "signed"])
@pytest.mark.parametrize("residual", ["none", "pre"])
def test_layouts(residual, x_lo) -> None:
    """Activations all non-negative (the u8 tiles; with a residual their branch-free
    epilogue) or signed."""
    for k, (x_shape, cout) in enumerate(LAYOUT_SHAPES):
        conv = (x_shape, cout, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
        z_dtype = np.int8 if residual == "pre" else None
        spec, inputs = make_case(conv, ACTS[1], residual, z_dtype, "int8", np.int8, seed=20 + k)
        x = np.random.default_rng(k).integers(x_lo, 128, x_shape).astype(np.int8)
        inputs = [x, *inputs[1:]]
        for workers in (1, 2):
            got = run(spec, inputs, workers)
            np.testing.assert_array_equal(got, qconv(*inputs, **spec.attrs()), err_msg=str(k))


def test_residual_ties_round_half_to_even() -> None:
    """tie_case's layer with u8 activations and an int8 residual of half an output step per
    unit (z_scale = out_scale / 2): every odd residual puts a result on a half (the AVX2
    path's branch-free residual epilogue then redoes the tile's rows lane by lane)."""
    spec, inputs = tie_case()
    rng = np.random.default_rng(8)
    x = rng.integers(0, 4, spec.x_shape).astype(np.int8)
    z = rng.integers(-9, 10, spec.out_shape).astype(np.int8)
    fields = dict(residual="pre", z_dtype=np.dtype(np.int8), z_scale=spec.out_scale / 2)
    spec = QConvSpec(**{**spec.__dict__, **fields})
    inputs = [x, *inputs[1:4], z]
    want = qconv(*inputs, **spec.attrs())
    assert (z % 2 != 0).mean() > 0.3 and (np.abs(want) < 127).mean() > 0.1
    np.testing.assert_array_equal(run(spec, inputs), want)


def test_ties_round_half_to_even() -> None:
    spec, inputs = tie_case()
    want = qconv(*inputs, **spec.attrs())
    acc = np.einsum("oc,nchw->nohw", inputs[1][:, :, 0, 0].astype(np.int64), inputs[0])
    acc = acc + inputs[3][None, :, None, None]
    assert (acc % 2 != 0).mean() > 0.3 and (np.abs(want) < 127).mean() > 0.1
    np.testing.assert_array_equal(run(spec, inputs), want)


@pytest.mark.parametrize("residual", ["none", "pre"])
def test_float32_quotient_off_by_a_half(residual) -> None:
    """Accumulators whose float32 fast quotient lands exactly on a half where the reference's
    (float32(double(acc) * mult) / out_scale) is just above it: x_scale 0.5 + 2.5e-8 (float32
    m / s: 0.5), out_scale 1, acc 201 -> fast 100.5 (rounds to 100), reference 100.500008
    (101). The fast epilogues must redo those lanes exactly: two whole blocks of 16 positions
    of 4 output channels on 4 input channels (the AVX2 path's strips), with a residual of 0."""
    conv = ((1, 4, 4, 8), 4, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    z_dtype = np.int8 if residual == "pre" else None
    spec, inputs = make_case(conv, ("", ()), residual, z_dtype, "int8", np.int8, seed=5)
    x = np.zeros(spec.x_shape, np.int8)
    bias = np.array([201, -201, 203, 605], np.int32)
    ws = np.ones(spec.cout, np.float32)
    fields = dict(bias=bias, w_scale=ws, x_scale=0.5 + 2.5e-8, out_scale=1.0)
    spec = QConvSpec(**{**spec.__dict__, **fields})
    z = None if residual == "none" else np.zeros(spec.out_shape, np.int8)
    inputs = [x, spec.weight, ws, bias, z]
    want = qconv(*inputs, **spec.attrs())
    assert (want[0, :, 0, 0] == (101, -101, 102, 127)).all()
    np.testing.assert_array_equal(run(spec, inputs), want)


@pytest.mark.parametrize("build", sorted(isa_builds.X86_BUILDS))
def test_every_x86_build(build, tmp_path, monkeypatch) -> None:
    flags, needs = isa_builds.X86_BUILDS[build]
    isa_builds.need_features(needs)
    lib = isa_builds.build_kernels(tmp_path, ["conv_int8_pw.c", "args.c"], flags)
    lib.qpw_int8_f32.restype = None
    lib.qpw_int8_f32.argtypes = [ctypes.POINTER(native.ARGS["qpw_int8_f32"])]
    monkeypatch.setattr(native, "library", lambda: lib)
    for k in range(len(SHAPES)):
        act, residual = ACTS[k % 3], ("none", "pre")[k % 2]
        spec, inputs = _case(k, act, residual)
        np.testing.assert_array_equal(run(spec, inputs), qconv(*inputs, **spec.attrs()))
    spec, inputs = tie_case()
    np.testing.assert_array_equal(run(spec, inputs), qconv(*inputs, **spec.attrs()))
    for name, spec, inputs in sign_cases():
        np.testing.assert_array_equal(run(spec, inputs), qconv(*inputs, **spec.attrs()), name)
    for k, act in ((0, ACTS[1]), (3, ACTS[2])):  # float32 outputs (plain C off AVX2)
        spec, inputs = f32_case(k, act)
        np.testing.assert_array_equal(run(spec, inputs), qconv(*inputs, **spec.attrs()))


def test_aarch64_replay(tmp_path) -> None:
    """The calls recorded here replayed under qemu on the Jetson's cores (Cortex-A78AE)."""
    if native.library().qpw_int8_panel() != 16:
        # the weights are packed for the host's kernel: rows on AVX-512 VNNI, the 16-channel
        # panels aarch64 reads elsewhere (conv_int8_pw.c QPW_PANEL)
        pytest.skip("calls recorded with the AVX-512 VNNI weight layout do not replay there")
    from tests.engine.backends.cpu.aarch64 import replay
    from tests.engine.backends.cpu.aarch64.test_aarch64_kernels import compile_driver, emulate

    exe = compile_driver(tmp_path, "cortex-a78ae", only=("conv_int8_pw.c",))
    cases = []
    for k in range(len(SHAPES)):
        act, residual = ACTS[(k + 1) % 3], ("none", "pre")[(k + 1) % 2]
        spec, inputs = _case(k, act, residual)
        want = qconv(*inputs, **spec.attrs())
        out = np.empty(spec.out_shape, np.int8)
        out.fill(0x55)  # unwritten outputs show
        arrays = [a for a in inputs if isinstance(a, np.ndarray)]
        with replay.recording(f"qpw {SHAPES[k]} {act[0]} {residual}", arrays, out) as rec:
            QPointwiseNative(spec).bind(inputs, [out], ScratchPool())()
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
