"""chain_native (kernels/conv_chain.c): an inverted-residual chain in one pass against the
members' reference ops composed in float64: with and without the expand, depthwise stride 1
and 2, every residual mode, several activations, widths and heights that are not multiples
of the vector or the register tile, batches 1 and 3, one and two threads, strips of one and
of several rows (the ring of expanded rows reused across strips), input and output views
that are not plain planes, the kernel built for the other x86 vector paths, and replayed on
aarch64 under qemu-user."""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS, cpu_chain
from edge_infer.engine.backends.cpu.tactics.chain_spec import ChainSpec
from edge_infer.engine.backends.cpu.tactics.cpu_chain import ChainNative
from edge_infer.engine.ops.fused import fused_conv
from edge_infer.engine.tactics.base import ConvSpec
from tests.engine.backends.cpu import isa_builds
from tests.engine.backends.cpu.aarch64 import emulated, replay

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler on this machine")

F32 = np.float32
NONE, RELU, RELU6 = ("", ()), ("relu", ()), ("clip", (0.0, 6.0))
#: (x shape, expansion (1: no expand), cout, depthwise stride, member activations, residual)
CASES = [
    ((1, 16, 13, 11), 1, 8, 1, (NONE, RELU6, NONE), "none"),  # features.1, reduced
    ((3, 8, 9, 17), 6, 8, 1, (RELU6, RELU6, NONE), "pre"),  # expand + s1 + residual
    ((1, 8, 15, 13), 6, 12, 2, (RELU, RELU, NONE), "none"),  # expand + s2, odd sizes
    ((2, 5, 7, 7), 3, 5, 1, (("silu", ()), NONE, RELU), "post"),
    ((1, 5, 8, 9), 3, 7, 2, (NONE, ("clip", (-0.5, 0.7)), NONE), "none"),
    ((1, 8, 6, 37), 2, 9, 1, (RELU6, RELU6, ("hard_swish", ())), "none"),  # > 24 wide
    ((1, 6, 12, 50), 1, 6, 2, (NONE, RELU, NONE), "none"),  # no expand, s2
]


def _conv(xs: tuple, w: np.ndarray, b: np.ndarray | None, s: int, act: tuple, res: str = "none"):
    p = w.shape[2] // 2
    group = xs[1] if w.shape[1] == 1 and w.shape[2] > 1 else 1
    y = fused_conv(np.zeros(xs, F32), w, b, group=group, strides=[s, s], pads=[p] * 4)
    return ConvSpec(xs, y.shape, w, b, (s, s), (p,) * 4, (1, 1), group, act[0], act[1], res)


def _spec(case: tuple, seed: int = 0, bias: bool = True) -> ChainSpec:
    xs, t, cout, s, acts, res = case
    rng = np.random.default_rng(seed)
    cin = xs[1]
    cmid = cin * t

    def b(c: int) -> np.ndarray | None:
        return rng.standard_normal(c).astype(F32) if bias else None

    expand = None
    if t != 1:
        we = (rng.standard_normal((cmid, cin, 1, 1)) / np.sqrt(cin)).astype(F32)
        expand = _conv(xs, we, b(cmid), 1, acts[0])
    mid = xs if expand is None else expand.out_shape
    dw = _conv(mid, (rng.standard_normal((cmid, 1, 3, 3)) / 2).astype(F32), b(cmid), s, acts[1])
    wp = (rng.standard_normal((cout, cmid, 1, 1)) / np.sqrt(cmid)).astype(F32)
    return ChainSpec(expand, dw, _conv(dw.out_shape, wp, b(cout), 1, acts[2], res))


def _reference(spec: ChainSpec, x: np.ndarray, z: np.ndarray | None) -> np.ndarray:
    """The members' reference FusedConv composed in float64."""
    y = x.astype(np.float64)
    for m in spec.layers:
        y = fused_conv(
            y,
            m.weight.astype(np.float64),
            None if m.bias is None else m.bias.astype(np.float64),
            None if m.residual == "none" or z is None else z.astype(np.float64),
            group=m.group,
            strides=list(m.strides),
            pads=list(m.pads),
            activation=m.activation,
            activation_params=m.activation_params,
            residual=m.residual,
        )
    return y


def _data(spec: ChainSpec, seed: int = 1) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (2 * rng.standard_normal(spec.x_shape)).astype(F32)
    z = rng.standard_normal(spec.out_shape).astype(F32) if spec.residual != "none" else None
    return x, z, _reference(spec, x, z)


def _close(got: np.ndarray, want: np.ndarray, what: str = "") -> None:
    # float32 arithmetic through three layers against float64
    scale = max(float(np.abs(want).max()), 1.0)
    assert not np.isnan(got).any(), f"{what}: unwritten outputs"
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale, err_msg=what)


def _bind(spec: ChainSpec, x, z, out, pool: WorkPool | None = None):
    return ChainNative(spec).bind([x] + ([z] if z is not None else []), [out], ScratchPool(pool))


def test_native_kernels_are_here_and_the_chain_is_registered() -> None:
    assert native.available()
    assert ChainNative in CPU_TACTICS["chain"]


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"x{c[0]}t{c[1]}o{c[2]}s{c[3]}{c[5]}")
def test_matches_the_reference(case, workers) -> None:
    spec = _spec(case)
    assert ChainNative.applicable(spec)
    x, z, want = _data(spec)
    out = np.full(spec.out_shape, np.nan, F32)
    pool = WorkPool(workers) if workers > 1 else None
    run = _bind(spec, x, z, out, pool)
    run()
    _close(out, want, "first run")
    out.fill(np.nan)
    run()  # the ring and D are reused
    _close(out, want, "second run")
    if pool is not None:
        pool.close()


@pytest.mark.parametrize("rows", [1, 3, 7])
@pytest.mark.parametrize("case", [CASES[1], CASES[2]], ids=["s1", "s2"])
def test_strips_of_one_and_of_several_rows(case, rows, monkeypatch) -> None:
    """One output row a strip (the smallest ring), and a few rows a strip (rows carried
    over in the ring from strip to strip, a short last strip; 7: the depthwise's passes of
    4 and 3 rows, then 2 (s1) or 1 (s2) in the last strip)."""
    spec = _spec(case, seed=3)
    monkeypatch.setattr(cpu_chain, "MIN_STRIP_PIXELS", 0)
    monkeypatch.setattr(cpu_chain, "MIN_STRIP_ROWS", 1)
    floats = 1
    monkeypatch.setattr(cpu_chain, "WORK_FLOATS", floats)
    while cpu_chain.geometry(spec)["rows"] < rows:
        floats += 64
        monkeypatch.setattr(cpu_chain, "WORK_FLOATS", floats)
    assert cpu_chain.geometry(spec)["rows"] == rows < spec.out_shape[2]
    x, z, want = _data(spec, seed=4)
    out = np.full(spec.out_shape, np.nan, F32)
    _bind(spec, x, z, out)()
    _close(out, want)


def test_no_biases() -> None:
    spec = _spec(CASES[1], seed=5, bias=False)
    x, z, want = _data(spec)
    out = np.full(spec.out_shape, np.nan, F32)
    _bind(spec, x, z, out)()
    _close(out, want)


def test_views_that_are_not_planes_are_copied_and_channel_slices_read_in_place() -> None:
    spec = _spec(CASES[1], seed=6)
    x, z, want = _data(spec, seed=7)
    n, c, h, w = spec.x_shape
    wide = np.zeros((n, c + 3, h, w + 2), F32)
    wide[:, 2 : 2 + c, :, 1 : 1 + w] = x  # rows not contiguous: copied
    out_big = np.full((*spec.out_shape[:3], spec.out_shape[3] + 1), np.nan, F32)
    out = out_big[..., 1:]  # not planes: written through a copy
    slab = np.zeros((n, spec.out_shape[1] + 2, *spec.out_shape[2:]), F32)
    slab[:, 1:-1] = z
    zs = slab[:, 1:-1]  # a channel slice: planes, read in place
    _bind(spec, wide[:, 2 : 2 + c, :, 1 : 1 + w], zs, out, WorkPool(2))()
    _close(out, want)
    assert np.isnan(out_big[..., 0]).all()


def _refused(spec: ChainSpec) -> bool:
    return not ChainNative.applicable(spec)


def test_only_what_the_kernel_takes_applies() -> None:
    base = _spec(CASES[1])
    e, d, p = base.expand, base.depthwise, base.project
    assert e is not None and ChainNative.applicable(base)
    assert not ChainNative.applicable(e)  # not a chain
    rng = np.random.default_rng(0)
    xs, cmid = e.out_shape, e.cout
    # a 5x5 depthwise, pads 2 (the kernel's taps are 3x3)
    d5 = _conv(xs, rng.standard_normal((cmid, 1, 5, 5)).astype(F32), None, 1, RELU6)
    p5 = _conv(d5.out_shape, p.weight, p.bias, 1, NONE)
    assert _refused(ChainSpec(e, d5, p5))
    # pads other than 1 all round, dilation, strides that differ per axis
    for change in (
        dict(pads=(0, 0, 1, 1)),
        dict(dilations=(2, 2)),
        dict(strides=(1, 2)),
    ):
        fields = {**d.__dict__, **change}
        dx = ConvSpec(**fields)
        px = ConvSpec(**{**p.__dict__, "x_shape": dx.out_shape, "out_shape": p.out_shape})
        assert _refused(ChainSpec(e, dx, px)), change
    # an activation the kernels' epilogue lacks, on any member
    for k in range(3):
        members = [e, d, p]
        members[k] = ConvSpec(**{**members[k].__dict__, "activation": "mish"})
        assert _refused(ChainSpec(*members)), k
    # float64 weights
    e64 = ConvSpec(**{**e.__dict__, "weight": e.weight.astype(np.float64)})
    assert _refused(ChainSpec(e64, d, p))


# -- every vector path, from the same source ---------------------------------------------------


def _recorded(spec: ChainSpec) -> tuple[replay.Recording, np.ndarray, np.ndarray]:
    """A case bound and run on the host (calls recorded), its output NaN again."""
    x, z, want = _data(spec, seed=8)
    out = np.full(spec.out_shape, np.nan, F32)
    ins = [x] + ([z] if z is not None else [])
    with replay.recording(spec.signature(), ins, out) as rec:
        _bind(spec, x, z, out)()
    _close(out, want, "host")
    out.fill(np.nan)
    return rec, out, want


@pytest.mark.parametrize("build", ["avx2", "x86-64"])
def test_every_x86_vector_path_matches(build: str, tmp_path: Path) -> None:
    flags, needs = isa_builds.X86_BUILDS[build]
    isa_builds.need_features(needs)
    fn = isa_builds.build_kernels(tmp_path, ["conv_chain.c", "args.c"], flags).conv_chain_f32
    fn.restype = None
    for case in (CASES[0], CASES[1], CASES[2], CASES[5]):
        rec, out, want = _recorded(_spec(case))
        assert {call.name for call in rec.calls} == {"conv_chain_f32"}
        for call in rec.calls:
            fn(ctypes.byref(call.args))
        _close(out, want, f"{build} {rec.name}")


def test_aarch64_neon_path_matches(tmp_path: Path) -> None:
    """conv_chain cross-compiled for the Jetson's cores and replayed under qemu-user (the
    replay machinery of tests/engine/backends/cpu/aarch64)."""
    exe = emulated.driver(tmp_path, ("conv_chain.c",))
    cases = [_recorded(_spec(c)) for c in (CASES[1], CASES[2], CASES[3])]
    outs = emulated.replayed(exe, tmp_path, [rec for rec, _, _ in cases])
    for (rec, _, want), got in zip(cases, outs, strict=True):
        _close(got, want, f"aarch64 {rec.name}")


@pytest.mark.parametrize(
    "case",
    [
        ((1, 16, 7, 7), 6, 16, 1, (RELU6, RELU6, NONE), "pre"),  # MobileNetV2's 7x7 blocks
        ((1, 16, 9, 11), 6, 24, 2, (RELU6, RELU6, NONE), "none"),
        ((1, 40, 5, 7), 1, 8, 1, (NONE, RELU, NONE), "post"),  # no expand
    ],
    ids=["s1pre", "s2", "noexpand"],
)
def test_one_image_split_by_middle_channels(case) -> None:
    """One image on a small plane, 2 threads: tasks by middle-channel ranges, partial sums
    added after (the by-channels tasks ran: 2 per layer)."""
    spec = _spec(case)
    x, z, want = _data(spec)
    pool = WorkPool(2)
    scratch = ScratchPool(pool)
    assert ChainNative(spec)._by_channels(scratch, 1, 0) == 2
    out = np.full(spec.out_shape, np.nan, F32)
    run = ChainNative(spec).bind([x] + ([z] if z is not None else []), [out], scratch)
    run()
    _close(out, want, "by channels")
    out.fill(np.nan)
    run()
    _close(out, want, "by channels, second run")
    pool.close()
