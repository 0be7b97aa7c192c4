"""The Transpose step's native kernel (kernels/transpose.c, bound by permute.py): rows copied
whole, tile transposes with partial tiles, strided (sliced) inputs, 1- to 8-byte elements,
the first axis split into thread parts; byte for byte against numpy, on the x86 builds and
on aarch64 under qemu-user."""

from __future__ import annotations

import ctypes
import itertools
from pathlib import Path

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native, permute
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.steps import STEPS
from edge_infer.engine.ir import Node
from tests.engine.backends.cpu import isa_builds
from tests.engine.backends.cpu.aarch64 import emulated, replay

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

ONLY = ("transpose.c",)

# input shape, perm
CASES = [
    ((4, 40, 19), (2, 0, 1)),  # CRNN's map_to_seq: a [C, T] -> [T, C] tile transpose per row
    ((5, 2, 3, 24), (0, 2, 1, 3)),  # CRNN's LSTM outputs: rows of H copied whole
    ((1, 6, 7, 33), (0, 2, 3, 1)),  # NCHW -> NHWC, size-1 axis dropped
    ((3, 17, 18), (1, 2, 0)),  # merged to a 2-D [17 * 18, 3] transpose
    ((2, 3, 4, 5, 3), (4, 2, 0, 3, 1)),  # no axis merges
    ((37, 41), (1, 0)),
    ((6, 5), (0, 1)),  # identity: one row
]
DTYPES = [np.float32, np.float16, np.int8, np.int64]


def _input(shape: tuple, dtype: type, seed: int) -> np.ndarray:
    """A strided view (every other element of the last axis of a bigger array)."""
    rng = np.random.default_rng(seed)
    big = (rng.standard_normal((*shape[:-1], 2 * shape[-1])) * 50).astype(dtype)
    return big[..., ::2]


def test_axes_merge_where_they_stay_adjacent() -> None:
    merged = permute.merged_axes
    assert merged([16, 2, 8, 128], [2048, 1024, 128, 1]) == ([32768], [1])  # contiguous
    assert merged([16, 8, 2, 128], [2048, 128, 1024, 1]) == ([16, 8, 2, 128], [2048, 128, 1024, 1])
    assert merged([16, 8, 256], [1, 4096, 16]) == ([16, 2048], [1, 16])  # CRNN's map_to_seq
    assert merged([3, 1, 4], [1, 5, 3]) == ([3, 4], [1, 3])
    assert merged([1, 1], [8, 8]) == ([1], [1])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_step_matches_numpy(case: tuple, dtype: type, monkeypatch: pytest.MonkeyPatch) -> None:
    shape, perm = case
    monkeypatch.setattr(permute, "SPLIT", 256)  # small cases in thread parts too
    x = _input(shape, dtype, len(shape))
    want = np.transpose(x, perm).copy()
    out = np.zeros(want.shape, dtype)
    scratch = ScratchPool()
    scratch.workers = 2  # first-axis parts (run one after another here)
    with replay.recording(str(case), [x], out) as rec:
        run = STEPS["Transpose"](
            Node("Transpose", "t", "", {"perm": list(perm)}), [x], [out], scratch
        )
        run()
    assert out.tobytes() == want.tobytes()
    assert {c.name for c in rec.calls} == {"transpose_f32"}
    src = np.transpose(x, perm)
    first = permute.merged_axes(src.shape, [s // x.itemsize for s in src.strides])[0][0]
    bounds = [(c.args.r0, c.args.r1) for c in rec.calls]  # the first axis in parts
    parts = min(4, max(1, out.nbytes // 128), first)  # 2 workers x 2, SPLIT / 2 bytes each
    assert len(bounds) == parts and bounds[0][0] == 0 and bounds[-1][1] == first
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))


def test_an_output_overlapping_the_input_keeps_numpy() -> None:
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    run = permute.bind_transpose(x, x, (1, 0))
    assert run is None


def _calls() -> list[tuple[replay.Recording, np.ndarray, np.ndarray]]:
    recs = []
    for k, (shape, perm) in enumerate(CASES):
        for dtype in DTYPES:
            x = _input(shape, dtype, k)
            out = np.zeros(np.transpose(x, perm).shape, dtype)
            with replay.recording(f"{shape} {perm} {np.dtype(dtype).name}", [x], out) as rec:
                run = permute.bind_transpose(x, out, perm, workers=2)
                assert run is not None
                run()
            recs.append((rec, out, np.transpose(x, perm).copy()))
            out.fill(0)
    return recs


@pytest.mark.parametrize("build", list(isa_builds.X86_BUILDS))
def test_every_x86_build_copies_the_same_bytes(build: str, tmp_path: Path) -> None:
    flags, needs = isa_builds.X86_BUILDS[build]
    isa_builds.need_features(needs)
    fn = isa_builds.build_kernels(tmp_path, ["transpose.c"], flags).transpose_f32
    fn.restype = None
    for rec, out, want in _calls():
        for call in rec.calls:
            fn(ctypes.byref(call.args))
        assert out.tobytes() == want.tobytes(), f"{build} {rec.name}"


def test_aarch64_copies_the_same_bytes(tmp_path: Path) -> None:
    """Cross-compiled for the Jetson's cores and replayed under qemu-user."""
    exe = emulated.driver(tmp_path, ONLY)
    cases = _calls()
    outs = emulated.replayed(exe, tmp_path, [rec for rec, _, _ in cases])
    for (rec, _, want), got in zip(cases, outs, strict=True):
        assert got.tobytes() == want.tobytes(), f"aarch64 {rec.name}"
