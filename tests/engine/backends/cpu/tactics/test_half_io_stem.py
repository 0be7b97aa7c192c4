"""Float16 storage read and written by ``stem_native`` itself (``half_io``,
tactics/cpu_fp16.py; kernels/conv_stem.c): float16 inputs (widened as the band's rows are laid
out), residuals and outputs must write exactly the bits of the conversion route — inputs
widened into float32, the same kernel on float32, outputs narrowed to nearest even float16 —
on this host's library, on every x86 vector path the kernel compiles to (AVX-512 with 16- and
8-float vectors, AVX2 + F16C, plain x86-64) and on aarch64 NEON under qemu-user; special
values, odd sizes, strided views, residuals, every fused activation, each column-phase path
(stride 2, 1 and 3)."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics import cpu_fp16
from edge_infer.engine.backends.cpu.tactics.cpu_stem import StemNative
from edge_infer.engine.tactics.base import ConvSpec
from edge_infer.engine.tactics.fp16 import Fp16Spec
from tests.engine.backends.cpu import isa_builds
from tests.engine.backends.cpu.aarch64 import emulated
from tests.engine.backends.cpu.tactics import half_io_support as hs
from tests.engine.backends.cpu.tactics.half_io_support import ACTS, F16, F32, HALF_PATH

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler: no native path")

# (batch, cin, h, w, cout, kernel, strides, pads t l b r): 3x3/2 and 7x7/2 stems (whole vectors
# and row tails, asymmetric pads), stride 1 (the copied rows), stride 3 (the general phases),
# several images, a wide row (several vectors a row, bands across rows)
SHAPES = [
    (1, 3, 33, 45, 16, (3, 3), (2, 2), (1, 1, 1, 1)),
    (2, 3, 21, 19, 20, (7, 7), (2, 2), (3, 3, 3, 3)),
    (1, 2, 9, 23, 9, (3, 3), (1, 1), (1, 0, 1, 2)),
    (3, 4, 11, 14, 5, (5, 5), (3, 3), (2, 2, 1, 1)),
    (1, 3, 40, 130, 12, (3, 3), (2, 2), (0, 1, 1, 0)),
]

# a 3x3/2 stem whose output rows are 6 whole vectors and a tail (on AVX2 two tiles of 3 whole
# vectors a row: conv_stem.c's store_plain) and output channels a multiple of 4 and 8
PLAIN_SHAPE = (1, 3, 8, 110, 16, (3, 3), (2, 2), (1, 1, 1, 1))


def _out_size(n: int, k: int, s: int, p0: int, p1: int) -> int:
    return (n + p0 + p1 - k) // s + 1


def _case(
    k: int, bits: int, views: bool, special: bool, act: tuple | None = None, wide: bool = False
) -> dict:
    """One layer's arrays: x, z float16 or float32 and out float16 or float32 as ``bits``
    says (1 x, 2 out, 4 z); with ``views`` channel slices of larger tensors. ``act`` (then
    no residual) and ``wide`` (PLAIN_SHAPE) override the case's own."""
    rng = np.random.default_rng(k)
    residual = ("none", "pre", "post")[k % 3] if act is None else "none"
    act = ACTS[k % len(ACTS)] if act is None else act
    n, cin, h, w, cout, kernel, strides, pads = PLAIN_SHAPE if wide else SHAPES[k % len(SHAPES)]
    ho = _out_size(h, kernel[0], strides[0], pads[0], pads[2])
    wo = _out_size(w, kernel[1], strides[1], pads[1], pads[3])
    fan = cin * kernel[0] * kernel[1]
    wt = (rng.standard_normal((cout, cin, *kernel)) / np.sqrt(fan)).astype(F32)
    b = rng.standard_normal(cout).astype(F32)
    extra = 2 if views else 0
    xs = hs.random_values(rng, (n, cin + extra, h, w), 2.0, special)
    zs = hs.random_values(rng, (n, cout + extra, ho, wo), 1.0, special)
    with np.errstate(over="ignore"):
        x = xs.astype(F16 if bits & 1 else F32)[:, extra:]
        z = zs.astype(F16 if bits & 4 else F32)[:, :cout]
    obig = np.full((n, cout + extra, ho, wo), np.nan, F16 if bits & 2 else F32)
    out = obig[:, extra:]
    spec = ConvSpec(x.shape, out.shape, wt, b, strides, pads, (1, 1), 1, *act, residual)
    ins = [x, wt, b] + ([z] if residual != "none" else [])
    return dict(tactic=StemNative, spec=spec, ins=ins, out=out, name=f"stem {k} {bits}")


def _cases() -> list[dict]:
    return [
        _case(k, bits, views=k % 4 == 3, special=k % 4 == 1)
        for k in range(2 * len(ACTS))
        for bits in (7, 1 + 2 * (k % 2), 2 + 4 * (k % 2))
    ]


@pytest.mark.parametrize("threads", [1, 2])
def test_half_storage_is_the_conversion_route_bit_for_bit(threads: int) -> None:
    hs.assert_half_storage_bit_for_bit(_cases(), threads)


@pytest.mark.parametrize("act", [a for a in ACTS if a[0] in ("", "relu", "clip", "silu")])
def test_whole_tiles_of_each_picked_activation_are_the_conversion_route(act: tuple) -> None:
    """conv_stem.c's store_plain (whole-vector tiles, no residual; the activations it picks
    once a tile), a float16 and a float32 output, the same bits as the conversion route."""
    cases = [_case(k, bits, False, k == 1, act, wide=True) for k in range(2) for bits in (3, 1)]
    hs.assert_half_storage_bit_for_bit(cases, 1)


def test_the_cases_reach_every_float16_case_and_both_storages() -> None:
    """The float16 outputs hold infinities, NaNs and subnormals, and the outputs are not all
    NaN (the kernel wrote them)."""
    kinds = set()
    for c in _cases():
        want = hs.float32_route(c)
        assert not np.isnan(want).all(), c["name"]
        if c["out"].dtype != F16:
            continue
        kinds |= hs.float16_kinds(want)
    assert kinds == {"inf", "nan", "subnormal"}


def test_a_rounded_float32_input_rounded_by_the_kernel_is_the_rounding_pass() -> None:
    """``round_x`` (the FP16 layer's rounded image: cpu_fp16.py ``rounds_input``): the kernel
    rounding a float32 input to float16's values as it lays it out writes the bits of the
    same kernel on the input rounded before, every column-phase path, float16 and float32
    outputs; then the FP16 wrapper around it against its conversion route."""
    for c in _cases():
        x = c["ins"][0]
        if x.dtype != F32:
            continue
        x = x * np.float32(1 + 2**-12)  # off float16's values (specials stay)
        with np.errstate(over="ignore", invalid="ignore"):
            x16 = x.astype(F16).astype(F32)
        outs = []
        for xin, rounds in ((x, True), (x16, False)):
            out = np.full_like(c["out"], np.nan)
            t = StemNative(c["spec"])
            t.round_x = rounds
            t.bind([xin, *c["ins"][1:]], [out], ScratchPool())()
            outs.append(out)
        assert not np.isnan(outs[1]).all(), c["name"]
        hs.assert_bits(outs[0], outs[1], f"round_x {c['name']}")
    c = _case(0, 2, views=False, special=True)  # float32 image, float16 output
    spec = Fp16Spec(
        op="Conv",
        op_domain="",
        opset=17,
        op_attrs={},
        round_inputs=(0,),
        fp16_outputs=(0,),
        inputs=((c["spec"].x_shape, "float32"),),
        outputs=((c["spec"].out_shape, "float16"),),
        consts={},
        conv=c["spec"],
    )
    x = c["ins"][0] * np.float32(1 + 2**-12)
    got = np.full(c["out"].shape, np.nan, F16)
    wrapper = cpu_fp16.fp16_conv(StemNative)(spec)
    wrapper.bind([x, None, None], [got], ScratchPool())()
    assert wrapper.inner.round_x  # type: ignore[attr-defined]
    want = np.full_like(got, np.nan)
    with np.errstate(over="ignore", invalid="ignore"):
        x16 = x.astype(F16).astype(F32)
    StemNative(c["spec"]).bind([x16, None, None], [want], ScratchPool())()
    hs.assert_bits(got, want, "fp16_stem_native on a float32 image")


def test_an_unfused_activation_declines_half_storage() -> None:
    w = np.ones((4, 3, 3, 3), F32)
    args = ((1, 3, 9, 9), (1, 4, 4, 4), w, None, (2, 2), (0, 0, 0, 0), (1, 1), 1)
    assert not cpu_fp16.takes_half(StemNative(ConvSpec(*args, "mish")))
    assert cpu_fp16.takes_half(StemNative(ConvSpec(*args, "relu")))


# -- every vector path ------------------------------------------------------------------------


BUILDS = {
    **isa_builds.X86_BUILDS,
    "avx512-v8": (["-march=skylake-avx512", "-DEI_STEM_V8"], {"avx512f", "avx512vl"}),
}


@pytest.mark.parametrize("build", list(BUILDS))
def test_every_x86_vector_path_is_the_conversion_route(build: str, tmp_path: Path) -> None:
    flags, needs = BUILDS[build]
    isa_builds.need_features(needs)
    lib = isa_builds.build_kernels(tmp_path, ["conv_stem.c", "args.c"], flags)
    assert lib.conv_stem_half_path() == HALF_PATH[build.split("-v")[0]]  # the path under test
    fn = lib.conv_stem_f32
    fn.restype = None
    for c in _cases():
        got = []
        for half in (True, False):
            rec = hs.recorded(c, half)
            assert {call.name for call in rec.calls} == {"conv_stem_f32"}
            for call in rec.calls:
                fn(ctypes.byref(call.args))
            assert rec.out is not None
            got.append(rec.out.copy())
        assert not np.isnan(got[1]).all(), c["name"]
        hs.assert_bits(got[0], hs.narrowed(got[1], got[0]), f"{build} {c['name']}")


def test_aarch64_neon_path_is_the_conversion_route(tmp_path: Path) -> None:
    """Both routes' calls replayed under qemu-user (-mcpu=cortex-a78ae, as on Jetson Orin)."""
    exe = emulated.driver(tmp_path, ("conv_stem.c",))
    cases = _cases()
    recs = [hs.recorded(c, half) for c in cases for half in (True, False)]
    hs.assert_aarch64_is_the_conversion_route(exe, tmp_path, cases, recs)
