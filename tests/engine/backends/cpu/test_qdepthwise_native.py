"""qdepthwise_native (kernels/conv_int8_dw.c) against the reference QConv, bit for bit.

Exact for every output storage with the activations computed without exp (none, relu,
leaky_relu, clip, and hard_swish / hard_sigmoid here too); for sigmoid, silu and tanh the
kernel's float32 exp (simd.h) differs from numpy's in the last bits now and then: an fp32
result within relative 2e-6, an fp16 one within 1e-3, an int8 one 1 step off on at most 1 %
of the outputs. Each vector path is the same source compiled with other flags: this CPU's
(-march=native), AVX2 + F16C, AVX2 with the portable float16 conversion, and plain x86-64
(SSE2); aarch64 NEON in test_qdepthwise_aarch64.py.
"""

from __future__ import annotations

import ctypes
import functools
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics import cpu_qdepthwise
from edge_infer.engine.backends.cpu.tactics.cpu_qdepthwise import QDepthwiseNative
from edge_infer.engine.ops.quantize import qconv
from edge_infer.engine.tactics.quantized import QConvSpec
from tests.engine.backends.cpu import isa_builds
from tests.engine.backends.cpu.tactics.test_qconv_native import ACTS, EXP_ACTS

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

# x shape, kernel, strides, pads (t, l, b, r), dilations: odd sizes, partial vectors and
# channel groups, 3x3 / 5x5, s1 / s2, pads (each case runs on both paths)
CONVS = [
    ((1, 13, 9, 11), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((2, 10, 17, 15), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    ((1, 9, 12, 37), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((1, 7, 21, 45), (3, 3), (2, 2), (0, 1, 1, 0), (1, 1)),
    ((1, 11, 14, 14), (5, 5), (1, 1), (2, 2, 2, 2), (1, 1)),
    ((1, 6, 19, 70), (5, 5), (2, 2), (2, 2, 2, 2), (1, 1)),
    ((1, 5, 13, 40), (5, 5), (1, 1), (2, 1, 2, 3), (1, 1)),
    ((2, 16, 7, 7), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((1, 6, 16, 36), (3, 3), (1, 2), (2, 2, 2, 2), (2, 2)),
    ((1, 5, 9, 13), (5, 5), (2, 2), (2, 2, 2, 2), (1, 1)),  # 7 wide: two rows a vector
]


def make_case(
    conv: tuple,
    act: tuple[str, tuple[float, ...]],
    residual: str,
    z_dtype: Any,
    out_precision: str,
    x_dtype: Any,
    seed: int,
) -> tuple[QConvSpec, list[np.ndarray | None]]:
    """A random depthwise QConv layer and its inputs (outputs spread over the int8 range)."""
    x_shape, (kh, kw), strides, pads, dil = conv
    rng = np.random.default_rng(seed)
    n, c, h, w = x_shape
    ho = (h + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) // strides[0] + 1
    wo = (w + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) // strides[1] + 1
    out_shape = (n, c, ho, wo)
    weight = rng.integers(-127, 128, (c, 1, kh, kw)).astype(np.int8)
    weight[0, 0, 0, 0] = -127  # the extremes meet the extremes of x
    w_scale = rng.uniform(0.5, 2.0, c).astype(np.float32) / kh / 64
    x_scale = 0.05
    if np.dtype(x_dtype) == np.int8:
        x = rng.integers(-128, 128, x_shape).astype(np.int8)
        x.flat[::5] = -128
    else:  # some values exactly at half steps, some saturating
        x = (rng.standard_normal(x_shape) * 40 * x_scale).astype(x_dtype)
        x.flat[::7] = ((np.round(x.flat[::7] / x_scale) + 0.5) * x_scale).astype(x_dtype)
    bias = rng.integers(-4000, 4000, c).astype(np.int32)
    z, z_scale = None, 0.0
    if residual != "none":
        if np.dtype(z_dtype) == np.int8:
            z, z_scale = rng.integers(-128, 128, out_shape).astype(np.int8), 0.02
        else:
            z = rng.standard_normal(out_shape).astype(z_dtype)
    spec = QConvSpec(
        x_shape=x_shape,
        x_dtype=np.dtype(x.dtype),
        out_shape=out_shape,
        weight=weight,
        w_scale=w_scale,
        bias=bias,
        x_scale=x_scale,
        strides=strides,
        pads=pads,
        dilations=dil,
        group=c,
        activation=act[0],
        activation_params=act[1],
        residual=residual,
        z_dtype=None if z is None else np.dtype(z.dtype),
        z_scale=z_scale,
    )
    inputs = [x, weight, w_scale, bias, z]
    y = qconv(*inputs, **spec.attrs())
    out_scale = max(float(np.abs(y).max()), 1e-3) / 140.0  # some saturate past 127
    spec = QConvSpec(**{**spec.__dict__, "out_precision": out_precision, "out_scale": out_scale})
    return spec, inputs


def run_native(spec: QConvSpec, inputs: list, workers: int = 1, sliced: bool = False) -> np.ndarray:
    """The tactic's output; ``sliced``: input, output and residual are channel slices of
    bigger buffers (as concat elimination leaves them)."""
    dtype = {"fp32": np.float32, "fp16": np.float16, "int8": np.int8}[spec.out_precision]
    if sliced:
        n, c, ho, wo = spec.out_shape
        out = np.zeros((n, c + 3, ho, wo), dtype)[:, 2 : c + 2]
        inputs = [a if a is None or a.ndim != 4 else _channel_slice(a) for a in inputs]
    else:
        out = np.zeros(spec.out_shape, dtype)
    pool = WorkPool(workers) if workers > 1 else None
    try:
        QDepthwiseNative(spec).bind(inputs, [out], ScratchPool(pool))()
    finally:
        if pool is not None:
            pool.close()
    return np.ascontiguousarray(out)


def _channel_slice(a: np.ndarray) -> np.ndarray:
    big = np.zeros((a.shape[0], a.shape[1] + 2, *a.shape[2:]), a.dtype)
    big[:, 1:-1] = a
    return big[:, 1:-1]


def check(spec: QConvSpec, got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.dtype == want.dtype, what
    if spec.activation not in EXP_ACTS:
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    if got.dtype == np.int8:
        diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
        assert diff.max() <= 1 and (diff > 0).mean() <= 0.01, what
    else:
        g, w = got.astype(np.float64), want.astype(np.float64)
        rtol = 2e-6 if got.dtype == np.float32 else 1e-3
        np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-6, err_msg=what)


def test_not_applicable_to_other_convs() -> None:
    spec, _ = make_case(CONVS[0], ACTS[0], "none", None, "int8", np.int8, 0)
    assert QDepthwiseNative.applicable(spec)
    grouped = QConvSpec(
        **{**spec.__dict__, "group": 1, "weight": np.zeros((13, 13, 3, 3), np.int8)}
    )
    assert not QDepthwiseNative.applicable(grouped)
    assert not QDepthwiseNative.applicable(QConvSpec(**{**spec.__dict__, "out_scale": 1e-45}))


@pytest.mark.parametrize("grouped", [False, True], ids=["rows", "grouped"])
@pytest.mark.parametrize("k", range(len(CONVS)))
def test_geometry_activation_residual_storage(k: int, grouped: bool, monkeypatch) -> None:
    """Every geometry on both paths; over the cases every activation meets every residual
    mode, residual dtype and output storage."""
    monkeypatch.setattr(QDepthwiseNative, "_grouped", lambda self: grouped)
    for j in range(3):
        i = 3 * k + j
        act = ACTS[i % len(ACTS)]
        residual = ("none", "pre", "post")[(k + j) % 3]
        z_dtype = (np.float32, np.int8, np.float16)[i % 3]
        out_precision = ("int8", "fp32", "fp16")[(i // 3 + j) % 3]
        spec, inputs = make_case(CONVS[k], act, residual, z_dtype, out_precision, np.int8, i)
        want = qconv(*inputs, **spec.attrs())
        what = f"{CONVS[k]} {act} {residual} z={np.dtype(z_dtype).name} {out_precision}"
        check(spec, run_native(spec, inputs, workers=1 + j % 2), want, what)


@pytest.mark.parametrize("x_dtype", [np.float32, np.float16])
def test_float_input_is_quantized_as_the_reference(x_dtype) -> None:
    for k in (0, 3):
        spec, inputs = make_case(CONVS[k], ACTS[3], "pre", np.int8, "int8", x_dtype, k)
        check(spec, run_native(spec, inputs), qconv(*inputs, **spec.attrs()), f"{k}")


def test_channel_slices_and_threads() -> None:
    for k in (1, 2, 7):
        spec, inputs = make_case(CONVS[k], ACTS[1], "post", np.int8, "int8", np.int8, k)
        want = qconv(*inputs, **spec.attrs())
        check(spec, run_native(spec, inputs, workers=2, sliced=True), want, f"{k}")


def test_int8_rounding_ties_and_saturation() -> None:
    """Outputs exactly at half steps of out_scale (ties to even, not away) and far outside
    the int8 range (clipped), through the reciprocal's exact fallback."""
    spec, inputs = make_case(CONVS[0], ACTS[0], "none", None, "fp32", np.int8, 5)
    y = qconv(*inputs, **spec.attrs())
    scale = float(np.abs(y).max()) / 200.0
    # a scale that makes many y / scale land exactly on k + 0.5: y values are multiples of
    # x_scale * w_scale[c]; pick out_scale = 2 * that of channel 0
    tie_scale = 2.0 * float(spec.x_scale) * float(np.float64(spec.w_scale[0]))
    for out_scale in (scale, tie_scale):
        s = QConvSpec(**{**spec.__dict__, "out_precision": "int8", "out_scale": out_scale})
        want = qconv(*inputs, **s.attrs())
        check(s, run_native(s, inputs), want, f"out_scale {out_scale}")


def prove_none(monkeypatch) -> None:
    """No channel proved (qdw_requant): every int8 output takes the checked path."""
    real = cpu_qdepthwise.proved_multipliers
    monkeypatch.setattr(
        cpu_qdepthwise, "proved_multipliers", lambda *a: tuple(np.zeros_like(v) for v in real(*a))
    )


def tie_case(conv: tuple, case_seed: int, seed: int) -> tuple[QConvSpec, list]:
    """Small accumulators (inputs in [-20, 20], weights in [-1, 1], bias 1) at out_scale =
    2 x channel 0's multiplier: half of channel 0's outputs on a float32 half step that the
    reference's double quotient leaves on either side."""
    spec, inputs = make_case(conv, ACTS[0], "none", None, "int8", np.int8, case_seed)
    rng = np.random.default_rng(seed)
    x = rng.integers(-20, 21, spec.x_shape).astype(np.int8)
    weight = rng.integers(-1, 2, spec.weight.shape).astype(np.int8)
    bias = np.ones_like(inputs[3])
    tie = 2.0 * float(spec.x_scale) * float(np.float64(spec.w_scale[0]))
    s = QConvSpec(**{**spec.__dict__, "weight": weight, "bias": bias, "out_scale": tie})
    return s, [x, weight, inputs[2], bias, None]


def test_int8_near_halves_of_unproved_channels(monkeypatch) -> None:
    """No channel proved: the tie case's outputs on half steps must be redone exactly (both
    paths)."""
    prove_none(monkeypatch)
    s, inputs = tie_case(CONVS[0], 6, 6)
    want = qconv(*inputs, **s.attrs())
    for grouped in (False, True):
        monkeypatch.setattr(QDepthwiseNative, "_grouped", lambda self, g=grouped: g)
        check(s, run_native(s, inputs), want, f"grouped={grouped}")


_BUILDS = {
    "avx512-no-vnni": ["-march=skylake-avx512"],  # the float32 16-channel grouped path
    "avx512-vnni-no-vbmi": ["-march=cascadelake"],  # rows path: windows without vpermb
    "avx2-f16c": ["-mavx2", "-mfma", "-mf16c"],
    "avx2-soft-f16": ["-mavx2", "-mfma", "-DEI_SOFT_F16"],
    "x86-64": isa_builds.X86_BUILDS["x86-64"][0],
}


#: what build_library compiles
_SOURCES = ("conv_int8_dw.c", "reformat.c", "qgemm_packed.c", "pool.c", "args.c")


def _runs_here(name: str) -> bool:
    needs = {"avx512f", "avx512bw", "avx512vl", "avx512dq"} if name.startswith("avx512") else set()
    if "-vnni-" in name:
        needs.add("avx512_vnni")
    return needs <= isa_builds.host_flags()


@functools.cache
def build_library(flags: tuple[str, ...]) -> Any:
    """conv_int8_dw.c, reformat.c, qgemm_packed.c and the pool compiled with ``flags``
    instead of the device's CPU option, as a library (ctypes); once per session
    (test_int8_layers.py shares them). Through isa_builds: the objects are kept between test
    runs, and the first call compiles the other builds this host runs beside its own."""
    others = [f for name, f in _BUILDS.items() if tuple(f) != flags and _runs_here(name)]
    lib = isa_builds.build_kernels(Path(), _SOURCES, list(flags), also=others)
    for name in ("conv_int8_dw_f32", "reformat_f32"):
        getattr(lib, name).restype = None
        getattr(lib, name).argtypes = [ctypes.POINTER(native.ARGS[name])]
    lib.pool_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
    return lib


def runnable_build(name: str) -> Any:
    """build_library of _BUILDS[name], skipping the test where this host cannot run it (an
    AVX-512 build on a CPU without it would die of SIGILL, taking pytest with it)."""
    if (
        native._compiler() is None
        or "x86_64" not in subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout
    ):
        pytest.skip("x86-64 builds")
    if name.startswith("avx512"):
        isa_builds.need_features({"avx512f", "avx512bw", "avx512vl", "avx512dq"})
    if "-vnni-" in name:
        isa_builds.need_features({"avx512_vnni"})
    return build_library(tuple(_BUILDS[name]))


#: the epilogues a path test runs each geometry with: (output precision, residual)
EPILOGUES = [("int8", "none"), ("int8", "none"), ("fp32", "post"), ("int8", "pre")]


def library_workers(build: str, monkeypatch) -> tuple[int, ...]:
    """For a path test: run ``build``'s library (``native``: this CPU's, else another build)
    and return the thread counts to run it with (the other builds run without the engine's
    pool); row chunks even on small planes."""
    monkeypatch.setattr(cpu_qdepthwise, "MIN_CHUNK", 1)
    if build == "native":
        return (1, 2)
    built = runnable_build(build)
    monkeypatch.setattr(native, "library", lambda: built)
    return (1,)


def check_epilogues(
    conv: tuple, k: int, seed: int, workers: tuple[int, ...], slicings: tuple[bool, ...] = (False,)
) -> None:
    """``conv`` under each of :data:`EPILOGUES` (activations in turn), bit for bit."""
    for j, (out_precision, residual) in enumerate(EPILOGUES):
        act = ACTS[(k + j) % 4]
        spec, inputs = make_case(conv, act, residual, np.int8, out_precision, np.int8, seed + j)
        want = qconv(*inputs, **spec.attrs())
        for n in workers:
            for sliced in slicings:
                got = run_native(spec, inputs, workers=n, sliced=sliced)
                check(spec, got, want, f"{conv} {act} {out_precision} {residual} x{n} {sliced=}")


def check_ties(convs: list, seed: int, workers: tuple[int, ...]) -> None:
    """Small accumulators at out_scale = 2 x channel 0's multiplier: half of its outputs on
    a float32 half step (unproved: redone exactly; proved channels are the others)."""
    for k, conv in enumerate(convs):
        s, inputs = tie_case(conv, seed + k, k)
        want = qconv(*inputs, **s.attrs())
        for n in workers:
            check(s, run_native(s, inputs, workers=n), want, f"{conv} x{n}")


@pytest.fixture(scope="module", params=sorted(_BUILDS))
def path_lib(request) -> Any:
    return runnable_build(request.param)


def test_every_vector_path(path_lib, monkeypatch) -> None:
    monkeypatch.setattr(native, "library", lambda: path_lib)
    monkeypatch.setattr(QDepthwiseNative, "_s1", lambda self: False)  # test_qdepthwise_s1
    for k, conv in enumerate(CONVS):
        for grouped in (False, True):
            monkeypatch.setattr(QDepthwiseNative, "_grouped", lambda self, g=grouped: g)
            act = ACTS[(k + grouped) % len(ACTS)]
            residual = ("none", "pre", "post")[k % 3]
            out_precision = ("int8", "fp32", "fp16")[(k + grouped) % 3]
            x_dtype = np.float32 if k % 4 == 3 else np.int8
            z_dtype = (np.int8, np.float32, np.float16)[k % 3]
            spec, inputs = make_case(conv, act, residual, z_dtype, out_precision, x_dtype, k)
            want = qconv(*inputs, **spec.attrs())
            check(spec, run_native(spec, inputs), want, f"{conv} grouped={grouped} {act}")


def test_grouping_thresholds_are_the_documented_ones() -> None:
    assert cpu_qdepthwise.GROUPED_MAX_WIDTH <= cpu_qdepthwise.GROUPED_STRIDED_MAX_WIDTH


@pytest.mark.parametrize("path", ["grouped", "s1"])
@pytest.mark.parametrize("first", ["top", "bottom"])
def test_row_chunks_write_only_their_rows(path: str, first: str, monkeypatch) -> None:
    """Output rows split in two chunks run one after the other (either first), the split
    inside a vector of 8 pixels (7 wide): a chunk that wrote a pixel of the other's, before
    or after its own, would leave a wrong byte (the direct int8 path's stores, 11 channels:
    a partial group)."""
    monkeypatch.setattr(QDepthwiseNative, "_grouped", lambda self: path == "grouped")
    if path == "grouped":
        monkeypatch.setattr(QDepthwiseNative, "_s1", lambda self: False)
    monkeypatch.setattr(cpu_qdepthwise, "S1_MIN_WIDTH", 1)  # "s1": where the build has it
    order = [(3, None), (0, 3)] if first == "bottom" else [(0, 3), (3, None)]
    monkeypatch.setattr(
        QDepthwiseNative,
        "_chunks",
        lambda self, c, ho, workers: [(0, c, a, ho if b is None else b) for a, b in order],
    )
    for k, act in enumerate([ACTS[0], ("clip", (0.0, 6.0))]):
        conv = ((1, 11, 7, 7), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1))
        spec, inputs = make_case(conv, act, "none", None, "int8", np.int8, 90 + k)
        want = qconv(*inputs, **spec.attrs())
        check(spec, run_native(spec, inputs), want, f"{path} {first} {act}")
