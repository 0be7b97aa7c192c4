"""Float16 storage read and written by direct_native and ocvec_native themselves
(``half_io``, tactics/cpu_fp16.py): float16 inputs, residuals and outputs must give exactly
the bits of the conversion route — inputs widened into float32, the same kernel on float32,
outputs narrowed to nearest even float16 (numpy's astype) — for every x / out / residual
dtype mix, every fused activation, the residual modes, odd sizes, strides 1 and 2, pads,
plain 1x1 layers (read in place by ocvec_native, laid out by direct_native), the banded
layout, channel-slice and strided views, special values, 1 and 2 threads; on this host's
library, on every x86 vector path (AVX-512, AVX2 + F16C, plain x86-64) and on aarch64 NEON
under qemu-user."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics import cpu_direct, cpu_fp16
from edge_infer.engine.backends.cpu.tactics.cpu_direct import DirectNative, OcVecNative
from edge_infer.engine.tactics.base import ConvSpec
from tests.engine.backends.cpu import isa_builds
from tests.engine.backends.cpu.aarch64 import replay
from tests.sysdeps import need

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler: no native path")

F16, F32 = np.dtype(np.float16), np.dtype(np.float32)
ACTS = [
    ("", ()),
    ("relu", ()),
    ("leaky_relu", (0.2,)),
    ("clip", (-0.5, 6.0)),
    ("sigmoid", ()),
    ("silu", ()),
    ("hard_swish", ()),
    ("hard_sigmoid", (0.3, 0.4)),
    ("tanh", ()),
]
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


def _special(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> np.ndarray:
    """Random float32 values with float16's special cases sprinkled in: infinities, NaN,
    values that round to float16 subnormals, to infinity (>= 65520), exact ties."""
    x = (rng.standard_normal(shape) * scale).astype(F32)
    flat = x.reshape(-1)
    pick = rng.choice(flat.size, min(flat.size, 40), replace=False)
    halves = rng.integers(0, 0x7C00, pick.size).astype(np.uint16).view(F16).astype(F32)
    ties = (halves.view(np.uint32) + (1 << 12)).view(F32)  # halfway between two float16s
    values = [np.inf, -np.inf, np.nan, 65520.0, -70000.0, 3e-6, -(2**-25), 2**-24 * 1.5]
    flat[pick] = np.resize(np.concatenate([values, ties]), pick.size)
    return x


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
    make = _special if special else lambda r, s, c: (r.standard_normal(s) * c).astype(F32)
    xs = make(rng, (n, cin + extra, h, w * cols), 2.0)
    zs = make(rng, (n, cout + extra, ho, wo), 1.0)
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


def _wide(a: object) -> object:
    return a.astype(F32) if isinstance(a, np.ndarray) and a.dtype == F16 else a


def _float32_route(c: dict, pool: WorkPool | None = None) -> np.ndarray:
    """The conversion route's bits: inputs widened, the kernel on float32, the output
    narrowed to the layer's storage (numpy's astype: nearest even)."""
    out32 = np.full(c["out"].shape, np.nan, F32)
    c["tactic"](c["spec"]).bind([_wide(a) for a in c["ins"]], [out32], ScratchPool(pool))()
    with np.errstate(over="ignore", invalid="ignore"):
        return out32.astype(c["out"].dtype)


def _assert_bits(got: np.ndarray, want: np.ndarray, what: str) -> None:
    u = np.uint16 if got.dtype == F16 else np.uint32
    same = got.view(u) == want.view(u)
    assert same.all(), f"{what}: {int((~same).sum())} of {same.size} values differ in bits"


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
    pool = WorkPool(threads) if threads > 1 else None
    try:
        for c in _cases(tactic):
            t = tactic(c["spec"])
            if not tactic.applicable(c["spec"]):
                continue
            assert cpu_fp16.takes_half(t)
            t.bind(c["ins"], [c["out"]], ScratchPool(pool))()
            _assert_bits(c["out"], _float32_route(c, pool), c["name"])
    finally:
        if pool is not None:
            pool.close()


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
            want = _float32_route(c)
            kinds |= {"inf"} if np.isinf(want).any() else set()
            kinds |= {"nan"} if np.isnan(want).any() else set()
            tiny = (want != 0) & (np.abs(want) < 2**-14)
            kinds |= {"subnormal"} if tiny.any() else set()
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


def _recorded(c: dict, half: bool) -> replay.Recording:
    """The case's native calls, float16 storage (``half``) or the float32 route's, bound and
    run on the host and recorded; the output NaN again."""
    ins = c["ins"] if half else [_wide(a) for a in c["ins"]]
    out = c["out"] if half else np.full(c["out"].shape, np.nan, F32)
    keep = [a for a in ins if isinstance(a, np.ndarray)]
    with replay.recording(c["name"] + (" half" if half else " f32"), keep, out) as rec:
        c["tactic"](c["spec"]).bind(ins, [out], ScratchPool())()
    out.fill(np.nan)
    return rec


def _narrowed(f32: np.ndarray, like: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return f32.astype(like.dtype)


def _all_cases() -> list[dict]:
    """Both tactics' cases their tactic takes, x not strided (replay: one region each)."""
    return [
        c
        for t in TACTICS
        for c in _cases(t)
        if t.applicable(c["spec"]) and c["ins"][0].strides[3] == c["ins"][0].itemsize
    ]


#: build → the float16 path its kernels must report (half.h EI_H8_PATH)
HALF_PATH = {"avx512": 1, "avx2": 1, "x86-64": 0}
SOURCES = ["conv_direct.c", "conv_ocvec.c", "args.c"]


def _recordings(monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict], list[replay.Recording]]:
    """The cases and their recordings (float16, float32 route, in turn): every case, then
    direct_native's again in bands."""
    cases = _all_cases()
    recs = [_recorded(c, half) for c in cases for half in (True, False)]
    _force_bands(monkeypatch)
    banded = [c for c in cases if c["tactic"] is DirectNative]
    recs += [_recorded(c, half) for c in banded for half in (True, False)]
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
        _assert_bits(got[0], _narrowed(got[1], got[0]), f"{build} {c['name']}")
    assert names == CALLS


def test_aarch64_neon_path_is_the_conversion_route(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both routes' calls replayed under qemu-user (-mcpu=cortex-a78ae, as on Jetson Orin)."""
    from tests.engine.backends.cpu.aarch64.test_aarch64_kernels import (
        CROSS,
        QEMU,
        compile_driver,
        emulate,
    )

    need(CROSS, QEMU, "cc")
    exe = compile_driver(tmp_path, "cortex-a78ae", only=("conv_direct.c", "conv_ocvec.c"))
    cases, recs = _recordings(monkeypatch)
    assert {call.name for rec in recs for call in rec.calls} == CALLS
    replay.write(tmp_path / "calls.bin", recs)
    emulate(exe, "replay", str(tmp_path / "calls.bin"), str(tmp_path / "out.bin"))
    regions = replay.read(tmp_path / "out.bin")
    outs, first = [], 0
    for rec in recs:
        outs.append(rec.output(regions[first : first + len(rec.regions)]))
        first += len(rec.regions)
    for k, c in enumerate(cases):
        got, f32 = outs[2 * k], outs[2 * k + 1]
        assert not np.isnan(f32).all(), c["name"]  # the replay wrote the output
        _assert_bits(got, _narrowed(f32, got), f"aarch64 {c['name']}")
