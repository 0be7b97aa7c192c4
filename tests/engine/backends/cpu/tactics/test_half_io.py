"""Float16 storage read and written by the conv kernels themselves (``half_io``,
tactics/cpu_fp16.py): ``pointwise_native`` and ``winograd_native`` given float16 inputs,
residuals and outputs must write exactly the bits of the conversion route — inputs widened
into float32, the same kernel on float32, outputs narrowed to nearest even float16 — on this
host's library, on every x86 vector path the kernels compile to (AVX-512, AVX2 + F16C, plain
x86-64: the portable bit arithmetic) and on aarch64 NEON under qemu-user; special values
(infinities, NaNs, float16 subnormals, ties, overflow), odd sizes, strided views, residuals,
every fused activation. Then the FP16 wrappers: the direct route and the conversion route of
one FP16 engine give the same bits."""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.program import CpuProgram, ScratchPool
from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS, cpu_fp16
from edge_infer.engine.backends.cpu.tactics.cpu_pointwise import PointwiseNative
from edge_infer.engine.backends.cpu.tactics.cpu_winograd import WinogradNative
from edge_infer.engine.builder import BuildOptions, build
from edge_infer.engine.tactics import candidates
from edge_infer.engine.tactics.base import ConvSpec
from edge_infer.engine.tactics.verify import layer_inputs
from tests.engine.backends.cpu import isa_builds
from tests.engine.backends.cpu.aarch64 import emulated
from tests.engine.backends.cpu.tactics import half_io_support as hs
from tests.engine.backends.cpu.tactics.half_io_support import ACTS, F16, F32, HALF_PATH
from tests.sysdeps import need

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler: no native path")

KERNELS = {PointwiseNative: "conv_pointwise", WinogradNative: "conv_winograd"}
# pointwise (batch, cin, h, w, cout): tile tails, strips across images, > 512 input channels
# (one channel block for a float16 output), one pixel per image, a large plane, a last strip
# of one pixel (49 = 2 x 24 + 1: the kernel's tail_strip)
PW_SHAPES = [
    (1, 17, 9, 13, 23),
    (2, 5, 3, 5, 9),
    (1, 32, 7, 7, 40),
    (3, 32, 7, 7, 40),
    (2, 700, 4, 5, 13),
    (4, 8, 1, 1, 6),
    (1, 24, 28, 28, 16),
]
# winograd (batch, cin, h, w, cout, pads t l b r): partial tiles, asymmetric and no padding,
# several 16-tile blocks and the one-block channel split
WG_SHAPES = [
    (1, 5, 13, 11, 7, (1, 2, 0, 1)),
    (2, 20, 7, 9, 33, (1, 1, 1, 1)),
    (3, 8, 5, 6, 6, (0, 0, 0, 0)),
    (1, 16, 40, 36, 16, (1, 1, 1, 1)),
]


def _case(tactic: type, k: int, bits: int, views: bool, special: bool) -> dict:
    """One layer's arrays: x, z float16 or float32 and out float16 or float32 as ``bits``
    says (1 x, 2 out, 4 z); with ``views`` channel slices of larger tensors."""
    rng = np.random.default_rng(k)
    act = ACTS[k % len(ACTS)]
    residual = ("none", "pre", "post")[k % 3]
    if tactic is PointwiseNative:
        n, cin, h, w, cout = PW_SHAPES[k % len(PW_SHAPES)]
        kernel, pads, ho, wo = (1, 1), (0, 0, 0, 0), h, w
    else:
        n, cin, h, w, cout, pads = WG_SHAPES[k % len(WG_SHAPES)]
        kernel, ho, wo = (3, 3), h + pads[0] + pads[2] - 2, w + pads[1] + pads[3] - 2
    wt = (rng.standard_normal((cout, cin, *kernel)) / np.sqrt(cin * kernel[0] ** 2)).astype(F32)
    b = rng.standard_normal(cout).astype(F32)
    extra = 3 if views else 0
    xs = hs.random_values(rng, (n, cin + extra, h, w), 2.0, special)
    zs = hs.random_values(rng, (n, cout + extra, ho, wo), 1.0, special)
    with np.errstate(over="ignore"):
        x = xs.astype(F16 if bits & 1 else F32)[:, extra:]
        z = zs.astype(F16 if bits & 4 else F32)[:, :cout]
    obig = np.full((n, cout + extra, ho, wo), np.nan, F16 if bits & 2 else F32)
    out = obig[:, extra:]
    spec = ConvSpec(x.shape, out.shape, wt, b, (1, 1), pads, (1, 1), 1, *act, residual)
    ins = [x, wt, b] + ([z] if residual != "none" else [])
    return dict(tactic=tactic, spec=spec, ins=ins, out=out, name=f"{tactic.name} {k} {bits}")


def _cases(tactic: type) -> list[dict]:
    """Every shape, activation, residual mode and storage combination, some on views and
    some with special values."""
    return [
        _case(tactic, k, bits, views=k % 4 == 3, special=k % 4 == 1)
        for k in range(2 * len(ACTS))
        for bits in (7, 1 + 2 * (k % 2), 2 + 4 * (k % 2))
    ]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("tactic", [PointwiseNative, WinogradNative])
def test_half_storage_is_the_conversion_route_bit_for_bit(tactic: type, threads: int) -> None:
    hs.assert_half_storage_bit_for_bit(_cases(tactic), threads)


def test_special_values_reach_every_float16_case() -> None:
    """The cases' float16 outputs hold infinities, NaNs and subnormals (so the tests above
    compare those), and the reference route is not trivially the kernel's."""
    kinds = set()
    for tactic in (PointwiseNative, WinogradNative):
        for c in _cases(tactic):
            if c["out"].dtype != F16:
                continue
            kinds |= hs.float16_kinds(hs.float32_route(c))
    assert kinds == {"inf", "nan", "subnormal"}


def test_a_unit_1x1_conv_narrows_ties_and_subnormals_as_numpy() -> None:
    """out = x exactly (one channel, weight 1, no bias) from float32 x: the kernel's store
    is the only rounding, on every float16 case (ties to even, subnormals, overflow, NaN)."""
    rng = np.random.default_rng(5)
    halves = rng.integers(0, 0x7C00, 6000).astype(np.uint16).view(F16).astype(F32)
    ties = (halves.view(np.uint32) + (1 << 12)).view(F32)
    step = rng.integers(-(1 << 12), 1 << 12, halves.size)
    near = (halves.view(np.uint32).astype(np.int64) + step).astype(np.uint32).view(F32)
    edge = np.array([0, np.inf, np.nan, 65504, 65519.99, 65520, 2**-25, 3 * 2**-25, 2**-14])
    x = np.concatenate([ties, -near, edge, -edge[1:]]).astype(F32)  # (0 - 0 is +0)
    for width in (x.size, 37, 7):  # whole tiles and tails
        xs = x[:width].reshape(1, 1, 1, width)
        spec = ConvSpec(xs.shape, xs.shape, np.ones((1, 1, 1, 1), F32), None, (1, 1),
                        (0, 0, 0, 0), (1, 1), 1)  # fmt: skip
        out = np.empty(xs.shape, F16)
        PointwiseNative(spec).bind([xs, spec.weight, None], [out], ScratchPool())()
        with np.errstate(over="ignore"):
            hs.assert_bits(out, xs.astype(F16), f"width {width}")


def test_an_unfused_activation_declines_half_storage() -> None:
    w = np.ones((4, 4, 1, 1), F32)
    spec = ConvSpec((1, 4, 5, 5), (1, 4, 5, 5), w, None, (1, 1), (0, 0, 0, 0), (1, 1), 1, "mish")
    assert not cpu_fp16.takes_half(PointwiseNative(spec))
    spec = ConvSpec((1, 4, 5, 5), (1, 4, 5, 5), w, None, (1, 1), (0, 0, 0, 0), (1, 1), 1, "relu")
    assert cpu_fp16.takes_half(PointwiseNative(spec))


# -- every vector path ------------------------------------------------------------------------


@pytest.mark.parametrize("build", list(isa_builds.X86_BUILDS))
@pytest.mark.parametrize("tactic", [PointwiseNative, WinogradNative])
def test_every_x86_vector_path_is_the_conversion_route(
    tactic: type, build: str, tmp_path: Path
) -> None:
    flags, needs = isa_builds.X86_BUILDS[build]
    isa_builds.need_features(needs)
    name = KERNELS[tactic]
    lib = isa_builds.build_kernels(tmp_path, [f"{name}.c", "args.c"], flags)
    assert getattr(lib, f"{name}_half_path")() == HALF_PATH[build]  # the path under test
    fn = getattr(lib, f"{name}_f32")
    fn.restype = None
    for c in _cases(tactic):
        got = []
        for half in (True, False):
            rec = hs.recorded(c, half)
            assert {call.name for call in rec.calls} == {f"{name}_f32"}
            for call in rec.calls:
                fn(ctypes.byref(call.args))
            assert rec.out is not None
            got.append(rec.out.copy())
        hs.assert_bits(got[0], hs.narrowed(got[1], got[0]), f"{build} {c['name']}")


def test_aarch64_neon_path_is_the_conversion_route(tmp_path: Path) -> None:
    """Both routes' calls replayed under qemu-user (-mcpu=cortex-a78ae, as on Jetson Orin)."""
    exe = emulated.driver(tmp_path, ("conv_pointwise.c", "conv_winograd.c"))
    cases = [c for t in (PointwiseNative, WinogradNative) for c in _cases(t)]
    recs = [hs.recorded(c, half) for c in cases for half in (True, False)]
    hs.assert_aarch64_is_the_conversion_route(exe, tmp_path, cases, recs)


# -- the FP16 wrappers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fp16_graph() -> object:
    from tests.engine.backends.cpu.test_fp16_native import _net

    engine = build(_net(), options=BuildOptions(shapes={"x": (1, 3, 24, 24)}, precision="fp16"))
    return engine.graph(1)


def _fp16_layers(graph: object) -> list[object]:
    return [n for n in graph.nodes if n.op_type == "Fp16Layer"]  # type: ignore[attr-defined]


def test_the_wrappers_direct_route_is_their_conversion_route(fp16_graph, monkeypatch) -> None:
    """fp16_pointwise_native and fp16_winograd_native on the FP16 engine's layers: the same
    bits with the float16 arrays given to the kernels and through the conversions."""
    seen = set()
    for node in _fp16_layers(fp16_graph):
        tactics, spec = candidates(node, CPU_TACTICS)
        for tactic in tactics:
            if tactic.name not in ("fp16_pointwise_native", "fp16_winograd_native"):
                continue
            ins = layer_inputs(node, seed=9)
            outs = []
            for direct in (True, False):
                monkeypatch.setattr(cpu_fp16, "takes_half", lambda t, d=direct: d)
                y = [np.full(v.shape, np.nan, v.dtype) for v in node.outputs]
                tactic(spec).bind(ins, y, ScratchPool())()
                outs.append(y[0])
            assert outs[0].dtype == F16 or any(
                isinstance(a, np.ndarray) and a.dtype == F16 for a in ins
            )
            hs.assert_bits(outs[0], outs[1], f"{tactic.name} {node.name}")
            seen.add(tactic.name)
    assert seen == {"fp16_pointwise_native", "fp16_winograd_native"}


def test_an_fp16_engine_is_the_same_with_and_without_the_conversions(
    fp16_graph, monkeypatch
) -> None:
    """The engine with every layer that can on the direct route, then on the conversions:
    the same output, bit for bit."""
    x = np.random.default_rng(4).standard_normal((1, 3, 24, 24)).astype(F32)
    picked = 0
    for node in _fp16_layers(fp16_graph):
        tactics, _ = candidates(node, CPU_TACTICS)
        names = [t.name for t in tactics]
        for name in ("fp16_winograd_native", "fp16_pointwise_native"):
            if name in names:
                node.meta["tactic"] = name
                picked += 1
                break
    assert picked >= 2
    got, takes = [], cpu_fp16.takes_half
    for direct in (True, False):  # (the other layers' tactics: always the conversions)
        monkeypatch.setattr(cpu_fp16, "takes_half", lambda t, d=direct: d and takes(t))
        program = CpuProgram(fp16_graph)
        state = program.new_state()
        try:
            got.append(program.run(state, {"x": x})["y"].copy())
        finally:
            state.close()
    hs.assert_bits(got[0], got[1], "engine")


# -- half.h's 16-lane AVX-512 helpers (for kernels with __m512 tiles) ----------------------

H16_SOURCE = r"""
#include <stdint.h>
#include "half.h"
/* n values through the 16-lane helpers: whole vectors, then the tail under a mask */
void narrow16(const float *x, uint16_t *y, long n) {
    long i = 0;
    for (; i + 16 <= n; i += 16) h16_store(y + i, _mm512_loadu_ps(x + i));
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
    h16_store_mask(y + i, m, _mm512_maskz_loadu_ps(m, x + i));
}
void widen16(const uint16_t *x, float *y, long n) {
    long i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, h16_load(x + i));
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(y + i, m, h16_load_mask(x + i, m));
}
long h16(void) { return EI_H16; }
"""


def test_the_16_lane_helpers_are_numpys_conversions(tmp_path: Path) -> None:
    from tests.engine.backends.cpu.test_fp16_native import _values

    isa_builds.need_features({"avx512f", "avx512bw", "avx512vl"})
    src = tmp_path / "h16.c"
    src.write_text(H16_SOURCE)
    need("cc")
    so = tmp_path / "h16.so"
    flags = [f for f in native._flags() if not f.startswith(("-march", "-mcpu"))]
    cmd = ["cc", *flags, "-Wall", "-Werror", "-march=skylake-avx512", f"-I{native.KERNELS}"]
    subprocess.run([*cmd, "-o", str(so), str(src)], check=True)
    lib = ctypes.CDLL(str(so))
    assert lib.h16() == 1
    x = _values()
    with np.errstate(over="ignore"):
        want = x.astype(F16)
    every = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(F16)
    every = every[~np.isnan(every) | ((every.view(np.uint16) & 0x200) != 0)]  # quiet NaNs
    for n in (x.size, 1, 15, 16, 17, 33):
        got = np.full(n + 1, 7, F16)  # one past the end: untouched
        lib.narrow16(ctypes.c_void_p(x.ctypes.data), ctypes.c_void_p(got.ctypes.data),
                     ctypes.c_long(n))  # fmt: skip
        hs.assert_bits(got[:n], want[:n], f"narrow {n}")
        assert got[n] == 7
        n = min(n, every.size)
        wide = np.full(n + 1, 7, F32)
        lib.widen16(ctypes.c_void_p(every.ctypes.data), ctypes.c_void_p(wide.ctypes.data),
                    ctypes.c_long(n))  # fmt: skip
        hs.assert_bits(wide[:n], every[:n].astype(F32), f"widen {n}")
        assert wide[n] == 7
