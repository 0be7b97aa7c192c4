"""The native kernels as the Jetson's Arm cores run them: cross-compiled for aarch64
(``-mcpu=cortex-a78ae`` as on Jetson Orin, and plain ``-march=armv8-a``) and run under
qemu-user against float64 numpy references.

The calls are the CPU backend's own: each case binds a real tactic (or a memory-bound step
kernel) on the host, records the kernel calls it runs and the memory they read
(``replay.py``), and ``driver.c`` replays them on aarch64 through the native pool — so the
argument structs, the phase layouts and the packings under test are the ones the engine
builds, and only the machine code differs. A C driver rather than Python under emulation:
an aarch64 Python with numpy is not a Debian cross package, and emulating the interpreter
would cost minutes; the driver runs every case in one emulated process in seconds.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics import cpu_direct
from edge_infer.engine.backends.cpu.tactics.cpu_depthwise import DepthwiseNative
from edge_infer.engine.backends.cpu.tactics.cpu_direct import DirectNative
from edge_infer.engine.backends.cpu.tactics.cpu_ocvec import OcVecNative
from edge_infer.engine.backends.cpu.tactics.cpu_pointwise import PointwiseNative
from edge_infer.engine.backends.cpu.tactics.cpu_winograd import WinogradNative
from edge_infer.engine.tactics.base import ConvSpec
from tests.engine.backends.cpu import isa_builds
from tests.engine.backends.cpu.aarch64 import replay
from tests.engine.backends.cpu.tactics.test_cpu_conv import expected
from tests.engine.backends.cpu.tactics.test_native import _data
from tests.sysdeps import need

CROSS, QEMU, SYSROOT = "aarch64-linux-gnu-gcc", "qemu-aarch64", "/usr/aarch64-linux-gnu"
HERE = Path(__file__).parent
#: build → its CPU flags (armv8-a, the fallback paths: isa_builds.FALLBACK_OPT)
BUILDS = {
    "cortex-a78ae": ["-mcpu=cortex-a78ae"],
    "armv8-a": ["-march=armv8-a", isa_builds.FALLBACK_OPT],
}

# x shape, Cout, kernel, strides, pads (t, l, b, r), dilations, group: odd sizes, partial
# register tiles (Cout % 6, % 16; positions % 16), every layout path
CONVS = [
    ((1, 3, 19, 23), 16, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),
    ((2, 5, 13, 11), 7, (3, 3), (1, 1), (1, 2, 0, 1), (1, 1), 1),
    ((1, 17, 9, 13), 23, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((1, 8, 15, 17), 10, (5, 5), (3, 3), (2, 1, 0, 2), (1, 1), 1),
    ((1, 6, 13, 13), 9, (3, 3), (2, 2), (2, 2, 2, 2), (2, 2), 1),
    ((1, 20, 7, 9), 33, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((2, 12, 11, 9), 12, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 12),
    ((1, 9, 17, 15), 9, (5, 5), (2, 2), (2, 2, 2, 2), (1, 1), 9),
    # depthwise row by row (wider than cpu_depthwise.GROUPED_MAX_WIDTH, stride 1)
    ((1, 5, 6, 37), 5, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 5),
]
# every activation code of the fused epilogue (args.h), with its parameters
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
TACTICS = (DirectNative, OcVecNative, DepthwiseNative, WinogradNative, PointwiseNative)
#: kernels replayed on aarch64 by their own module's test (their cases need their own data:
#: int8 storage, float16, sequences), module → kernels; with the cases here they cover
#: every entry point of native.ARGS
ELSEWHERE = {
    "tests/engine/backends/cpu/tactics/test_qconv_native.py": {"qconv_int8_f32", "qconv_split_f32"},
    "tests/engine/backends/cpu/test_qdepthwise_aarch64.py": {
        "conv_int8_dw_f32",
        "reformat_f32",
        "upsample_nearest_s8_f32",
        "qgemm_packed_s8_f32",
        "maxpool_s8_f32",
    },
    "tests/engine/backends/cpu/test_recurrent_native.py": {"lstm_seq_f32"},
    "tests/engine/backends/cpu/test_fp16_native.py": {"convert_half_f32"},
    "tests/engine/backends/cpu/tactics/test_stem_native.py": {"conv_stem_f32"},
    "tests/engine/backends/cpu/test_steps_gemv_aarch64.py": {"gemv_f32", "gemv_packed_f32"},
    "tests/engine/backends/cpu/test_maxpool_native.py": {"maxpool_planes_f32"},
    "tests/engine/backends/cpu/tactics/test_chain_native.py": {"conv_chain_f32"},
    "tests/engine/backends/cpu/test_transpose_native.py": {"transpose_f32"},
    "tests/engine/backends/cpu/tactics/test_qpointwise_native.py": {"qpw_int8_f32"},
    "tests/engine/backends/cpu/test_qwinograd.py": {"qwino_int8_f32"},
}


#: the entry points of conv_direct.c
DIRECT_KERNELS = frozenset({"conv_direct_f32", "split_phases_f32", "conv_banded_f32"})


def _flags(build: str) -> list[str]:
    """The device compile's flags (native.py), the CPU option replaced by the build's."""
    keep = [
        f
        for f in native._flags()
        if not f.startswith(("-march", "-mcpu")) and f not in ("-shared", "-fPIC")
    ]
    return [*keep, *BUILDS[build]]


def compile_driver(
    out: Path, build: str, kernels: Path = native.KERNELS, only: tuple[str, ...] = ()
) -> Path:
    """The replay driver for ``build`` with every kernel, or ``only`` the named kernel
    sources (plus args.c and pool.c), linked statically with the other kernels' entry
    points left unresolved (never called by those cases): seconds to build where every
    kernel takes a minute under load. Each object compiles once, kept between runs
    (isa_builds.objects: the full driver and the single-kernel ones share them), in
    parallel; ``out`` is unused, kept for the callers."""
    del out
    need(CROSS, QEMU, "cc")  # cc: the host records the calls through its own native kernels
    sources = (
        [kernels / n for n in (*only, "args.c", "pool.c")] if only else sorted(kernels.glob("*.c"))
    )
    partial = ["-static", "-Wl,--unresolved-symbols=ignore-all"] if only else []
    name = f"driver-{build}{'-' + '-'.join(Path(n).stem for n in only) if only else ''}"
    objs = isa_builds.objects(CROSS, _flags(build), [*sources, HERE / "driver.c"], [kernels])
    return isa_builds.link(CROSS, objs, [*_flags(build), *partial], name)


def emulate(exe: Path, *args: str) -> str:
    proc = subprocess.run(
        [QEMU, "-L", SYSROOT, str(exe), *args], capture_output=True, text=True, timeout=120
    )
    if proc.returncode:
        raise AssertionError(f"{exe.name} {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _conv_case(
    case: tuple, tactic: type, act: tuple, residual: str, band: int | None = None
) -> tuple[replay.Recording, np.ndarray, float]:
    x, w, b, conv = _data(case)
    xs, _cout, _k, strides, pads, dil, group = case
    z = np.random.default_rng(1).standard_normal(conv.shape).astype(np.float32)
    spec = ConvSpec(xs, conv.shape, w, b, strides, pads, dil, group, act[0], act[1], residual)
    want = expected(conv, z, act[0], act[1], residual)
    out = np.full(conv.shape, np.nan, np.float32)
    name = (
        f"{tactic.name} x{xs} o{case[1]} k{case[2]} s{strides} g{group} {act[0] or '-'} "
        f"{residual}" + (f" band{band}" if band else "")
    )
    mp = pytest.MonkeyPatch()
    if band is not None:  # the banded layout (conv_banded_f32), bands of `band` rows
        row_bytes, _, ext = cpu_direct.band_geometry(spec)
        mp.setattr(cpu_direct, "BAND_BYTES", row_bytes * (ext + band))
        mp.setattr(cpu_direct, "MIN_BAND_ROWS", 1)
        mp.setattr(cpu_direct, "WHOLE_MAX_BYTES", 0)
    try:
        with replay.recording(name, [x, z], out) as rec:
            run = tactic(spec).bind(
                [x, w, b] + ([z] if residual != "none" else []), [out], ScratchPool()
            )
            run()
    finally:
        mp.undo()
    # the host's own run must match too, or the case (not the aarch64 code) is wrong
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=2e-5 * max(1.0, np.abs(want).max()))
    return rec, want, 2e-5 * max(1.0, float(np.abs(want).max()))


def _step_case(
    name: str, kernel: str, fields: dict, x: np.ndarray, y: np.ndarray, want: np.ndarray
) -> tuple[replay.Recording, np.ndarray, float]:
    y.fill(np.nan)
    with replay.recording(name, [x], y) as rec:
        native.NativeCall(kernel, fields, (x, y))()
    return rec, want.astype(np.float32), 1e-6


def _step_cases() -> list[tuple[replay.Recording, np.ndarray, float]]:
    rng = np.random.default_rng(3)
    cases = []
    for n in (1, 7, 37, 1000):
        x = (rng.standard_normal(n) * 6).astype(np.float32)
        for kind, ref in (
            (native.Activation.SIGMOID, lambda v: 1 / (1 + np.exp(-v))),
            (native.Activation.TANH, np.tanh),
        ):
            y = np.empty_like(x)
            cases.append(
                _step_case(
                    f"unary {kind.name} n{n}",
                    "unary_f32",
                    dict(x=x.ctypes.data, y=y.ctypes.data, n=n, kind=kind, half=0),
                    x,
                    y,
                    ref(x.astype(np.float64)),
                )
            )
    for outer, axis, inner in ((3, 7, 13), (2, 5, 19), (1, 80, 1)):
        x = (rng.standard_normal((outer, axis, inner)) * 4).astype(np.float32)
        e = np.exp(x - x.max(axis=1, keepdims=True)).astype(np.float64)
        y = np.empty_like(x)
        cases.append(
            _step_case(
                f"softmax {outer}x{axis}x{inner}",
                "softmax_f32",
                dict(x=x.ctypes.data, y=y.ctypes.data, outer=outer, axis=axis, inner=inner, half=0),
                x,
                y,
                e / e.sum(axis=1, keepdims=True),
            )
        )
    for (n, c, h, w), (fh, fw) in (
        ((2, 3, 5, 7), (2, 2)),
        ((1, 4, 3, 5), (3, 2)),
        ((1, 2, 4, 3), (1, 3)),
    ):
        x = rng.standard_normal((n, c, h, w)).astype(np.float32)
        big = np.empty((n, c + 2, h * fh, w * fw), np.float32)  # a channel slice (concat)
        y = big[:, 1 : c + 1]
        want = x.repeat(fh, axis=2).repeat(fw, axis=3)
        rec, _, tol = _step_case(
            f"upsample {x.shape} x{fh}x{fw}",
            "upsample_nearest_f32",
            dict(
                x=x.ctypes.data,
                y=y.ctypes.data,
                n=n,
                c=c,
                xis=x.strides[0] // 4,
                xcs=x.strides[1] // 4,
                yis=y.strides[0] // 4,
                ycs=y.strides[1] // 4,
                h=h,
                w=w,
                fh=fh,
                fw=fw,
                half=0,
            ),
            x,
            y,
            want,
        )
        cases.append((rec, want, tol))
    for (h, w), (kh, kw), (sy, sx), (pt, pl), (dy, dx) in (
        ((13, 11), (3, 3), (2, 2), (1, 1), (1, 1)),
        ((9, 14), (2, 3), (1, 2), (0, 1), (1, 1)),
        ((17, 15), (3, 3), (2, 1), (2, 2), (2, 2)),
        ((8, 8), (5, 5), (1, 1), (2, 2), (1, 1)),
    ):
        x = rng.standard_normal((3, h, w)).astype(np.float32)
        ho = (h + 2 * pt - dy * (kh - 1) - 1) // sy + 1
        wo = (w + 2 * pl - dx * (kw - 1) - 1) // sx + 1
        pad = np.full((3, h + 2 * pt + sy * kh * dy, w + 2 * pl + sx * kw * dx), -np.inf)
        pad[:, pt : pt + h, pl : pl + w] = x
        want = np.max(
            [
                pad[:, a * dy : a * dy + sy * ho : sy, b * dx : b * dx + sx * wo : sx]
                for a in range(kh)
                for b in range(kw)
            ],
            axis=0,
        )
        y = np.empty((3, ho, wo), np.float32)
        cases.append(
            _step_case(
                f"maxpool {h}x{w} k{kh}x{kw} s{sy}{sx} d{dy}{dx}",
                "maxpool_f32",
                dict(
                    x=x.ctypes.data,
                    y=y.ctypes.data,
                    planes=3,
                    h=h,
                    w=w,
                    ho=ho,
                    wo=wo,
                    kh=kh,
                    kw=kw,
                    sy=sy,
                    sx=sx,
                    pt=pt,
                    pl=pl,
                    dy=dy,
                    dx=dx,
                ),
                x,
                y,
                want,
            )
        )
    return cases


@functools.cache
def _cases() -> tuple[tuple[replay.Recording, np.ndarray, float], ...]:
    """Every tactic on every conv it applies to, each of them with all nine activations and
    the three residual modes spread over its convs (at least three cases per conv); the
    banded layout; the step kernels. Recorded once per session."""
    cases = []
    for t, tactic in enumerate(TACTICS):
        convs = []
        for case in CONVS:
            _, w, b, conv = _data(case)
            xs, _cout, _k, strides, pads, dil, group = case
            if tactic.applicable(ConvSpec(xs, conv.shape, w, b, strides, pads, dil, group)):
                convs.append(case)
        for k in range(max(len(ACTS), 3 * len(convs))):
            # residual modes shifted per tactic: each activation meets each mode somewhere
            act, residual = ACTS[k % len(ACTS)], ("none", "pre", "post")[(k + t) % 3]
            cases.append(_conv_case(convs[k % len(convs)], tactic, act, residual))
    for band in (1, 2):
        cases.append(_conv_case(CONVS[0], DirectNative, ("silu", ()), "post", band))
        cases.append(_conv_case(CONVS[3], DirectNative, ("hard_swish", ()), "pre", band))
    return (*cases, *_step_cases())


def mismatches(exe: Path, tmp: Path, kernels: frozenset[str] | None = None) -> list[str]:
    """Replay every case (or those calling only ``kernels``) on ``exe`` under emulation:
    the cases whose output is off."""
    cases = [c for c in _cases() if kernels is None or {k.name for k in c[0].calls} <= kernels]
    assert cases, f"no case calls only {kernels}"
    recs = [c[0] for c in cases]
    replay.write(tmp / "calls.bin", recs)
    emulate(exe, "replay", str(tmp / "calls.bin"), str(tmp / "out.bin"))
    regions = replay.read(tmp / "out.bin")
    bad, first = [], 0
    for rec, want, atol in cases:
        got = rec.output(regions[first : first + len(rec.regions)])
        first += len(rec.regions)
        ok = np.allclose(got, want, rtol=1e-4, atol=atol) and not np.isnan(got).any()
        if not ok:
            err = float(np.nanmax(np.abs(got.astype(np.float64) - want)))
            bad.append(
                f"{rec.name}: max |error| {err:.3g}, NaN (unwritten) {int(np.isnan(got).sum())}"
            )
    return bad


@pytest.fixture(scope="module", params=list(BUILDS))
def driver(request, tmp_path_factory) -> Path:
    return compile_driver(tmp_path_factory.mktemp(request.param), request.param)


def test_the_kernels_match_the_reference_on_aarch64(driver, tmp_path) -> None:
    assert len(_cases()) > 60
    # every kernel entry point is among the replayed calls (a tactic that stopped applying
    # would otherwise drop its kernel from the test silently)
    replayed = {c.name for rec, _, _ in _cases() for c in rec.calls}
    root = HERE.parents[4]
    for module, kernels in ELSEWHERE.items():
        text = (root / module).read_text()
        assert "qemu" in text and all(k.removesuffix("_f32") in text for k in kernels), module
    assert replayed | set().union(*ELSEWHERE.values()) == set(native.ARGS)
    assert mismatches(driver, tmp_path) == []


def test_struct_layouts_and_codes_on_aarch64_are_the_mirrors(driver) -> None:
    """The aarch64 ABI lays the argument structs out as ctypes does (LP64 both)."""
    fields: dict[str, dict[str, tuple[int, int]]] = {}
    codes = {}
    for line in emulate(driver, "layouts").splitlines():
        kind, *rest = line.split()
        if kind == "field":
            kernel, name, off, size = rest
            fields.setdefault(kernel + "_f32", {})["" if name == "-" else name] = (
                int(off),
                int(size),
            )
        else:
            codes["" if rest[0] == "-" else rest[0]] = int(rest[1])
    assert fields == native.python_layouts()
    assert codes == {a.attr: int(a) for a in native.Activation}
    lib = native.library()
    for cout, tb in ((16, 16), (23, 48)):
        assert int(emulate(driver, "work", str(cout), str(tb))) == lib.winograd_work_f32(cout, tb)


def test_a_wrong_result_on_aarch64_only_is_caught(tmp_path) -> None:
    """A bug planted in the generic (non-x86) vector path, which x86 never compiles: max
    computed as min. The x86 library is untouched and right; the aarch64 replay must fail.
    One kernel source is enough to show it (conv_direct.c's cases; every conv kernel's
    epilogue is simd.h's): a full driver of the planted sources would cost a minute."""
    kernels = tmp_path / "kernels"
    shutil.copytree(native.KERNELS, kernels)
    simd = kernels / "simd.h"
    right = "static inline v8 vmax(v8 a, v8 b) { return vsel(a > b, a, b); }"
    text = simd.read_text()
    assert text.count(right) == 1
    simd.write_text(text.replace(right, right.replace("a > b", "a < b")))
    exe = compile_driver(tmp_path, "cortex-a78ae", kernels, only=("conv_direct.c",))
    bad = mismatches(exe, tmp_path, DIRECT_KERNELS)
    assert any(" relu " in b for b in bad), bad
