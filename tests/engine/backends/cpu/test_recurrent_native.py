"""``recurrent_native`` (kernels/recurrent.c): an LSTM direction in one native call, against
the reference LSTM run in float64, on every vector path the kernel compiles to — this host's
(AVX-512 where it has it: 6-row tiles), AVX2 and plain x86-64 (3-row tiles, the generic
vector fallbacks of simd.h) built from the same source, and aarch64 NEON under qemu-user."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics.cpu_recurrent import RecurrentGemm, RecurrentNative
from edge_infer.engine.ops.recurrent import lstm
from edge_infer.engine.ops.recurrent_cells import cell_spec
from edge_infer.engine.tactics.recurrent import RecurrentSpec
from tests.engine.backends.cpu import isa_builds
from tests.engine.ops.test_recurrent import layer_inputs
from tests.sysdeps import need

#: float32 against the float64 reference: the kernel's exp/tanh polynomials (a few ulp) and
#: its summation order, carried through up to 32 steps
TOL = 2e-5

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler: no native path")


@dataclass(frozen=True)
class Case:
    steps: int
    batch: int
    inputs: int
    hidden: int
    direction: str = "forward"
    layout: int = 0
    lens: tuple[int, ...] | None = None
    initial: bool = False
    peepholes: bool = False
    clip: float | None = None
    input_forget: int = 0


# hidden sizes on and off the 8-unit groups; batch 1 (two groups a tile), 3, 5, 7, 8 and 13
# (row tiles of 3 to 5 rows: 7 = 4 + 3, 8 = 4 + 4, 13 = 5 + 5 + 3); projections of 5 to 63
# rows (tiles of 6 rows and a last one of 1, 2, 3, 5 rows); lengths with 0 and full rows; both
# layouts
CASES = [
    Case(5, 1, 4, 6),
    Case(5, 3, 4, 6, "reverse", initial=True),
    Case(6, 3, 7, 16, "bidirectional", initial=True, peepholes=True),
    Case(7, 3, 9, 17, "bidirectional", 1, (5, 2, 0), True, True),
    Case(6, 8, 10, 24, "bidirectional", 0, (6, 1, 3, 0, 6, 2, 5, 4), True, False, 2.0, 1),
    Case(9, 7, 5, 33, "forward", 1, None, True, True),
    Case(8, 1, 12, 40, "reverse", 0, (5,), True, False, 0.7),
    Case(32, 1, 64, 32, "bidirectional"),
    Case(5, 5, 6, 9, "forward", 1),
    Case(3, 13, 4, 8, "reverse"),
]


def _layer(case: Case, seed: int) -> tuple[RecurrentSpec, list, dict]:
    d = 2 if case.direction == "bidirectional" else 1
    ins = layer_inputs(
        "LSTM",
        steps=case.steps,
        batch=case.batch,
        inputs=case.inputs,
        hidden=case.hidden,
        directions=d,
        layout=case.layout,
        seed=seed,
        lens=None if case.lens is None else list(case.lens),
        initial=case.initial,
        peepholes=case.peepholes,
    )
    ins += [None] * (8 - len(ins))
    for a in ins[1:4] + ins[7:]:  # weights are constants, as in an engine
        if a is not None:
            a.flags.writeable = False
    attrs: dict = {"direction": case.direction, "layout": case.layout}
    if case.clip:
        attrs["clip"] = case.clip
    if case.input_forget:
        attrs["input_forget"] = case.input_forget
    cell = cell_spec("LSTM", hidden_size=case.hidden, R_shape=ins[2].shape, **attrs)
    return RecurrentSpec("LSTM", cell, tuple(ins[0].shape), 3, attrs), ins, attrs


def _outputs(case: Case) -> list[np.ndarray]:
    d, t, b, h = 2 if case.direction == "bidirectional" else 1, case.steps, case.batch, case.hidden
    y = (t, d, b, h) if case.layout == 0 else (b, t, d, h)
    s = (d, b, h) if case.layout == 0 else (b, d, h)
    return [
        np.full(y, np.nan, np.float32),
        np.full(s, np.nan, np.float32),
        np.full(s, np.nan, np.float32),
    ]


def _reference(ins: list, attrs: dict) -> tuple[np.ndarray, ...]:
    wide = [None if a is None or a.dtype.kind == "i" else a.astype(np.float64) for a in ins]
    wide[4] = ins[4]
    return lstm(*wide, **attrs)


def _check(got: list[np.ndarray], want: tuple[np.ndarray, ...], what: str) -> None:
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert not np.isnan(g).any(), f"{what}: output {k} not written everywhere"
        np.testing.assert_allclose(
            g, w, rtol=TOL, atol=TOL * max(1.0, float(np.abs(w).max())), err_msg=f"{what} {k}"
        )


@pytest.mark.parametrize("k", range(len(CASES)))
def test_matches_the_reference(k: int) -> None:
    case = CASES[k]
    spec, ins, attrs = _layer(case, k)
    assert RecurrentNative.applicable(spec)
    outs = _outputs(case)
    run = RecurrentNative(spec).bind(ins, outs, ScratchPool())
    want = _reference(ins, attrs)
    for _ in range(2):  # the state of one run must not leak into the next
        run()
        _check(outs, want, str(case))
        for o in outs:
            o.fill(np.nan)


def test_two_threads_and_strided_io_match() -> None:
    """Both directions on the pool's two threads; X, initial_h and Y as strided views (the
    tactic copies through buffers of its own)."""
    case = CASES[3]
    spec, ins, attrs = _layer(case, 3)
    wide_x = np.zeros((*ins[0].shape[:2], ins[0].shape[2] * 2), np.float32)
    wide_x[..., ::2] = ins[0]
    ins[0] = wide_x[..., ::2]
    outs = _outputs(case)
    big_y = np.full((*outs[0].shape[:-1], case.hidden + 3), np.nan, np.float32)
    outs[0] = big_y[..., 1 : case.hidden + 1]
    pool = WorkPool(2)
    run = RecurrentNative(spec).bind(ins, outs, ScratchPool(pool))
    run()
    _check(outs, _reference(ins, attrs), "two threads, strided")


def test_weights_computed_at_run_time_are_packed_every_run() -> None:
    case = CASES[2]
    spec, ins, attrs = _layer(case, 2)
    ins[1] = ins[1].copy()  # writeable: not a constant
    outs = _outputs(case)
    run = RecurrentNative(spec).bind(ins, outs, ScratchPool())
    run()
    _check(outs, _reference(ins, attrs), "run 1")
    ins[1] *= -0.5
    run()
    _check(outs, _reference(ins, attrs), "run 2, W changed")


def test_only_the_default_activations_and_lstm_are_taken() -> None:
    spec, ins, _ = _layer(CASES[0], 0)
    other = cell_spec(
        "LSTM", hidden_size=6, R_shape=ins[2].shape, activations=["HardSigmoid", "Tanh", "Tanh"]
    )
    assert RecurrentNative.applicable(spec)
    assert not RecurrentNative.applicable(RecurrentSpec("LSTM", other, spec.x_shape, 3, {}))
    gru = cell_spec("GRU", hidden_size=6, R_shape=(1, 18, 6))
    assert not RecurrentNative.applicable(RecurrentSpec("GRU", gru, spec.x_shape, 2, {}))
    assert RecurrentGemm.applicable(RecurrentSpec("GRU", gru, spec.x_shape, 2, {}))


# -- every vector path, from the same source ---------------------------------------------------


@pytest.mark.parametrize("build", list(isa_builds.X86_BUILDS))
def test_every_x86_vector_path_matches(build: str, tmp_path: Path) -> None:
    flags, needs = isa_builds.X86_BUILDS[build]
    isa_builds.need_features(needs)
    fn = isa_builds.build_kernels(tmp_path, ["recurrent.c", "args.c"], flags).lstm_seq_f32
    fn.restype = None
    for k, case in enumerate(CASES):
        spec, ins, attrs = _layer(case, k)
        outs = _outputs(case)
        calls, before, after = RecurrentNative(spec).calls(ins, outs, ScratchPool())
        assert not before and not after  # contiguous, constant: the kernel does it all
        for call in calls:
            fn(ctypes.byref(call.args))
        _check(outs, _reference(ins, attrs), f"{build} {case}")


def _recurrent_driver(out: Path) -> Path:
    """The replay driver (aarch64/driver.c) with recurrent.c as its only kernel, for the Jetson's
    cores (the full driver, every kernel included, is test_aarch64_kernels.py's)."""
    from tests.engine.backends.cpu.aarch64.test_aarch64_kernels import compile_driver

    return compile_driver(out, "cortex-a78ae", only=("recurrent.c",))


def recordings() -> list[tuple[Any, list[np.ndarray], tuple[np.ndarray, ...]]]:
    """Every case run on the host with its native calls recorded (aarch64/replay.py): the
    recording, the outputs (recording.out is Y) and the float64 reference outputs. The
    aarch64 kernel test can replay these beside its own cases."""
    from tests.engine.backends.cpu.aarch64 import replay

    out = []
    for k, case in enumerate(CASES):
        spec, ins, attrs = _layer(case, k)
        outs = _outputs(case)
        arrays = [a for a in ins if a is not None] + outs
        with replay.recording(f"recurrent_native {case}", arrays, outs[0]) as rec:
            RecurrentNative(spec).bind(ins, outs, ScratchPool())()
        out.append((rec, outs, _reference(ins, attrs)))
    return out


def test_aarch64_neon_path_matches(tmp_path: Path) -> None:
    """Cross-compiled for the Jetson's cores and replayed under qemu-user (the replay
    machinery of tests/engine/backends/cpu/aarch64)."""
    from tests.engine.backends.cpu.aarch64 import replay
    from tests.engine.backends.cpu.aarch64.test_aarch64_kernels import CROSS, QEMU, emulate

    need(CROSS, QEMU, "cc")
    exe = _recurrent_driver(tmp_path)
    cases = recordings()
    replay.write(tmp_path / "calls.bin", [rec for rec, _, _ in cases])
    emulate(exe, "replay", str(tmp_path / "calls.bin"), str(tmp_path / "out.bin"))
    regions = replay.read(tmp_path / "out.bin")
    first = 0
    for rec, outs, want in cases:
        mine = regions[first : first + len(rec.regions)]
        first += len(rec.regions)
        got = []
        for o in outs:
            rec.out = o
            got.append(rec.output(mine))
        rec.out = outs[0]
        _check(got, want, f"aarch64 {rec.name}")
