"""``ocvec_native`` on plain 1×1 projections (kernels/conv_ocvec.c with ``xcs`` set): the tile
broadcasts its inputs where they lie, no pack phase — the bits of the packed path, on this
host and on the other vector paths the kernel compiles to (AVX-512, AVX2, plain x86-64, and
aarch64 NEON under qemu-user), from the same bound calls."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics.cpu_ocvec import HALF_IN_PLACE_MAX_CIN, OcVecNative
from edge_infer.engine.tactics.base import ConvSpec
from tests.engine.backends.cpu import isa_builds
from tests.engine.backends.cpu.aarch64 import emulated, replay
from tests.engine.backends.cpu.tactics.test_cpu_conv import expected

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler: no native path")

Packed = type("OcVecPacked", (OcVecNative,), {"plain_in_place": False})
HalfPacked = type("OcVecHalfPacked", (OcVecNative,), {"half_in_place": False})

# (batch, cin, h, w, cout, activation, residual, input a channel slice): 12x14 = 168
# positions fill tiles of 6 and of 7 (in place on every build); 11x13 = 143 leave a last
# tile of 5 or 3; cout off the 16-channel blocks; a batch of 4 (a chunk per image on 2
# threads); mish: the shared epilogue after; 300 and 520 input channels: the kernel's
# blocks of 128 terms (the last one short), 20x20 = 400 positions in two groups
CASES = [
    (1, 40, 12, 14, 24, ("relu", ()), "none", False),
    (1, 40, 11, 13, 24, ("clip", (0.0, 6.0)), "pre", True),
    (1, 33, 12, 14, 17, ("clip", (0.0, 6.0)), "pre", True),
    (4, 24, 14, 12, 24, ("hard_swish", ()), "post", True),
    (2, 50, 12, 14, 9, ("mish", ()), "pre", False),
    (1, 300, 11, 13, 24, ("clip", (0.0, 6.0)), "pre", True),
    (1, 520, 20, 20, 40, ("relu", ()), "post", False),
    # last position block of 1 (145 = 24 x 6 + 1) and 2 (140 = 23 x 6 + 2) positions, every
    # channel block's at once (conv_ocvec.c tail_blocks: 6 blocks as 4 + 1 + 1; 5 as 2 + 2 + 1,
    # its 300 terms otherwise in blocks of KB)
    (1, 96, 5, 29, 88, ("clip", (0.0, 6.0)), "pre", True),
    (2, 300, 10, 14, 72, ("relu", ()), "post", False),
]


def _case(k: int, case: tuple) -> dict:
    n, cin, h, w, cout, act, residual, view = case
    rng = np.random.default_rng(k)
    xbig = rng.standard_normal((n, cin + 3, h, w)).astype(np.float32)
    x = xbig[:, 2 : 2 + cin] if view else np.ascontiguousarray(xbig[:, :cin])
    wt = (rng.standard_normal((cout, cin, 1, 1)) / np.sqrt(cin)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    z = rng.standard_normal((n, cout, h, w)).astype(np.float32)
    conv = np.einsum("ok,nkhw->nohw", wt[:, :, 0, 0].astype(np.float64), x.astype(np.float64))
    conv += b[None, :, None, None]
    spec = ConvSpec(x.shape, (n, cout, h, w), wt, b, (1, 1), (0,) * 4, (1, 1), 1, *act, residual)
    ins = [x, wt, b] + ([z] if residual != "none" else [])
    want = expected(conv, z, act[0], act[1], residual)
    return dict(spec=spec, ins=ins, want=want)


def _check(got: np.ndarray, want: np.ndarray, what: str) -> None:
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=3e-5 * scale, err_msg=what)


def _run(cls: type, c: dict, pool: WorkPool | None) -> tuple[np.ndarray, set[str]]:
    """The output and the names of the native calls the bound layer ran (through the
    pool's native threads, none are seen: one thread for them)."""
    out = np.full(c["spec"].out_shape, np.nan, np.float32)
    with replay.recording(c["spec"].signature(), c["ins"], out) as rec:
        cls(c["spec"]).bind(c["ins"], [out], ScratchPool(pool))()
    return out, {call.name for call in rec.calls}


@pytest.mark.parametrize("threads", [1, 2])
def test_in_place_projection_gives_the_packed_bits(threads: int) -> None:
    pool = WorkPool(threads) if threads > 1 else None
    try:
        for k, case in enumerate(CASES):
            c = _case(k, case)
            got, names = _run(OcVecNative, c, pool)
            packed, packed_names = _run(Packed, c, pool)
            if pool is None:
                assert names == {"conv_ocvec_f32"}, case
                assert "pack_positions_f32" in packed_names, case
            np.testing.assert_array_equal(got, packed, err_msg=str(case))
            _check(got, c["want"], str(case))
    finally:
        if pool is not None:
            pool.close()


@pytest.mark.parametrize(
    "case",
    [
        (1, 24, 12, 14, 40, ("relu", ()), "none", False),  # an expansion
        (1, 40, 7, 7, 24, ("relu", ()), "none", False),  # 49 positions: below the minimum
        (1, 800, 11, 13, 24, ("relu", ()), "none", False),  # a last short tile, 800 in
        (2, 520, 11, 13, 24, ("relu", ()), "none", False),  # ... 520 in, a chunk per image
    ],
)
def test_other_plain_convs_stay_packed(case: tuple) -> None:
    c = _case(0, case)
    got, names = _run(OcVecNative, c, None)
    assert "pack_positions_f32" in names
    _check(got, c["want"], str(case))


def test_in_place_float16_storage_is_the_conversion_route() -> None:
    """Float16 output and residual of an in-place projection through the blocks of terms:
    the float32 kernel's output narrowed (round to nearest even), bit for bit."""
    c = _case(7, (1, 300, 11, 13, 24, ("clip", (0.0, 6.0)), "pre", True))
    z16 = c["ins"][3].astype(np.float16)
    out16 = np.full(c["spec"].out_shape, np.nan, np.float16)
    ins16 = [*c["ins"][:3], z16]
    with replay.recording(c["spec"].signature(), ins16, out16) as rec:
        OcVecNative(c["spec"]).bind(ins16, [out16], ScratchPool())()
    assert {call.name for call in rec.calls} == {"conv_ocvec_f32"}
    ref = np.full(c["spec"].out_shape, np.nan, np.float32)
    ins32 = [*c["ins"][:3], z16.astype(np.float32)]
    Packed(c["spec"]).bind(ins32, [ref], ScratchPool())()
    np.testing.assert_array_equal(out16, ref.astype(np.float16))


def _recorded() -> list[tuple[dict, replay.Recording]]:
    """The fused cases bound and run on the host (their calls recorded), with a float32 and
    with a float16 input (float32 output: each group of positions widened in place)."""
    found = []
    for k, case in enumerate(CASES):
        if case[5][0] == "mish":
            continue
        for c in (_case(k, case), _half_case(k, case, 1)):
            out = np.full(c["spec"].out_shape, np.nan, np.float32)
            with replay.recording(c["spec"].signature(), c["ins"], out) as rec:
                OcVecNative(c["spec"]).bind(c["ins"], [out], ScratchPool())()
            _check(out, c["want"], "host")
            assert {call.name for call in rec.calls} == {"conv_ocvec_f32"}
            out.fill(np.nan)
            c["out"] = out
            found.append((c, rec))
    return found


@pytest.mark.parametrize("build", list(isa_builds.X86_BUILDS))
def test_every_x86_vector_path_matches(build: str, tmp_path: Path) -> None:
    flags, needs = isa_builds.X86_BUILDS[build]
    isa_builds.need_features(needs)
    fn = isa_builds.build_kernels(tmp_path, ["conv_ocvec.c", "args.c"], flags).conv_ocvec_f32
    fn.restype = None
    for c, rec in _recorded():
        for call in rec.calls:
            fn(ctypes.byref(call.args))
        _check(c["out"], c["want"], f"{build} {rec.name}")


def test_aarch64_neon_path_matches(tmp_path: Path) -> None:
    """Cross-compiled for the Jetson's cores and replayed under qemu-user."""
    exe = emulated.driver(tmp_path, ("conv_ocvec.c",))
    found = _recorded()
    outs = emulated.replayed(exe, tmp_path, [rec for _, rec in found])
    for (c, rec), got in zip(found, outs, strict=True):
        _check(got, c["want"], f"aarch64 {rec.name}")


def _half_case(k: int, case: tuple, bits: int) -> dict:
    """The case with a float16 input (its view kept), and a float16 output and residual
    where ``bits`` has 2 and 4; ``want`` from the float16 input's values."""
    c = _case(k, case)
    x, spec = c["ins"][0], c["spec"]
    n, cin = x.shape[:2]
    big = np.zeros((n, cin + 3, *x.shape[2:]), np.float16)
    big[:, 2 : 2 + cin] = x
    x16 = big[:, 2 : 2 + cin] if not x.flags.c_contiguous else np.ascontiguousarray(big[:, 2:-1])
    ins = [x16, *c["ins"][1:3]]
    if len(c["ins"]) > 3:
        ins.append(c["ins"][3].astype(np.float16 if bits & 4 else np.float32))
    wt = c["ins"][1][:, :, 0, 0].astype(np.float64)
    conv = np.einsum("ok,nkhw->nohw", wt, x16.astype(np.float64))
    conv += c["ins"][2][None, :, None, None]
    z = ins[3].astype(np.float32) if len(ins) > 3 else None
    want = expected(conv, z, spec.activation, spec.activation_params, spec.residual)
    dtype = np.float16 if bits & 2 else np.float32
    return dict(spec=spec, ins=ins, want=want, out=np.full(spec.out_shape, np.nan, dtype))


def _run_half(cls: type, c: dict, pool: WorkPool | None) -> tuple[np.ndarray, replay.Recording]:
    out = np.full_like(c["out"], np.nan)
    with replay.recording(c["spec"].signature(), c["ins"], out) as rec:
        cls(c["spec"]).bind(c["ins"], [out], ScratchPool(pool))()
    return out, rec


@pytest.mark.parametrize("threads", [1, 2])
def test_float16_input_in_place_gives_the_packed_bits(threads: int) -> None:
    """A float16 input read in place (each group of positions widened once, every channel
    block reading it there; groups and blocks of terms as the cases make them): the bits
    of the float16 pack + tile route, float16 or float32 output and residual."""
    pool = WorkPool(threads) if threads > 1 else None
    try:
        for k, case in enumerate(CASES):
            if case[5][0] == "mish":
                continue
            for bits in (1, 7):
                c = _half_case(k, case, bits)
                got, rec = _run_half(OcVecNative, c, pool)
                packed, packed_rec = _run_half(HalfPacked, c, pool)
                if pool is None:
                    assert {call.name for call in rec.calls} == {"conv_ocvec_f32"}, case
                    assert "pack_positions_f32" in {call.name for call in packed_rec.calls}
                np.testing.assert_array_equal(got, packed, err_msg=f"{case} {bits}")
                if bits == 1:
                    _check(got, c["want"], str(case))
    finally:
        if pool is not None:
            pool.close()


def test_float16_input_past_the_widening_buffer_is_packed() -> None:
    """More input channels than one block of positions of the kernel's widening buffer holds
    (HALF_IN_PLACE_MAX_CIN): a float16 input is packed (the float32 one is read in place)."""
    case = (1, HALF_IN_PLACE_MAX_CIN + 60, 12, 14, 24, ("relu", ()), "none", False)
    _, names = _run(OcVecNative, _case(0, case), None)
    assert "pack_positions_f32" not in names
    c = _half_case(0, case, 1)
    got, rec = _run_half(OcVecNative, c, None)
    assert "pack_positions_f32" in {call.name for call in rec.calls}
    _check(got, c["want"], str(case))
