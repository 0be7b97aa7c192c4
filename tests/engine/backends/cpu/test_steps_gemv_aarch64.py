"""kernels/gemv.c (gemv, gemv_packed) as the Jetson's Arm cores run it: the native calls the host's
makes (tests/engine/backends/cpu/test_steps_dense.py) are recorded and replayed on aarch64
(-mcpu=cortex-a78ae) under qemu-user by the aarch64 driver, and the results compared with
the reference op's within the steps' float32 tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.steps import STEPS
from edge_infer.engine.ops.linalg import gemm
from tests.engine.backends.cpu.aarch64 import replay
from tests.engine.backends.cpu.aarch64.test_aarch64_kernels import compile_driver, emulate
from tests.engine.backends.cpu.test_steps_dense import PRODUCT_TOL, _close, _node

#: the kernel source the aarch64 replay driver links (the cases call nothing else)
ONLY = ("gemv.c",)

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

CASES = [  # (M, K, N, alpha, bias shape or None, workers, constant B: gemv_packed)
    (1, 1280, 1000, 1.0, (1000,), 2, True),  # MobileNetV2's classifier, two column ranges
    (3, 37, 45, 0.5, (3, 45), 1, True),  # K and N not multiples of the vector / row block
    (8, 64, 21, 1.0, None, 2, False),
    (2, 7, 3, -1.5, (), 1, True),
    (3, 37, 45, 0.5, (3, 45), 2, False),
]


def _cases() -> list[tuple[replay.Recording, np.ndarray]]:
    rng = np.random.default_rng(17)
    cases = []
    for m, k, n, alpha, bias, workers, packed in CASES:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((n, k), dtype=np.float32)
        c = None if bias is None else rng.standard_normal(bias, dtype=np.float32)
        attrs = {"alpha": alpha, "transB": 1}
        want = gemm(a, b, c, **attrs)
        out = np.full((m, n), np.nan, np.float32)
        node = _node("Gemm", [a, b, c], {1, 2} if packed else {2}, attrs)
        scratch = ScratchPool()
        scratch.workers = workers  # column ranges, run in order here
        name = f"gemv {m}x{k}x{n} alpha={alpha} bias={bias} packed={packed}"
        with replay.recording(name, [a, b] if c is None else [a, b, c], out) as rec:
            run = STEPS["Gemm"](node, [a, b, c], [out], scratch)
            assert run is not None
            run()
        _close(out, want, PRODUCT_TOL)
        kernel = "gemv_packed_f32" if packed else "gemv_f32"
        assert {call.name for call in rec.calls} == {kernel}, name
        cases.append((rec, want))
    return cases


def test_gemv_on_aarch64_matches_the_reference(tmp_path) -> None:
    exe = compile_driver(tmp_path, "cortex-a78ae", only=ONLY)
    cases = _cases()
    replay.write(tmp_path / "calls.bin", [rec for rec, _ in cases])
    emulate(exe, "replay", str(tmp_path / "calls.bin"), str(tmp_path / "out.bin"))
    regions = replay.read(tmp_path / "out.bin")
    first = 0
    for rec, want in cases:
        got = rec.output(regions[first : first + len(rec.regions)])
        first += len(rec.regions)
        _close(got, want, PRODUCT_TOL)
