"""Float16 storage in depthwise_native (``half_io``, tactics/cpu_fp16.py): where its vectors
along rows take the layer (3x3 at stride 1 or 2 on an AVX-512 or AVX2 build), float16 inputs,
residuals and outputs must give exactly the bits of the conversion route — inputs widened,
the same kernel on float32, the output narrowed to nearest even (numpy's astype) — on both
of that path's shapes (one row a vector, two rows a vector), pads, odd sizes, channel-slice
views, special values (infinities, NaN, float16 subnormals, overflow), every fused
activation, residuals and threads; the AVX-512 and AVX2 builds on their own; elsewhere the
layer declines float16 (the conversion route), and the builds without the path compute
float16 calls one output at a time within float32 tolerance."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics import cpu_depthwise, cpu_fp16
from edge_infer.engine.backends.cpu.tactics.cpu_depthwise import DepthwiseNative
from edge_infer.engine.ops import get_registry
from edge_infer.engine.tactics.base import ConvSpec
from tests.engine.backends.cpu import isa_builds
from tests.engine.backends.cpu.tactics import half_io_support as hs
from tests.engine.backends.cpu.tactics.half_io_support import F16, F32

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler: no native path")

CONV = get_registry().resolve("", "Conv", 17).kernel
ACTS = [
    ("", ()),
    ("relu", ()),
    ("clip", (0.0, 6.0)),
    ("leaky_relu", (0.2,)),
    ("sigmoid", ()),
    ("silu", ()),
    ("hard_swish", ()),
    ("tanh", ()),
]
# x shape, strides, pads (t, l, b, r): one row a vector (wide, partial last vector), two rows
# a vector (outputs up to 8 wide) at strides 1 and 2, asymmetric pads, a batch; on AVX2 also
# rows under 8 wide (spilling onto the next), stride 2 with vectors inside the row (35 wide)
CASES = [
    ((1, 6, 7, 7), (1, 1), (1, 1, 1, 1)),
    ((1, 5, 14, 14), (2, 2), (1, 1, 1, 1)),
    ((2, 4, 13, 37), (1, 1), (1, 1, 1, 1)),
    ((1, 3, 17, 40), (2, 2), (0, 1, 1, 0)),
    ((1, 4, 9, 6), (1, 1), (2, 0, 1, 2)),
    ((1, 2, 9, 70), (2, 2), (1, 1, 1, 1)),
    ((1, 3, 28, 28), (1, 1), (1, 1, 1, 1)),
]


def _case(k: int, bits: int, special: bool) -> dict[str, Any]:
    """Layer k's arrays: x, z float16 or float32 and out float16 or float32 as ``bits``
    says (1 x, 2 out, 4 z), channel slices of larger tensors on odd k."""
    xs, strides, pads = CASES[k % len(CASES)]
    n, c, h, w = xs
    rng = np.random.default_rng(k)
    act = ACTS[k % len(ACTS)]
    residual = ("none", "pre", "post")[k % 3]
    wt = rng.standard_normal((c, 1, 3, 3)).astype(F32)
    b = rng.standard_normal(c).astype(F32)
    ho = (h + pads[0] + pads[2] - 3) // strides[0] + 1
    wo = (w + pads[1] + pads[3] - 3) // strides[1] + 1
    extra = 2 if k % 2 else 0
    with np.errstate(over="ignore"):
        xs = hs.random_values(rng, (n, c + extra, h, w), 2.0, special, picks=24)
        x = xs.astype(F16 if bits & 1 else F32)[:, extra:]
        zs = hs.random_values(rng, (n, c + extra, ho, wo), 1.0, special, picks=24)
        z = zs.astype(F16 if bits & 4 else F32)[:, :c]
    out = np.full((n, c + extra, ho, wo), np.nan, F16 if bits & 2 else F32)[:, extra:]
    spec = ConvSpec(x.shape, out.shape, wt, b, strides, pads, (1, 1), c, *act, residual)
    ins = [x, wt, b] + ([z] if residual != "none" else [])
    name = f"case {k} bits {bits} {act[0]} {residual}"
    return dict(tactic=DepthwiseNative, spec=spec, ins=ins, out=out, name=name)


def _cases() -> list[dict[str, Any]]:
    return [
        _case(k, bits, special=k % 3 == 1)
        for k in range(2 * len(ACTS))
        for bits in (7, 1 + 2 * (k % 2), 2 + 4 * (k % 2))
    ]


def _need_wide() -> None:
    if not cpu_depthwise.wide_built():
        pytest.skip("this machine's kernels lack the vectors along rows (AVX-512, AVX2)")


@pytest.mark.parametrize("threads", [1, 2])
def test_half_storage_is_the_conversion_route_bit_for_bit(threads: int) -> None:
    _need_wide()
    hs.assert_half_storage_bit_for_bit(_cases(), threads)


def test_the_cases_reach_every_float16_case() -> None:
    """Float16 outputs of the cases hold infinities, NaNs and subnormals, so the test
    above compares those."""
    kinds = set()
    for c in _cases():
        if c["out"].dtype == F16:
            kinds |= hs.float16_kinds(hs.float32_route(c))
    assert kinds == {"inf", "nan", "subnormal"}


def test_other_layers_decline_half_storage() -> None:
    """An unfused activation (the float32 epilogue afterwards), a 5x5 kernel, a dilation,
    stride 3: the conversion route; a fused 3x3 at stride 2 takes float16 on AVX-512."""
    w3, w5 = np.ones((4, 1, 3, 3), F32), np.ones((4, 1, 5, 5), F32)

    def spec(w: np.ndarray, s: int = 1, d: int = 1, act: str = "relu") -> ConvSpec:
        k = w.shape[2]
        ho = (15 + 2 - d * (k - 1) - 1) // s + 1
        return ConvSpec((1, 4, 15, 15), (1, 4, ho, ho), w, None, (s, s), (1, 1, 1, 1),
                        (d, d), 4, act)  # fmt: skip

    for declined in (spec(w3, act="mish"), spec(w5), spec(w3, d=2), spec(w3, s=3)):
        assert not cpu_fp16.takes_half(DepthwiseNative(declined))
    assert cpu_fp16.takes_half(DepthwiseNative(spec(w3, s=2))) == cpu_depthwise.wide_built()


def _recorded(c: dict[str, Any], half: bool) -> tuple[list[native.NativeCall], np.ndarray]:
    """A one-thread bind's native calls (float16 storage, or the float32 route) and the
    output they write."""
    ins = c["ins"] if half else [hs.wide(a) for a in c["ins"]]
    out = c["out"] if half else np.full(c["out"].shape, np.nan, F32)
    calls: list[native.NativeCall] = []
    init = native.NativeCall.__init__

    def record(self: Any, *args: Any, **kw: Any) -> None:
        init(self, *args, **kw)
        calls.append(self)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(native.NativeCall, "__init__", record)
        m.setattr(DepthwiseNative, "half_ready", lambda self: self.fused)
        DepthwiseNative(c["spec"]).bind(ins, [out], ScratchPool())
    return calls, out


@pytest.mark.parametrize("build", list(isa_builds.X86_BUILDS))
def test_every_x86_vector_path(build: str, tmp_path: Path) -> None:
    """The AVX-512 and AVX2 builds: the conversion route's bits; plain x86-64 (no vectors
    along rows): float16 calls one output at a time, within float32 rounding."""
    flags, needs = isa_builds.X86_BUILDS[build]
    isa_builds.need_features(needs)
    lib = isa_builds.build_kernels(tmp_path, ["conv_depthwise.c"], flags)
    assert lib.conv_depthwise_wide() == {"avx512": 1, "avx2": 2}.get(build, 0)
    fn = lib.conv_depthwise_f32
    fn.restype = None
    for c in _cases():
        outs = []
        for half in (True, False):
            calls, out = _recorded(c, half)
            out.fill(np.nan)
            for call in calls:
                fn(ctypes.byref(call.args))
            outs.append(out.copy())
        want = hs.narrowed(outs[1], outs[0])
        if build in ("avx512", "avx2"):
            hs.assert_bits(outs[0], want, f"{build} {c['name']}")
        else:
            got, ref = outs[0].astype(np.float64), want.astype(np.float64)
            # float16 outputs: one float16 step apart where float32 sums round differently
            tol = 2**-10 if outs[0].dtype == F16 else 1e-5
            np.testing.assert_allclose(got, ref, rtol=tol, atol=tol, err_msg=c["name"])
