"""depthwise_native (kernels/conv_depthwise.c) against the reference Conv, on each of its
paths (row by row, channel groups, vectors along rows on AVX-512 builds): every row-slot path
(stride 1 and 2 column phases, larger strides, dilations, pads wider than the kernel's reach,
rows above and below the input), output widths that end in partial vectors (1, 3, 5, 7, 8, 14
columns, two rows a vector up to 8) or whole ones (16, 112), the fused epilogue,
channel-slice views, batches, thread splits, and the kernel built for each x86 vector
path."""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics import cpu_depthwise
from edge_infer.engine.backends.cpu.tactics.cpu_depthwise import DepthwiseNative
from edge_infer.engine.ops import get_registry
from edge_infer.engine.tactics.base import ConvSpec
from tests.engine.backends.cpu import isa_builds
from tests.engine.backends.cpu.tactics.test_cpu_conv import expected

CONV = get_registry().resolve("", "Conv", 17).kernel

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler on this machine")

# x shape, kernel, strides, pads (t, l, b, r), dilations
CASES = [
    ((1, 4, 1, 1), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((1, 5, 3, 5), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((2, 9, 7, 7), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((1, 24, 14, 14), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((1, 24, 14, 14), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    ((1, 6, 112, 112), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((1, 6, 112, 112), (3, 3), (2, 2), (0, 0, 1, 1), (1, 1)),
    ((3, 7, 15, 17), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    ((1, 8, 16, 33), (3, 3), (1, 1), (0, 0, 0, 0), (1, 1)),
    ((1, 5, 13, 11), (3, 3), (1, 1), (2, 3, 0, 1), (1, 1)),
    ((1, 6, 14, 14), (5, 5), (1, 1), (2, 2, 2, 2), (1, 1)),
    ((1, 6, 15, 15), (5, 5), (2, 2), (2, 2, 2, 2), (1, 1)),
    ((1, 4, 13, 13), (3, 3), (1, 1), (2, 2, 2, 2), (2, 2)),
    ((1, 4, 17, 19), (3, 5), (3, 2), (1, 2, 1, 2), (2, 1)),
    ((2, 3, 9, 9), (7, 7), (1, 1), (3, 3, 3, 3), (1, 1)),
    # vectors along rows: two rows a vector (wo <= 8) at strides 1 and 2, odd pads, wo = 8
    # at stride 2 (one row a vector), wide rows ending in partial vectors
    ((1, 3, 9, 9), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    ((1, 4, 8, 8), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((1, 3, 6, 6), (3, 3), (1, 1), (0, 2, 1, 0), (1, 1)),
    ((1, 3, 11, 13), (3, 3), (2, 2), (2, 2, 2, 2), (1, 1)),
    ((2, 3, 16, 16), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    ((1, 3, 10, 37), (3, 3), (2, 2), (0, 1, 1, 0), (1, 1)),
    ((1, 2, 5, 50), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    # stride 2, left pad 1 (loads at the vectors' own columns): three vectors a row, the last
    # partial, the input's last column read by it
    ((1, 2, 5, 70), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    # AVX2 builds' rows at stride 2 (outputs 48 to 64 wide): 50 wide, the last vector partial
    ((1, 2, 5, 100), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
]
ACTS = [("", ()), ("relu", ()), ("clip", (0.0, 6.0)), ("silu", ()), ("mish", ())]


def _data(case: tuple, seed: int = 0) -> tuple[np.ndarray, ...]:
    xs, k, strides, pads, dil = case
    rng = np.random.default_rng(seed)
    x = (3 * rng.standard_normal(xs)).astype(np.float32)
    w = rng.standard_normal((xs[1], 1, *k)).astype(np.float32)
    b = rng.standard_normal(xs[1]).astype(np.float32)
    conv = CONV(x, w, b, strides=list(strides), pads=list(pads), dilations=list(dil), group=xs[1])
    return x, w, b, conv


def _spec(case: tuple, conv: np.ndarray, w, b, act=("", ()), residual="none") -> ConvSpec:
    xs, _k, strides, pads, dil = case
    return ConvSpec(xs, conv.shape, w, b, strides, pads, dil, xs[1], act[0], act[1], residual)


def _close(got: np.ndarray, want: np.ndarray) -> None:
    # the tolerance of the other native conv tests (test_native.py)
    scale = max(float(np.abs(want).max()), 1.0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5 * scale)


@pytest.fixture(params=["rows", "grouped", "wide"], autouse=True)
def path(request, monkeypatch) -> str:
    """Every test runs each kernel path on every case: row by row, channel groups, and
    vectors along rows (3 x 3 at stride 1 or 2 on AVX-512 builds; on AVX2 builds 3 x 3 with
    outputs 24 (stride 2: 48) to 64 wide, e.g. 31, 50, 56 here; elsewhere, and for other
    kernels, its fallback: row by row here)."""
    grouped = request.param == "grouped"
    monkeypatch.setattr(cpu_depthwise, "GROUPED_MAX_WIDTH", 1 << 20 if grouped else 0)
    monkeypatch.setattr(cpu_depthwise, "GROUPED_STRIDED", grouped)
    monkeypatch.setattr(cpu_depthwise, "DW_WIDE", request.param == "wide")
    return request.param


def _mode(path: str, spec: ConvSpec) -> int:
    """The kernel's path field a bind on ``path`` sets (cpu_depthwise: _DW_GROUPS, _DW_WIDE)."""
    if path == "wide":
        return 2 if spec.strides[1] in (1, 2) else 0
    return int(path == "grouped")


def test_native_kernels_are_here() -> None:
    assert native.available()


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"x{c[0]}k{c[1]}s{c[2]}p{c[3]}d{c[4]}")
@pytest.mark.parametrize("act", ACTS, ids=lambda a: a[0] or "none")
@pytest.mark.parametrize("residual", ["none", "pre", "post"])
def test_matches_the_reference(case, act, residual, path) -> None:
    x, w, b, conv = _data(case)
    z = np.random.default_rng(1).standard_normal(conv.shape).astype(np.float32)
    spec = _spec(case, conv, w, b, act, residual)
    assert DepthwiseNative.applicable(spec)
    out = np.full(conv.shape, np.nan, np.float32)
    made = []
    record = native.NativeCall.__init__

    def recording(self, name, fields, keep):
        made.append(fields["grouped"])
        record(self, name, fields, keep)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(native.NativeCall, "__init__", recording)
        run = DepthwiseNative(spec).bind(
            [x, w, b] + ([z] if residual != "none" else []), [out], ScratchPool()
        )
    assert set(made) == {_mode(path, spec)}
    run()
    _close(out, expected(conv, z, act[0], act[1], residual))
    out[:] = np.nan
    run()  # the row ring (and its zero slot) or group buffer is reused
    _close(out, expected(conv, z, act[0], act[1], residual))


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("case", [CASES[2], CASES[4], CASES[7]], ids=["7x7", "14s2", "batch3"])
def test_chunks_on_threads(case, workers) -> None:
    """Channel ranges (and images) on several threads, each with its own row ring."""
    x, w, b, conv = _data(case, seed=4)
    spec = _spec(case, conv, w, b, ("clip", (0.0, 6.0)))
    pool = WorkPool(workers)
    try:
        out = np.full(conv.shape, np.nan, np.float32)
        run = DepthwiseNative(spec).bind([x, w, b], [out], ScratchPool(pool))
        run()
        run()
    finally:
        pool.close()
    _close(out, np.clip(conv, 0.0, 6.0))


class _DirtyScratch(ScratchPool):
    """Private buffers that hold another layer's leftovers (NaN), not zeros."""

    def __call__(self, shape: tuple[int, ...], dtype: Any, role: str | None) -> np.ndarray:
        array = super().__call__(shape, dtype, role)
        if role is None:
            array.fill(np.nan)
        return array


@pytest.mark.parametrize(
    "case", [CASES[4], CASES[5], CASES[6], CASES[7]], ids=lambda c: f"x{c[0]}s{c[2]}p{c[3]}"
)
def test_the_kernel_zeroes_what_it_reads_of_its_buffer(case) -> None:
    """The kernel's buffer (``rows``) is not zeroed by the tactic: each path zeroes what it
    reads there (the vectors along rows on AVX2 builds: from the input only the zero row
    above and below it, the plane's copy its zero columns and rows too)."""
    x, w, b, conv = _data(case, seed=6)
    spec = _spec(case, conv, w, b, ("clip", (0.0, 6.0)))
    out = np.full(conv.shape, np.nan, np.float32)
    DepthwiseNative(spec).bind([x, w, b], [out], _DirtyScratch())()
    _close(out, np.clip(conv, 0.0, 6.0))


def test_without_bias() -> None:
    case = CASES[3]
    x, w, _, _ = _data(case)
    conv = CONV(x, w, None, strides=[1, 1], pads=[1, 1, 1, 1], group=case[0][1])
    out = np.full(conv.shape, np.nan, np.float32)
    DepthwiseNative(_spec(case, conv, w, None)).bind([x, w, None], [out], ScratchPool())()
    _close(out, conv)


@pytest.mark.parametrize("case", [CASES[2], CASES[4], CASES[9]], ids=["7x7", "14s2", "pads"])
def test_channel_slice_views(case) -> None:
    """Concat elimination hands convs channel slices of bigger buffers: the input (with
    rows that are not unit-stride too), the output and the residual; nothing outside the
    output's slice is written."""
    _, w, b, _ = _data(case, seed=8)
    n, c, h, wd = case[0]
    rng = np.random.default_rng(9)
    xbig = rng.standard_normal((n, c + 3, h, 2 * wd)).astype(np.float32)
    for x in (xbig[:, 2 : 2 + c, :, :wd], xbig[:, 1 : 1 + c, :, ::2]):
        _, _, strides, pads, dil = case
        conv = CONV(
            np.ascontiguousarray(x),
            w,
            b,
            strides=list(strides),
            pads=list(pads),
            dilations=list(dil),
            group=c,
        )
        _, _, ho, wo = conv.shape
        zbig = rng.standard_normal((n, c + 5, ho, wo)).astype(np.float32)
        z = zbig[:, 3 : 3 + c]
        spec = _spec(case, conv, w, b, ("clip", (0.0, 6.0)), "post")
        big = np.full((n, c + 4, ho, wo), -7.0, np.float32)
        view = big[:, 1 : 1 + c]
        DepthwiseNative(spec).bind([x, w, b, z], [view], ScratchPool())()
        _close(view, expected(conv, np.ascontiguousarray(z), "clip", (0.0, 6.0), "post"))
        assert (big[:, :1] == -7).all() and (big[:, 1 + c :] == -7).all()


def _recorded(spec: ConvSpec, ins: list[Any], out: np.ndarray) -> list[native.NativeCall]:
    """The native calls a one-thread bind makes."""
    calls: list[native.NativeCall] = []
    init = native.NativeCall.__init__

    def record(self: Any, *args: Any, **kw: Any) -> None:
        init(self, *args, **kw)
        calls.append(self)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(native.NativeCall, "__init__", record)
        DepthwiseNative(spec).bind(ins, [out], ScratchPool())
    return calls


@pytest.mark.parametrize("build", list(isa_builds.X86_BUILDS))
def test_every_x86_vector_path_matches(build: str, path: str, tmp_path: Path) -> None:
    """The same bound calls through the kernel built for AVX-512, AVX2 and plain x86-64 (the
    path field's vectors along rows: AVX-512 only, the fallback elsewhere)."""
    flags, needs = isa_builds.X86_BUILDS[build]
    isa_builds.need_features(needs)
    fn = isa_builds.build_kernels(tmp_path, ["conv_depthwise.c"], flags)
    fn = fn.conv_depthwise_f32
    fn.restype = None
    for k, case in enumerate(CASES):
        act = ACTS[k % 4]  # the fused ones (mish runs in the Python epilogue)
        residual = ("none", "pre", "post")[k % 3]
        x, w, b, conv = _data(case, seed=k)
        z = np.random.default_rng(k).standard_normal(conv.shape).astype(np.float32)
        spec = _spec(case, conv, w, b, act, residual)
        out = np.full(conv.shape, np.nan, np.float32)
        ins = [x, w, b] + ([z] if residual != "none" else [])
        for call in _recorded(spec, ins, out):
            assert call.args.grouped == _mode(path, spec)
            fn(ctypes.byref(call.args))
        _close(out, expected(conv, z, act[0], act[1], residual))


@pytest.mark.parametrize(
    "case",
    [
        ((2, 5, 9, 9), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
        ((1, 4, 14, 14), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
        ((1, 3, 17, 31), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
        ((1, 2, 6, 50), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
        ((1, 3, 7, 7), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
        ((1, 3, 3, 3), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
        ((1, 3, 14, 14), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    ],
    ids=["9", "14", "16s2", "50", "7pairs", "3pairs", "7pairs_s2"],
)
@pytest.mark.parametrize("act", ACTS[:3], ids=lambda a: a[0] or "none")
def test_whole_vector_stores_stay_in_the_slice(case, act) -> None:
    """Without a residual the vectors along rows store whole vectors, a row's last one
    spilling into the rows stored after it (conv_depthwise.c: dw_wide3_pass): into a
    channel slice of a bigger buffer, every output right and nothing past a channel's plane
    written (the neighbouring channels, the planes outside the slice)."""
    x, w, b, conv = _data(case, seed=11)
    n, c, ho, wo = conv.shape
    spec = _spec(case, conv, w, b, act)
    big = np.full((n, c + 2, ho, wo), -7.0, np.float32)
    view = big[:, 1 : 1 + c]
    for _ in range(2):
        DepthwiseNative(spec).bind([x, w, b], [view], ScratchPool())()
        _close(view, expected(conv, None, act[0], act[1], "none"))
        assert (big[:, :1] == -7).all() and (big[:, 1 + c :] == -7).all()
        view[:] = np.nan


def test_images_go_last_to_first() -> None:
    """The batch's images in reverse (REVERSE_IMAGES: the layer before leaves its last images
    in cache): the bound calls read the last image first, and the output is the same."""
    case = CASES[7]  # batch 3
    x, w, b, conv = _data(case, seed=5)
    spec = _spec(case, conv, w, b)
    firsts = []
    record = native.NativeCall.__init__

    def recording(self, name, fields, keep):
        firsts.append(fields["x"])
        record(self, name, fields, keep)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(native.NativeCall, "__init__", recording)
        out = np.full(conv.shape, np.nan, np.float32)
        DepthwiseNative(spec).bind([x, w, b], [out], ScratchPool())()
    image = x[0].nbytes
    assert [(a - x.ctypes.data) // image for a in firsts][:: len(firsts) // 3] == [2, 1, 0]
    _close(out, conv)
