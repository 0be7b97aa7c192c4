"""The MaxPool step's float kernel (kernels/maxpool.c, bound by pooling.py): float32 and
float16 planes, channel slices in and out, planes split into ranges, bit for bit against the
reference MaxPool; the same bound calls through every x86 vector path and, under qemu-user,
on aarch64. Geometries: ResNet's stem (stride 2: the even / odd lanes), stride 1 'same'
(SPPF), CRNN's 2 x 2 and 2 x 1, ceil_mode, dilations on both axes, strides 3 and 4 (output by
output along the buffer), more rows than one pass combines, a row wider than the buffer,
the widest left pad; odd sizes so every row has a vector tail."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native, pooling
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.steps import STEPS
from edge_infer.engine.ir import Node
from edge_infer.engine.ops import get_registry
from tests.engine.backends.cpu import isa_builds
from tests.engine.backends.cpu.aarch64 import emulated, replay

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

#: the kernel source the qemu replay driver links
ONLY = ("maxpool.c",)

# (n, c, h, w), kernel, strides, pads (t, l, b, r), dilations, ceil_mode
POOLS = [
    ((1, 3, 20, 23), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 0),  # ResNet's stem
    ((2, 2, 7, 151), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 0),  # 76 outputs a row
    ((1, 4, 10, 11), (5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 0),  # SPPF
    ((2, 3, 8, 34), (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), 0),  # CRNN's pools
    ((2, 3, 8, 17), (2, 1), (2, 1), (0, 0, 0, 0), (1, 1), 0),
    ((1, 2, 13, 17), (3, 3), (2, 2), (0, 0, 0, 0), (1, 1), 1),  # ceil_mode
    ((1, 2, 13, 17), (3, 2), (1, 3), (1, 0, 1, 1), (2, 1), 0),
    ((1, 2, 19, 29), (3, 3), (2, 2), (2, 2, 2, 2), (2, 3), 0),  # stride 2, dilated columns
    ((1, 2, 11, 45), (4, 4), (4, 4), (0, 0, 0, 0), (1, 1), 1),
    ((1, 1, 40, 37), (20, 3), (1, 3), (0, 1, 0, 1), (1, 1), 0),  # 20 rows: two passes
    ((1, 1, 3, 4500), (2, 3), (1, 2), (0, 1, 0, 1), (1, 1), 0),  # wider than the buffer
    ((1, 2, 4, 9), (1, 8), (1, 1), (0, 7, 0, 0), (1, 1), 0),
]
DTYPES = [np.float32, np.float16]


def _want(x: np.ndarray, case: tuple) -> np.ndarray:
    _, k, s, p, d, ceil = case
    attrs = dict(kernel_shape=list(k), strides=list(s), pads=list(p), dilations=list(d))
    y = get_registry().resolve("", "MaxPool", 17).kernel(x, **attrs, ceil_mode=ceil)
    return np.asarray(y[0] if isinstance(y, tuple | list) else y)


def _node(case: tuple) -> Node:
    _, k, s, p, d, ceil = case
    attrs = dict(kernel_shape=list(k), strides=list(s), pads=list(p), dilations=list(d))
    return Node("MaxPool", "mp", "", {**attrs, "ceil_mode": ceil})


def _data(case: tuple, dtype: type, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x: planes strided within a bigger buffer; out: a channel slice of a buffer of 7s; the
    reference's output."""
    (n, c, h, w) = case[0]
    big = np.random.default_rng(seed).standard_normal((n, c + 2, h, w)).astype(dtype)
    x = big[:, 1 : c + 1]
    want = _want(np.ascontiguousarray(x), case)
    out = np.full((n, c + 3, *want.shape[2:]), 7, dtype)[:, 2 : c + 2]
    return x, out, want


def _same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    bits = np.uint16 if got.dtype == np.float16 else np.uint32
    assert np.array_equal(got.view(bits), want.view(bits)), what


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("case", POOLS, ids=str)
def test_the_step_matches_the_reference(case: tuple, dtype: type) -> None:
    x, out, want = _data(case, dtype, 0)
    scratch = ScratchPool()
    scratch.workers = 2  # plane ranges (run one after another here)
    run = STEPS["MaxPool"](_node(case), [x], [out], scratch)
    assert run is not None
    run()
    _same(out, want, "output")
    whole = out.base if out.base is not None else out
    assert (whole[:, :2] == 7).all() and (whole[:, -1] == 7).all()  # the slice only


def test_planes_are_split_between_threads() -> None:
    x = np.zeros((1, 64, 112, 112), np.float32)
    out = np.zeros((1, 64, 56, 56), np.float32)
    window = pooling.Window.of(dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    assert window is not None
    made: list[native.NativeCall] = []
    init = native.NativeCall.__init__

    def spy(self: native.NativeCall, *args: object) -> None:
        init(self, *args)  # type: ignore[arg-type]
        made.append(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(native.NativeCall, "__init__", spy)
        pooling.bind_maxpool(x, out, window, workers=2)
    ranges = [(c.args.p0, c.args.p1) for c in made]
    assert ranges == [(0, 16), (16, 32), (32, 48), (48, 64)]


@pytest.mark.parametrize("workers", [1, 2])
def test_int8_planes_go_in_channel_ranges(workers: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """int8 storage (maxpool_s8, kernels/reformat.c) split by channels: each range from its
    own base, the N x C strides kept; CRNN's first pool, channel slices in and out."""
    monkeypatch.setattr(pooling, "SPLIT", 1024)  # a small case in two parts
    case = ((2, 9, 8, 66), (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), 0)
    big = np.random.default_rng(5).integers(-128, 128, (2, 11, 8, 66)).astype(np.int8)
    x = big[:, 1:10]
    want = _want(np.ascontiguousarray(x), case)
    out = np.full((2, 12, 4, 33), 7, np.int8)[:, 2:11]
    scratch = ScratchPool()
    scratch.workers = workers
    window = pooling.Window.of(_node(case).attrs)
    assert window is not None
    with replay.recording("int8", [x], out) as rec:
        run = STEPS["MaxPool"](_node(case), [x], [out], scratch)
        assert run is not None
        run()
    np.testing.assert_array_equal(out, want)
    assert (out.base[:, :2] == 7).all() and (out.base[:, 11:] == 7).all()
    assert [c.args.c for c in rec.calls] == ([9] if workers == 1 else [2, 2, 2, 3])


def test_a_nan_is_never_taken() -> None:
    """``v > m ? v : m`` from -inf, as the scalar loop before: a NaN never wins and a window
    of NaN only gives -inf (the reference propagates NaN; onnxruntime's MLAS neither)."""
    case = ((1, 2, 9, 21), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 0)
    x, out, _ = _data(case, np.float32, 1)
    x[0, 0, :3, :3] = np.nan
    x[0, 1, 4] = np.nan
    run = pooling.bind_maxpool(x, out, pooling.Window.of(_node(case).attrs))  # type: ignore[arg-type]
    assert run is not None
    run()
    want = _want(np.where(np.isnan(x), -np.inf, x).astype(np.float32), case)
    _same(out, want, "NaN skipped")
    assert out[0, 0, 0, 0] == -np.inf


def _calls(dtype: type) -> list[tuple[replay.Recording, np.ndarray, np.ndarray]]:
    """Every case bound by the step and run here, its calls recorded; the output refilled."""
    recs = []
    for k, case in enumerate(POOLS):
        x, out, want = _data(case, dtype, k)
        x.flat[::7] = np.where(np.arange(x.size)[::7] % 2, 0.0, -0.0)  # ties of +0 / -0
        want = _want(np.ascontiguousarray(x), case)
        with replay.recording(f"{case} {dtype.__name__}", [x], out) as rec:
            run = pooling.bind_maxpool(x, out, pooling.Window.of(_node(case).attrs))  # type: ignore[arg-type]
            assert run is not None
            run()
        assert {c.name for c in rec.calls} == {"maxpool_planes_f32"}
        np.testing.assert_array_equal(out, want)  # values (zeros' signs: the host's bits)
        recs.append((rec, out, out.copy()))
        out.fill(7)
    return recs


@pytest.mark.parametrize("build", list(isa_builds.X86_BUILDS))
def test_every_x86_vector_path_gives_the_same_bits(build: str, tmp_path: Path) -> None:
    flags, needs = isa_builds.X86_BUILDS[build]
    isa_builds.need_features(needs)
    fn = isa_builds.build_kernels(tmp_path, ["maxpool.c"], flags).maxpool_planes_f32
    fn.restype = None
    for dtype in DTYPES:
        for rec, out, host in _calls(dtype):
            for call in rec.calls:
                fn(ctypes.byref(call.args))
            _same(out, host, f"{build} {rec.name}")


def test_aarch64_neon_path_gives_the_same_bits(tmp_path: Path) -> None:
    """Cross-compiled for the Jetson's cores and replayed under qemu-user."""
    exe = emulated.driver(tmp_path, ONLY)
    cases = [c for dtype in DTYPES for c in _calls(dtype)]
    outs = emulated.replayed(exe, tmp_path, [rec for rec, _, _ in cases])
    for (rec, _, host), got in zip(cases, outs, strict=True):
        _same(got, host, f"aarch64 {rec.name}")
