"""The INT8 kernels of qdepthwise_native and the INT8 steps (conv_int8_dw.c, reformat.c,
qgemm_packed.c) as the Jetson's Arm cores run them: the calls the host's tactic and steps
make are recorded and replayed on aarch64 (-mcpu=cortex-a78ae) under qemu-user by the
aarch64 driver (tests/engine/backends/cpu/aarch64), and the results compared with the
reference op's, bit for bit (the activations here are the exact ones)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.steps import STEPS
from edge_infer.engine.backends.cpu.tactics.cpu_qdepthwise import QDepthwiseNative
from edge_infer.engine.ir import Node
from edge_infer.engine.ops.quantize import qconv, reformat
from tests.engine.backends.cpu.aarch64 import replay
from tests.engine.backends.cpu.aarch64.test_aarch64_kernels import compile_driver, emulate
from tests.engine.backends.cpu.test_int8_layers import (
    CONVERSIONS,
    POOLS,
    QGEMMS,
    STORAGE,
    _source,
    pool_case,
    qgemm_case,
)
from tests.engine.backends.cpu.test_qdepthwise_native import CONVS, make_case

#: the kernel sources the aarch64 replay driver links (the cases call nothing else)
ONLY = ("conv_int8_dw.c", "reformat.c", "qgemm_packed.c")

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

EXACT_ACTS = [("", ()), ("relu", ()), ("leaky_relu", (0.1,)), ("clip", (0.0, 6.0))]


def _dw_cases() -> list[tuple[replay.Recording, np.ndarray]]:
    cases = []
    mp = pytest.MonkeyPatch()
    try:
        for k, conv in enumerate(CONVS):
            for grouped in (False, True):
                mp.setattr(QDepthwiseNative, "_grouped", lambda self, g=grouped: g)
                i = 2 * k + grouped
                act = EXACT_ACTS[i % len(EXACT_ACTS)]
                residual = ("none", "pre", "post")[i % 3]
                out_precision = ("int8", "fp32", "fp16")[(i // 3) % 3]
                z_dtype = (np.int8, np.float32, np.float16)[k % 3]
                x_dtype = np.float32 if k % 4 == 3 else np.int8
                spec, inputs = make_case(conv, act, residual, z_dtype, out_precision, x_dtype, i)
                want = qconv(*inputs, **spec.attrs())
                out = np.full(spec.out_shape, 99, want.dtype)
                name = f"qdw {conv} grouped={grouped} {act[0] or '-'} {residual} {out_precision}"
                arrays = [a for a in inputs if a is not None]
                with replay.recording(name, arrays, out) as rec:
                    QDepthwiseNative(spec).bind(inputs, [out], ScratchPool())()
                np.testing.assert_array_equal(out, want, err_msg=f"host: {name}")
                cases.append((rec, want))
    finally:
        mp.undo()
    return cases


def _step_cases() -> list[tuple[replay.Recording, np.ndarray]]:
    rng = np.random.default_rng(7)
    cases = []
    attrs = {"x_scale": 0.0371, "y_scale": 0.0523}
    for src, to in CONVERSIONS:
        x = _source(src, 203, 0.0523, rng)
        with np.errstate(over="ignore"):
            want = reformat(x, to=to, **attrs)
        out = np.full(x.shape, 77, STORAGE[to])
        node = Node("Reformat", "r", "edge_infer", {"to": to, **attrs})
        with replay.recording(f"reformat {src}->{to}", [x], out) as rec:
            STEPS["edge_infer::Reformat"](node, [x], [out], ScratchPool())()  # type: ignore[misc]
        cases.append((rec, want))
    x = rng.integers(-128, 128, (2, 3, 5, 7)).astype(np.int8)
    out = np.zeros((2, 3, 10, 14), np.int8)
    node = Node("Resize", "up", "", {"mode": "nearest", "nearest_mode": "floor",
                                     "coordinate_transformation_mode": "asymmetric"})  # fmt: skip
    with replay.recording("resize int8 x2", [x], out) as rec:
        STEPS["Resize"](node, [x, None, np.array([1, 1, 2, 2], np.float32)], [out], ScratchPool())()  # type: ignore[misc]
    cases.append((rec, x.repeat(2, axis=2).repeat(2, axis=3)))
    for k, case in enumerate(POOLS[1:]):  # POOLS[0], stride-1 'same', runs in numpy
        node, x, out, want = pool_case(case, k)
        with replay.recording(f"maxpool int8 {case}", [x], out) as rec:
            STEPS["MaxPool"](node, [x], [out], ScratchPool())()  # type: ignore[misc]
        cases.append((rec, want))
    for k, case in enumerate(QGEMMS):
        ins, attrs, want = qgemm_case(case, k)
        out = np.full(want.shape, 55, want.dtype)
        node = Node("QGemm", "fc", "edge_infer", attrs)
        args = [a for a in ins if a is not None]
        with replay.recording(f"qgemm {case}", args, out) as rec:
            STEPS["edge_infer::QGemm"](node, args, [out], ScratchPool())()  # type: ignore[misc]
        cases.append((rec, want))
    return cases


def test_int8_kernels_on_aarch64_equal_the_reference(tmp_path) -> None:
    exe = compile_driver(tmp_path, "cortex-a78ae", only=ONLY)
    cases = [*_dw_cases(), *_step_cases()]
    names = {c.name for rec, _ in cases for c in rec.calls}
    # the QGemm step binds qgemm_packed_s8_f32
    assert {"conv_int8_dw_f32", "reformat_f32", "upsample_nearest_s8_f32",
            "qgemm_packed_s8_f32", "maxpool_s8_f32"} <= names  # fmt: skip
    replay.write(tmp_path / "calls.bin", [rec for rec, _ in cases])
    emulate(exe, "replay", str(tmp_path / "calls.bin"), str(tmp_path / "out.bin"))
    regions = replay.read(tmp_path / "out.bin")
    bad, first = [], 0
    for rec, want in cases:
        got = rec.output(regions[first : first + len(rec.regions)])
        first += len(rec.regions)
        if not np.array_equal(got, want):
            bad.append(f"{rec.name}: {int((got != want).sum())} of {want.size} differ")
    assert bad == []
