"""``stem_native`` (kernels/conv_stem.c): few-channel full convs against a float64 reference,
on this host's vector path and on every other one the kernel compiles to — AVX-512 (16-float
vectors, 8 × 3 tiles), AVX-512 with 8-float vectors, AVX2 and plain x86-64 (4 × 3), a forced
one-vector tile, and aarch64 NEON under qemu-user — from the same source and the same bound
calls."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS, cpu_stem
from edge_infer.engine.backends.cpu.tactics.cpu_stem import StemNative
from edge_infer.engine.tactics.base import ConvSpec
from tests.engine.backends.cpu import isa_builds
from tests.engine.backends.cpu.aarch64 import emulated, replay
from tests.engine.backends.cpu.tactics.test_cpu_conv import expected
from tests.engine.backends.cpu.tactics.test_native import CONV

#: the kernel sources the aarch64 replay driver links (the cases call nothing else)
ONLY = ("conv_stem.c",)

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler: no native path")

RTOL, ATOL = 1e-4, 3e-5

# x shape, Cout, kernel, strides, pads (t, l, b, r): Cin 1..4, kernels 3/5/7, strides 1 and
# 2 (and 3, and different per axis), asymmetric pads, odd sizes; Cout off the 8-channel
# panels and the 4-row tiles; rows narrower than a vector, rows not a multiple of 8 or 16
# (masked last vectors), rows wide enough for the vectorized stride-2 layout; batches (split
# by rows, or by images)
SHAPES = [
    ((1, 3, 19, 23), 16, (3, 3), (2, 2), (1, 1, 1, 1)),
    ((2, 1, 13, 11), 7, (5, 5), (1, 1), (2, 2, 2, 2)),
    ((1, 4, 37, 41), 33, (7, 7), (2, 2), (3, 3, 3, 3)),
    ((3, 2, 20, 17), 9, (3, 3), (1, 2), (0, 1, 1, 0)),
    ((1, 3, 45, 77), 32, (3, 3), (2, 2), (1, 1, 1, 1)),
    ((2, 3, 30, 70), 13, (7, 7), (2, 2), (3, 2, 3, 4)),
    ((1, 4, 9, 9), 5, (5, 5), (3, 3), (2, 2, 1, 1)),
    ((1, 3, 8, 130), 24, (3, 3), (1, 1), (1, 1, 1, 1)),
    ((2, 2, 16, 12), 17, (3, 5), (2, 1), (1, 2, 1, 2)),
    ((4, 3, 10, 21), 8, (3, 3), (2, 2), (1, 1, 1, 1)),  # two threads: a chunk per image
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
    channel slices of larger tensors."""
    xs, cout, kernel, strides, pads = shape
    n, cin, h, w = xs
    rng = np.random.default_rng(k)
    xbig = rng.standard_normal((n, cin + 3 * views, h, w)).astype(np.float32)
    x = xbig[:, 2 * views : 2 * views + cin]
    wt = (rng.standard_normal((cout, cin, *kernel)) / np.sqrt(cin * kernel[0] * kernel[1])).astype(
        np.float32
    )
    b = rng.standard_normal(cout).astype(np.float32)
    conv = CONV(x, wt, b, strides=list(strides), pads=list(pads), dilations=[1, 1], group=1)
    _, _, ho, wo = conv.shape
    zbig = rng.standard_normal((n, cout + 2 * views, ho, wo)).astype(np.float32)
    z = zbig[:, views : views + cout]
    obig = np.full((n, cout + 4 * views, ho, wo), np.nan, np.float32)
    out = obig[:, 3 * views : 3 * views + cout]
    spec = ConvSpec(xs, conv.shape, wt, b, strides, pads, (1, 1), 1, *act, residual)
    ins = [x, wt, b] + ([z] if residual != "none" else [])
    want = expected(conv, z, act[0], act[1], residual)
    return dict(spec=spec, ins=ins, out=out, obig=obig, want=want, views=views)


def _check(got: np.ndarray, want: np.ndarray, what: str) -> None:
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL * scale, err_msg=what)


def _cases() -> list[dict]:
    """Every shape with every activation and residual mode spread over them (every shape
    three times or more, every activation with each residual mode; every fourth case on
    channel slices)."""
    return [
        _case(
            k,
            SHAPES[k % len(SHAPES)],
            ACTS[k % len(ACTS)],
            RESIDUALS[(k // len(ACTS)) % 3],
            views=k % 4 == 3,
        )
        for k in range(3 * len(ACTS))
    ]


def _kernel_cases() -> list[dict]:
    """The cases whose epilogue is all in the kernel (not mish)."""
    return [c for c in _cases() if c["spec"].activation != "mish"]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("band_bytes", [cpu_stem.BAND_BYTES, 1])
def test_matches_the_reference(threads: int, band_bytes: int, monkeypatch) -> None:
    """One thread and two (chunks of output rows), whole-band layouts and one output row
    per band (band_bytes 1: the layout redone for every row, partial last bands)."""
    monkeypatch.setattr(cpu_stem, "BAND_BYTES", band_bytes)
    pool = WorkPool(threads) if threads > 1 else None
    try:
        for c in _cases():
            c["out"].fill(np.nan)
            run = StemNative(c["spec"]).bind(c["ins"], [c["out"]], ScratchPool(pool))
            run()
            what = f"{c['spec'].signature()} views={c['views']} threads={threads}"
            _check(c["out"], c["want"], what)
            if c["views"]:  # nothing written outside the output's channels
                rest = np.delete(c["obig"], range(3, 3 + c["out"].shape[1]), axis=1)
                assert np.isnan(rest).all(), what
    finally:
        if pool is not None:
            pool.close()


def test_a_band_lays_out_about_band_bytes() -> None:
    """ResNet-50's stem: a band's rows take at most BAND_BYTES (or the band is one row), and
    the laid-out rows hold every input column and the widest vector reads."""
    c = _case(0, ((1, 3, 224, 224), 64, (7, 7), (2, 2), (3, 3, 3, 3)), ("relu", ()), "none")
    wq = cpu_stem._layout_width(c["spec"])
    band = StemNative(c["spec"])._band(wq)
    assert 1 < band <= 112
    assert 3 * ((band - 1) * 2 + 7) * 2 * wq * 4 <= cpu_stem.BAND_BYTES
    assert wq >= 112 + 3 and 2 * wq >= 224 + 3


def test_only_few_channel_float32_dense_convs_apply() -> None:
    def spec(cin: int = 3, group: int = 1, dil: tuple = (1, 1), dtype: type = np.float32):
        w = np.ones((8, cin // group, 3, 3), dtype)
        return ConvSpec((1, cin, 9, 9), (1, 8, 5, 5), w, None, (2, 2), (1,) * 4, dil, group)

    assert StemNative.applicable(spec())
    assert StemNative.applicable(spec(cin=1)) and StemNative.applicable(spec(cin=4))
    for bad in (spec(cin=5), spec(cin=4, group=2), spec(dil=(2, 2)), spec(dtype=np.float16)):
        assert not StemNative.applicable(bad)
    assert StemNative in CPU_TACTICS["conv"]


# -- every vector path, from the same source ---------------------------------------------------

#: build → (flags, the CPU features it needs on this host)
X86_BUILDS = {
    **isa_builds.X86_BUILDS,
    "avx512 8-float vectors": (
        ["-march=skylake-avx512", "-DEI_STEM_V8"],
        {"avx512f", "avx512vl"},
    ),
    # one vector per tile and 2 channels (the tiles' tails); 5 vectors (tails of 1 to 4)
    "avx2 tile 2x1": (["-march=haswell", "-DEI_STEM_TR=2", "-DEI_STEM_PV=1"], {"avx2", "fma"}),
    "avx512 tile 4x5": (
        ["-march=skylake-avx512", "-DEI_STEM_TR=4", "-DEI_STEM_PV=5"],
        {"avx512f", "avx512vl"},
    ),
}


def _recorded(c: dict) -> replay.Recording:
    """The case bound and run on the host (its calls recorded), the output NaN again."""
    c["out"].fill(np.nan)
    with replay.recording(c["spec"].signature(), c["ins"], c["out"]) as rec:
        StemNative(c["spec"]).bind(c["ins"], [c["out"]], ScratchPool())()
    _check(c["out"], c["want"], "host")
    c["out"].fill(np.nan)
    return rec


@pytest.mark.parametrize("build", list(X86_BUILDS))
def test_every_x86_vector_path_matches(build: str, tmp_path: Path) -> None:
    flags, needs = X86_BUILDS[build]
    isa_builds.need_features(needs)
    fn = isa_builds.build_kernels(tmp_path, ["conv_stem.c", "args.c"], flags).conv_stem_f32
    fn.restype = None
    for c in _kernel_cases():
        rec = _recorded(c)
        assert {call.name for call in rec.calls} == {"conv_stem_f32"}
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
