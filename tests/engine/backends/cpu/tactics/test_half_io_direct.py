"""Float16 storage read and written by direct_native and ocvec_native themselves
(``half_io``, tactics/cpu_fp16.py): float16 inputs, residuals and outputs must give exactly
the bits of the conversion route — inputs widened into float32, the same kernel on float32,
outputs narrowed to nearest even float16 (numpy's astype) — for every x / out / residual
dtype mix, every fused activation, the residual modes, odd sizes, strides 1 and 2, pads,
plain 1x1 layers (float16 inputs read in place by both), the banded
layout, channel-slice and strided views, special values, 1 and 2 threads; on this host's
library, on every x86 vector path (AVX-512, AVX2 + F16C, plain x86-64) and on aarch64 NEON
under qemu-user."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.tactics import cpu_direct, cpu_fp16
from edge_infer.engine.backends.cpu.tactics.cpu_direct import DirectNative
from edge_infer.engine.backends.cpu.tactics.cpu_ocvec import OcVecNative
from edge_infer.engine.tactics.base import ConvSpec
from tests.engine.backends.cpu import isa_builds
from tests.engine.backends.cpu.aarch64 import emulated, replay
from tests.engine.backends.cpu.tactics import half_io_support as hs
from tests.engine.backends.cpu.tactics.half_io_support import ACTS, F16, F32, HALF_PATH

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler: no native path")

# (batch, cin, h, w, cout, kernel, strides, pads t l b r): 3x3 at strides 1 and 2, odd
# sizes and channel counts (tile tails), asymmetric pads, a plain 1x1, an unpadded strided
# 1x1 (ocvec reads it in place), a batch
SHAPES = [
    (1, 5, 13, 11, 7, (3, 3), (1, 1), (1, 1, 1, 1)),
    (2, 3, 17, 19, 13, (3, 3), (2, 2), (1, 1, 1, 1)),
    (1, 8, 9, 7, 16, (1, 1), (1, 1), (0, 0, 0, 0)),
    (1, 6, 12, 10, 9, (1, 1), (2, 2), (0, 0, 0, 0)),
    (2, 4, 11, 14, 20, (3, 3), (2, 2), (0, 1, 1, 0)),
    (1, 7, 10, 23, 8, (5, 3), (1, 2), (2, 1, 2, 1)),
]
TACTICS = [DirectNative, OcVecNative]


def _case(tactic: type, k: int, bits: int, views: int, special: bool) -> dict:
    """One layer's arrays: x, z float16 or float32 and out float16 or float32 as ``bits``
    says (1 x, 2 out, 4 z); ``views``: 1 channel slices of larger tensors, 2 an x with
    every other column (rows not unit-stride: copied)."""
    rng = np.random.default_rng(k)
    act = ACTS[k % len(ACTS)]
    residual = ("none", "pre", "post")[k % 3]
    n, cin, h, w, cout, kernel, strides, pads = SHAPES[k % len(SHAPES)]
    ho = (h + pads[0] + pads[2] - kernel[0]) // strides[0] + 1
    wo = (w + pads[1] + pads[3] - kernel[1]) // strides[1] + 1
    fan = cin * kernel[0] * kernel[1]
    wt = (rng.standard_normal((cout, cin, *kernel)) / np.sqrt(fan)).astype(F32)
    b = rng.standard_normal(cout).astype(F32)
    extra = 3 if views else 0
    cols = 2 if views == 2 else 1
    xs = hs.random_values(rng, (n, cin + extra, h, w * cols), 2.0, special)
    zs = hs.random_values(rng, (n, cout + extra, ho, wo), 1.0, special)
    with np.errstate(over="ignore"):
        x = xs.astype(F16 if bits & 1 else F32)[:, extra:, :, ::cols]
        z = zs.astype(F16 if bits & 4 else F32)[:, :cout]
    obig = np.full((n, cout + extra, ho, wo), np.nan, F16 if bits & 2 else F32)
    out = obig[:, extra:]
    spec = ConvSpec(x.shape, out.shape, wt, b, strides, pads, (1, 1), 1, *act, residual)
    ins = [x, wt, b] + ([z] if residual != "none" else [])
    return dict(tactic=tactic, spec=spec, ins=ins, out=out, name=f"{tactic.name} {k} {bits}")


def _cases(tactic: type) -> list[dict]:
    """Every shape, activation, residual mode and storage combination, some on views and
    some with special values."""
    return [
        _case(tactic, k, bits, views=(0, 0, 1, 2)[k % 4], special=k % 4 == 1)
        for k in range(2 * len(ACTS))
        for bits in (7, 1, 2, 4, 3 + 2 * (k % 2), 6)
    ]


def _force_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    """direct_native's bands instead of its whole-image layout: a tiny band buffer."""
    monkeypatch.setattr(cpu_direct, "WHOLE_MAX_BYTES", 0)
    monkeypatch.setattr(cpu_direct, "MIN_BAND_ROWS", 1)
    monkeypatch.setattr(cpu_direct, "BAND_BYTES", 2048)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    ("tactic", "banded"), [(DirectNative, False), (DirectNative, True), (OcVecNative, False)]
)
def test_half_storage_is_the_conversion_route_bit_for_bit(
    tactic: type, banded: bool, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if banded:
        _force_bands(monkeypatch)
    cases = [c for c in _cases(tactic) if tactic.applicable(c["spec"])]
    hs.assert_half_storage_bit_for_bit(cases, threads)


def test_the_bands_are_taken_when_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    """(the banded cases above reach conv_banded_f32)"""
    c = _case(DirectNative, 0, 7, 0, False)
    assert DirectNative(c["spec"])._banding() is None
    _force_bands(monkeypatch)
    assert DirectNative(c["spec"])._banding() is not None


def test_special_values_reach_every_float16_case() -> None:
    """The cases' float16 outputs hold infinities, NaNs and subnormals (so the tests above
    compare those)."""
    kinds = set()
    for tactic in TACTICS:
        for c in _cases(tactic):
            if c["out"].dtype != F16 or not tactic.applicable(c["spec"]):
                continue
            kinds |= hs.float16_kinds(hs.float32_route(c))
    assert kinds == {"inf", "nan", "subnormal"}


@pytest.mark.parametrize("tactic", TACTICS)
def test_an_unfused_activation_declines_half_storage(tactic: type) -> None:
    w = np.ones((8, 4, 3, 3), F32)
    pads = (1, 1, 1, 1)
    spec = ConvSpec((1, 4, 5, 5), (1, 8, 5, 5), w, None, (1, 1), pads, (1, 1), 1, "mish")
    assert not cpu_fp16.takes_half(tactic(spec))
    spec = ConvSpec((1, 4, 5, 5), (1, 8, 5, 5), w, None, (1, 1), pads, (1, 1), 1, "relu")
    assert cpu_fp16.takes_half(tactic(spec))


# -- every vector path ------------------------------------------------------------------------


def _all_cases() -> list[dict]:
    """Both tactics' cases their tactic takes, x not strided (replay: one region each)."""
    return [
        c
        for t in TACTICS
        for c in _cases(t)
        if t.applicable(c["spec"]) and c["ins"][0].strides[3] == c["ins"][0].itemsize
    ]


SOURCES = ["conv_direct.c", "conv_ocvec.c", "args.c"]


def _recordings(monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict], list[replay.Recording]]:
    """The cases and their recordings (float16, float32 route, in turn): every case, then
    direct_native's again in bands."""
    cases = _all_cases()
    recs = [hs.recorded(c, half) for c in cases for half in (True, False)]
    _force_bands(monkeypatch)
    banded = [c for c in cases if c["tactic"] is DirectNative]
    recs += [hs.recorded(c, half) for c in banded for half in (True, False)]
    return cases + banded, recs


#: every kernel the recordings must reach
CALLS = {
    "conv_direct_f32",
    "split_phases_f32",
    "conv_banded_f32",
    "pack_positions_f32",
    "conv_ocvec_f32",
}


@pytest.mark.parametrize("build", list(isa_builds.X86_BUILDS))
def test_every_x86_vector_path_is_the_conversion_route(
    build: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flags, needs = isa_builds.X86_BUILDS[build]
    isa_builds.need_features(needs)
    lib = isa_builds.build_kernels(tmp_path, SOURCES, flags)
    for name in ("conv_direct", "conv_ocvec"):  # the path under test
        assert getattr(lib, f"{name}_half_path")() == HALF_PATH[build]
    cases, recs = _recordings(monkeypatch)
    names = set()
    for k, c in enumerate(cases):
        got = []
        for rec in recs[2 * k : 2 * k + 2]:
            assert rec.out is not None
            rec.out.fill(np.nan)
            for call in rec.calls:
                names.add(call.name)
                fn = getattr(lib, call.name)
                fn.restype = None
                fn(ctypes.byref(call.args))
            got.append(rec.out.copy())
        assert not np.isnan(got[1]).all(), c["name"]  # the build wrote the output
        hs.assert_bits(got[0], hs.narrowed(got[1], got[0]), f"{build} {c['name']}")
    assert names == CALLS


def test_aarch64_neon_path_is_the_conversion_route(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both routes' calls replayed under qemu-user (-mcpu=cortex-a78ae, as on Jetson Orin)."""
    exe = emulated.driver(tmp_path, ("conv_direct.c", "conv_ocvec.c"))
    cases, recs = _recordings(monkeypatch)
    assert {call.name for rec in recs for call in rec.calls} == CALLS
    hs.assert_aarch64_is_the_conversion_route(exe, tmp_path, cases, recs)
