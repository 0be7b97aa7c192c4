"""``pointwise_native`` (kernels/conv_pointwise.c): plain 1×1 convs against a float64
reference, on this host's vector path and on every other one the kernel compiles to — AVX-512
(8 × 24 tiles), AVX2 and plain x86-64 (4 × 24), forced tile shapes, and aarch64 NEON
(4 × 16) under qemu-user — from the same source and the same bound calls."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics.cpu_pointwise import PointwiseNative
from edge_infer.engine.tactics.base import ConvSpec
from tests.engine.backends.cpu import isa_builds
from tests.engine.backends.cpu.aarch64 import emulated, replay
from tests.engine.backends.cpu.tactics.test_cpu_conv import expected

#: the kernel sources the aarch64 replay driver links (the cases call nothing else)
ONLY = ("conv_pointwise.c",)

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler: no native path")

#: float32 sums of up to ~1100 products against float64, relative to the output's scale
RTOL, ATOL = 1e-4, 3e-5

# (batch, cin, h, w, cout): channels off the vector width and the 8-channel panels, pixels
# off the tile widths (strips across image boundaries), more than 512 input channels
# (channel blocks, partial sums through the output), a single pixel per image; planes of
# at least 8 strips and cout <= cin read in place (conv_rows): short strips at each
# image's end (3, 18 pixels), a plane in several pixel blocks (400 channels), rows off the
# panels
SHAPES = [
    (1, 17, 9, 13, 23),
    (2, 5, 3, 5, 9),
    (3, 32, 7, 7, 40),
    (2, 700, 5, 5, 13),
    (1, 1100, 3, 3, 20),
    (4, 8, 1, 1, 6),
    (1, 24, 56, 56, 16),
    (2, 29, 13, 15, 23),
    (1, 400, 10, 21, 12),
]
ACTS = [
    ("", ()),
    ("relu", ()),
    ("leaky_relu", (0.2,)),
    ("clip", (0.0, 6.0)),
    ("sigmoid", ()),
    ("silu", ()),
    ("hard_swish", ()),
    ("hard_sigmoid", (0.3, 0.4)),
    ("tanh", ()),
    ("mish", ()),  # not in the kernel: the shared epilogue after it
]
RESIDUALS = ("none", "pre", "post")


def _case(k: int, shape: tuple, act: tuple, residual: str, views: bool = False) -> dict:
    """Inputs, an output, the reference; with ``views`` the input, output and residual are
    channel slices of larger tensors (channel and image strides off the plane size)."""
    n, cin, h, w, cout = shape
    rng = np.random.default_rng(k)
    x = rng.standard_normal((n, cin + 3 * views, h, w)).astype(np.float32)[:, 2 * views :][:, :cin]
    wt = (rng.standard_normal((cout, cin, 1, 1)) / np.sqrt(cin)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    conv = np.einsum("ok,nkhw->nohw", wt[:, :, 0, 0].astype(np.float64), x.astype(np.float64)) + b[
        None, :, None, None
    ].astype(np.float64)
    zbig = rng.standard_normal((n, cout + 2 * views, h, w)).astype(np.float32)
    z = zbig[:, views : views + cout]
    obig = np.full((n, cout + 4 * views, h, w), np.nan, np.float32)
    out = obig[:, 3 * views : 3 * views + cout]
    spec = ConvSpec(x.shape, out.shape, wt, b, (1, 1), (0, 0, 0, 0), (1, 1), 1, *act, residual)
    ins = [x, wt, b] + ([z] if residual != "none" else [])
    want = expected(conv, z, act[0], act[1], residual)
    return dict(spec=spec, ins=ins, out=out, obig=obig, want=want, views=views)


def _check(got: np.ndarray, want: np.ndarray, what: str) -> None:
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL * scale, err_msg=what)


def _cases() -> list[dict]:
    """Every shape with every activation and residual mode spread over them (each shape,
    activation and residual mode several times; every fourth case on strided views)."""
    cases = []
    for k in range(3 * len(ACTS)):
        shape = SHAPES[k % len(SHAPES)]
        act, residual = ACTS[k % len(ACTS)], RESIDUALS[(k // len(ACTS)) % 3]
        cases.append(_case(k, shape, act, residual, views=k % 4 == 3))
    return cases


def _kernel_cases() -> list[dict]:
    """The cases whose epilogue is all in the kernel (not mish)."""
    return [c for c in _cases() if c["spec"].activation != "mish"]


@pytest.mark.parametrize("threads", [1, 2])
def test_matches_the_reference(threads: int) -> None:
    pool = WorkPool(threads) if threads > 1 else None
    try:
        for c in _cases():
            run = PointwiseNative(c["spec"]).bind(c["ins"], [c["out"]], ScratchPool(pool))
            run()
            what = f"{c['spec'].signature()} views={c['views']} threads={threads}"
            _check(c["out"], c["want"], what)
            if c["views"]:  # nothing written outside the output's channels
                rest = np.delete(c["obig"], range(3, 3 + c["out"].shape[1]), axis=1)
                assert np.isnan(rest).all(), what
    finally:
        if pool is not None:
            pool.close()


@pytest.mark.parametrize("shape", [(8, 64, 7, 7, 96), (1, 256, 7, 7, 96)])
def test_chunks_by_pixels_or_by_output_channels_give_one_chunks_output(shape) -> None:
    """Two threads, many chunks — pixel ranges (a batch of 7×7 planes: more pixels than
    output channels) or weight panels (one image: more output channels than pixels): the
    same output as one chunk."""
    c = _case(0, shape, ("clip", (0.0, 6.0)), "post")
    one = np.empty_like(c["out"])
    PointwiseNative(c["spec"]).bind(c["ins"], [one], ScratchPool())()
    pool = WorkPool(2)
    try:
        tactic = PointwiseNative(c["spec"])
        n, _, h, w, cout = shape
        assert len(tactic._ranges(ScratchPool(pool), n * h * w, -(-cout // 8))) > 1
        tactic.bind(c["ins"], [c["out"]], ScratchPool(pool))()
    finally:
        pool.close()
    np.testing.assert_array_equal(c["out"], one)
    _check(one, c["want"], str(shape))


def test_only_plain_float32_1x1_convs_apply() -> None:
    w = np.ones((4, 4, 1, 1), np.float32)
    plain = ConvSpec((1, 4, 5, 5), (1, 4, 5, 5), w, None, (1, 1), (0, 0, 0, 0), (1, 1), 1)
    assert PointwiseNative.applicable(plain)
    for spec in (
        ConvSpec((1, 4, 5, 5), (1, 4, 3, 3), w, None, (2, 2), (0, 0, 0, 0), (1, 1), 1),
        ConvSpec((1, 4, 5, 5), (1, 4, 7, 7), w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1),
        ConvSpec((1, 4, 5, 5), (1, 4, 5, 5), w[:, :2], None, (1, 1), (0, 0, 0, 0), (1, 1), 2),
        ConvSpec(
            (1, 4, 5, 5),
            (1, 4, 5, 5),
            w.astype(np.float16),
            None,
            (1, 1),
            (0, 0, 0, 0),
            (1, 1),
            1,
        ),
        ConvSpec(
            (1, 4, 5, 5),
            (1, 4, 3, 3),
            np.ones((4, 4, 3, 3), np.float32),
            None,
            (1, 1),
            (0, 0, 0, 0),
            (1, 1),
            1,
        ),
    ):
        assert not PointwiseNative.applicable(spec), spec.signature()


# -- every vector path, from the same source ---------------------------------------------------


#: build → (flags, the CPU features it needs on this host)
X86_BUILDS = {
    **isa_builds.X86_BUILDS,
    # a one-vector tile (the strips' widths, the tail tiles); 4 x 16 is aarch64's
    "avx2 tile 8x8": (["-march=haswell", "-DEI_PW_TR=8", "-DEI_PW_TV=1"], {"avx2", "fma"}),
}


def _recorded(c: dict, pool: WorkPool | None = None) -> replay.Recording:
    """The case bound and run on the host (its calls recorded), the output NaN again."""
    with replay.recording(c["spec"].signature(), c["ins"], c["out"]) as rec:
        PointwiseNative(c["spec"]).bind(c["ins"], [c["out"]], ScratchPool(pool))()
    _check(c["out"], c["want"], "host")
    c["out"].fill(np.nan)
    return rec


@pytest.mark.parametrize("build", list(X86_BUILDS))
def test_every_x86_vector_path_matches(build: str, tmp_path: Path) -> None:
    flags, needs = X86_BUILDS[build]
    isa_builds.need_features(needs)
    fn = isa_builds.build_kernels(
        tmp_path, ["conv_pointwise.c", "args.c"], flags
    ).conv_pointwise_f32
    fn.restype = None
    for c in _kernel_cases():
        rec = _recorded(c)
        assert {call.name for call in rec.calls} == {"conv_pointwise_f32"}
        for call in rec.calls:
            fn(ctypes.byref(call.args))
        _check(c["out"], c["want"], f"{build} {rec.name}")


def test_aarch64_neon_path_matches(tmp_path: Path) -> None:
    """Cross-compiled for the Jetson's cores and replayed under qemu-user (the replay
    machinery of tests/engine/backends/cpu/aarch64)."""
    exe = emulated.driver(tmp_path, ONLY)
    cases = _kernel_cases()
    recs = [_recorded(c) for c in cases]
    outs = emulated.replayed(exe, tmp_path, recs)
    for c, rec, got in zip(cases, recs, outs, strict=True):
        _check(got, c["want"], f"aarch64 {rec.name}")


def test_a_range_from_memory_gives_the_bits_of_one_image_at_a_time() -> None:
    """A range of more than 2 MB of input (conv_rows' prefetching blocks: PF_MIN_BYTES,
    smaller blocks, tails at each image's end) gives the bits of its images bound alone
    (each under 2 MB: the other blocking), and the reference."""
    c = _case(7, (3, 40, 67, 67, 12), ("clip", (0.0, 6.0)), "pre")
    x, wt, b, z = c["ins"]
    assert x.nbytes > 2 << 20 and x[:1].nbytes < 2 << 20
    PointwiseNative(c["spec"]).bind(c["ins"], [c["out"]], ScratchPool(None))()
    _check(c["out"], c["want"], "batch of 3")
    for i in range(3):
        one = np.empty_like(c["out"][i : i + 1])
        spec = ConvSpec(x[i : i + 1].shape, one.shape, wt, b, (1, 1), (0, 0, 0, 0), (1, 1), 1,
                        "clip", (0.0, 6.0), "pre")  # fmt: skip
        PointwiseNative(spec).bind([x[i : i + 1], wt, b, z[i : i + 1]], [one], ScratchPool(None))()
        assert np.array_equal(one, c["out"][i : i + 1]), f"image {i}"


def test_a_float16_range_from_memory_gives_the_bits_of_the_float32_route() -> None:
    """The same with float16 input and output (FP16 engines' half_io; 2 bytes an element):
    the bits of the float32 kernel's output narrowed, whole and one image at a time."""
    c = _case(8, (4, 48, 80, 80, 12), ("clip", (0.0, 6.0)), "none")
    x, wt, b = c["ins"]
    xh = x.astype(np.float16)
    assert xh.nbytes > 2 << 20 and xh[:1].nbytes < 2 << 20
    want = np.empty(c["out"].shape, np.float32)
    PointwiseNative(c["spec"]).bind([xh.astype(np.float32), wt, b], [want], ScratchPool(None))()
    got = np.empty(c["out"].shape, np.float16)
    PointwiseNative(c["spec"]).bind([xh, wt, b], [got], ScratchPool(None))()
    assert np.array_equal(got.view(np.uint16), want.astype(np.float16).view(np.uint16))
    for i in range(4):
        one = np.empty_like(got[i : i + 1])
        spec = ConvSpec(x[i : i + 1].shape, one.shape, wt, b, (1, 1), (0, 0, 0, 0), (1, 1), 1,
                        "clip", (0.0, 6.0))  # fmt: skip
        PointwiseNative(spec).bind([xh[i : i + 1], wt, b], [one], ScratchPool(None))()
        assert np.array_equal(one.view(np.uint16), got[i : i + 1].view(np.uint16)), f"image {i}"


def test_an_input_off_32_byte_alignment_gives_the_aligned_bits() -> None:
    """conv_rows on a float32 input 1 to 7 floats past a 32-byte boundary (each image's
    pixels up to the boundary a packed strip of their own) gives the bits of the same input
    32-byte aligned, and the reference; two images (a head strip at each), a residual."""
    c = _case(9, (2, 24, 16, 24, 12), ("clip", (0.0, 6.0)), "pre")
    x = c["ins"][0]
    buf = np.empty(x.size + 16, np.float32)
    base = (-buf.ctypes.data) % 32 // 4
    outs = []
    for off in range(8):
        xv = buf[base + off : base + off + x.size].reshape(x.shape)
        xv[...] = x
        assert xv.ctypes.data % 32 == 4 * off
        out = np.full_like(c["out"], np.nan)
        PointwiseNative(c["spec"]).bind([xv, *c["ins"][1:]], [out], ScratchPool(None))()
        _check(out, c["want"], f"{off} floats off")
        outs.append(out)
    for off in range(1, 8):
        assert np.array_equal(outs[off], outs[0]), f"{off} floats off"
