"""winograd_native (conv_winograd.c) against a float64 reference: both ways of sharing a layer
between threads (blocks of tiles; one block split by channels), block sizes, odd grids and
channel counts, batches 1 and 2, every fused activation, the residual modes — and the same
calls replayed through the kernel built for lower x86 vector ISAs and for aarch64 (qemu).

Tolerance: F(4x4, 3x3) in float32 against the float64 sum — |error| <= 2e-5 of the output's
scale + 1e-4 relative (the transforms' coefficients cost about four bits; a direct float32
sum stays near 1e-6)."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.activations import apply_activation
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics import cpu_winograd
from edge_infer.engine.backends.cpu.tactics.cpu_winograd import WinogradNative
from edge_infer.engine.tactics.base import ConvSpec
from tests.engine.backends.cpu import isa_builds
from tests.engine.backends.cpu.aarch64 import emulated

#: the kernel sources the aarch64 replay driver links (the cases call nothing else)
ONLY = ("conv_winograd.c",)

pytestmark = pytest.mark.skipif(not native.available(), reason="no native kernels here")

# (x shape, Cout, pads t l b r): tiles = N * ceil(Ho / 4) * ceil(Wo / 4)
CASES = [
    ((1, 5, 7, 9), 7, (1, 1, 1, 1)),  # 6 tiles: one block, lanes past the tiles
    ((2, 13, 10, 18), 17, (1, 2, 0, 1)),  # asymmetric pads, tiles spanning images
    ((1, 20, 30, 26), 33, (1, 1, 1, 1)),  # 56 tiles, odd channel counts
    ((2, 9, 45, 37), 11, (1, 1, 1, 1)),  # 240 tiles: blocks of tiles
    ((1, 64, 14, 14), 64, (1, 1, 1, 1)),  # ResNet-like 16 tiles, wide
    ((1, 3, 5, 5), 2, (0, 0, 0, 0)),  # no padding, 3x3 output, Cout < 6
]
ACTS = [
    ("", ()),
    ("relu", ()),
    ("leaky_relu", (0.2,)),
    ("clip", (-0.5, 0.7)),
    ("sigmoid", ()),
    ("silu", ()),
    ("hard_swish", ()),
    ("hard_sigmoid", (0.3, 0.4)),
    ("tanh", ()),
]


def _reference(x, w, b, pads, z, act, params, residual) -> np.ndarray:
    """conv + bias (+ z before or after the activation) in float64."""
    x64 = np.pad(x.astype(np.float64), ((0, 0), (0, 0), pads[0::2], pads[1::2]))
    n, _, hp, wp = x64.shape
    ho, wo = hp - 2, wp - 2
    y = np.zeros((n, w.shape[0], ho, wo))
    for i in range(3):
        for j in range(3):
            y += np.einsum("nchw,oc->nohw", x64[:, :, i : i + ho, j : j + wo], w[:, :, i, j])
    y += b.astype(np.float64)[None, :, None, None]
    if residual == "pre":
        y += z
    apply_activation(y, act, params)
    if residual == "post":
        y += z
    return y


def _layer(case, act, residual, seed):
    xs, cout, pads = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(np.float32)
    w = (rng.standard_normal((cout, xs[1], 3, 3)) / np.sqrt(9 * xs[1])).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    ho, wo = xs[2] + pads[0] + pads[2] - 2, xs[3] + pads[1] + pads[3] - 2
    out_shape = (xs[0], cout, ho, wo)
    z = rng.standard_normal(out_shape).astype(np.float32)
    spec = ConvSpec(xs, out_shape, w, b, (1, 1), pads, (1, 1), 1, act[0], act[1], residual)
    ins = [x, w, b] + ([z] if residual != "none" else [])
    want = _reference(x, w, b, pads, z, act[0], act[1], residual)
    return spec, ins, want


def _check(got: np.ndarray, want: np.ndarray, what: str) -> None:
    scale = max(float(np.abs(want).max()), 1.0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5 * scale, err_msg=what)


def _blocked(tb: int) -> type[WinogradNative]:
    """winograd_native with blocks of ``tb`` tiles and every layer split by tiles."""
    return type(f"Winograd{tb}", (WinogradNative,), {"tb": tb, "shared_tiles": 0})


class OneBlock(WinogradNative):
    """winograd_native taking all tiles as one block whenever it can, one thread or
    several."""

    def _one_block(self, tiles: int, workers: int) -> bool:
        return tiles <= self.shared_tiles


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"x{c[0]}o{c[1]}")
def test_matches_float64_every_activation_and_residual(case, workers) -> None:
    pool = WorkPool(workers) if workers > 1 else None
    try:
        tactics = (WinogradNative, OneBlock, _blocked(16), _blocked(48))
        for k, act in enumerate(ACTS):
            for r, residual in enumerate(("none", "pre", "post")):
                spec, ins, want = _layer(case, act, residual, k)
                tactic = tactics[(k + r) % 4]  # each sees every residual mode
                out = np.full(spec.out_shape, np.nan, np.float32)
                run = tactic(spec).bind(ins, [out], ScratchPool(pool))
                run()
                run()  # scratch reuse: zero lanes past the tiles must stay zero
                _check(out, want, f"{tactic.__name__} {act[0]} {residual}")
    finally:
        if pool is not None:
            pool.close()


def test_few_tiles_split_by_channels_many_by_tiles() -> None:
    """The two ways of sharing: one block split by output channels, or blocks of tiles."""
    calls: list[Any] = []
    init = native.NativeCall.__init__

    def record(self: Any, *args: Any, **kw: Any) -> None:
        init(self, *args, **kw)
        calls.append(self.args)

    pool = WorkPool(2)
    try:
        native.NativeCall.__init__ = record  # type: ignore[method-assign]
        for case in (CASES[4], CASES[3]):
            calls.clear()
            spec, ins, _ = _layer(case, ("relu", ()), "none", 0)
            out = np.zeros(spec.out_shape, np.float32)
            WinogradNative(spec).bind(ins, [out], ScratchPool(pool))
            spans = [(a.t0, a.t1, a.k0, a.k1, a.tb) for a in calls]
            if case is CASES[4]:  # 16 tiles, 64 channels = 11 blocks of 6
                assert spans == [(0, 16, 0, 5, 16), (0, 16, 5, 11, 16)]
            else:  # 240 tiles, 11 channels: 4 chunks of whole 16-tile blocks
                assert [s[2:] for s in spans] == [(0, 2, cpu_winograd.TB)] * 4
                assert spans[0][0] == 0 and spans[-1][1] == 240
                assert all(s[0] % cpu_winograd.TB == 0 for s in spans)
    finally:
        native.NativeCall.__init__ = init  # type: ignore[method-assign]
        pool.close()


# -- the same calls through the kernel built for other vector ISAs --------------------------


def _recorded(tactic: type[WinogradNative], spec: ConvSpec, ins: list, out: np.ndarray) -> list:
    """The native calls a one-thread bind makes, in the order they run."""
    calls: list[Any] = []
    init = native.NativeCall.__init__

    def record(self: Any, *args: Any, **kw: Any) -> None:
        init(self, *args, **kw)
        calls.append(self)

    native.NativeCall.__init__ = record  # type: ignore[method-assign]
    try:
        tactic(spec).bind(ins, [out], ScratchPool())
    finally:
        native.NativeCall.__init__ = init  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("build", list(isa_builds.X86_BUILDS))
def test_every_x86_vector_path_matches(build: str, tmp_path: Path) -> None:
    flags, needs = isa_builds.X86_BUILDS[build]
    isa_builds.need_features(needs)
    fn = isa_builds.build_kernels(tmp_path, ["conv_winograd.c"], flags).conv_winograd_f32
    fn.restype = None
    for k, case in enumerate(CASES):
        for act in (ACTS[k % len(ACTS)], ("silu", ())):
            spec, ins, want = _layer(case, act, ("none", "pre", "post")[k % 3], k)
            for tactic in (OneBlock, _blocked(32)):
                out = np.full(spec.out_shape, np.nan, np.float32)
                for call in _recorded(tactic, spec, ins, out):
                    fn(ctypes.byref(call.args))
                _check(out, want, f"{build} {tactic.__name__} {case} {act[0]}")


def test_aarch64_neon_path_matches(tmp_path: Path) -> None:
    """Cross-compiled for the Jetson's cores and replayed under qemu-user (the replay
    machinery of tests/engine/backends/cpu/aarch64): both sharing modes, blocks of 32."""
    from tests.engine.backends.cpu.aarch64 import replay

    exe = emulated.driver(tmp_path, ONLY)
    recs, wants = [], []
    for k, case in enumerate(CASES):
        if case[0][1] > 32:
            continue  # the wide case costs emulation time and adds no path
        act = ACTS[(2 * k + 1) % len(ACTS)]
        spec, ins, want = _layer(case, act, ("post", "none", "pre")[k % 3], k)
        for tactic in (OneBlock, _blocked(32)):
            out = np.full(spec.out_shape, np.nan, np.float32)
            with replay.recording(f"{tactic.__name__} {case}", [*ins, out], out) as rec:
                tactic(spec).bind(ins, [out], ScratchPool())()
            recs.append(rec)
            wants.append(want)
    outs = emulated.replayed(exe, tmp_path, recs)
    for rec, got, want in zip(recs, outs, wants, strict=True):
        _check(got, want, f"aarch64 {rec.name}")
