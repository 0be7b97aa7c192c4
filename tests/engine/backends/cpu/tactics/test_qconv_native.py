"""qconv_native (kernels/conv_int8.c) against the reference QConv, bit for bit.

int8 stores and int32-exact paths must agree exactly for the activations computed without
exp (none, relu, leaky_relu, clip, hard_*); for sigmoid, silu and tanh the kernel's float32
exp differs from numpy's in the last bit now and then, so an fp32 result may differ by a few
ulps (relative 1e-6) and an int8 one by 1 step on at most 1 % of the outputs.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics.cpu_qconv import PROVED_ROWS, QConvNative
from edge_infer.engine.backends.cpu.tactics.qconv_blocks import VNNI_MR
from edge_infer.engine.ops.quantize import qconv
from edge_infer.engine.tactics.quantized import QConvSpec
from tests.engine.backends.cpu import isa_builds

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

EXP_ACTS = {"sigmoid", "silu", "tanh"}
ACTS = [
    ("", ()),
    ("relu", ()),
    ("leaky_relu", (0.1,)),
    ("clip", (0.0, 6.0)),
    ("sigmoid", ()),
    ("silu", ()),
    ("hard_swish", ()),
    ("hard_sigmoid", (0.2, 0.5)),
    ("tanh", ()),
]
# x shape, Cout, kernel, strides, pads (t, l, b, r), dilations, group
CONVS = [
    ((1, 16, 12, 12), 24, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((2, 13, 9, 11), 7, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((1, 8, 17, 15), 20, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),
    ((1, 3, 21, 19), 16, (3, 3), (2, 2), (1, 0, 1, 2), (1, 1), 1),
    ((1, 12, 10, 10), 12, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 1),
    ((1, 8, 11, 9), 6, (5, 5), (1, 2), (2, 2, 2, 2), (1, 1), 1),
    ((2, 12, 8, 8), 18, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 3),
    ((1, 6, 9, 9), 6, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 6),
    ((1, 33, 7, 7), 50, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1),
    ((1, 128, 7, 7), 200, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),  # calls split by channel
    ((1, 64, 20, 20), 70, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    # small maps, deep: AVX-512 VNNI's output-channel tiles (a partial 48-channel block;
    # with 2 workers a call from channel 48)
    ((1, 256, 5, 5), 64, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((2, 192, 7, 7), 96, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    # rows of 64 columns and more: the layout's 64-column blocks and their tails
    ((1, 8, 5, 70), 12, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((1, 14, 2, 133), 10, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((1, 5, 4, 140), 8, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),
]


def make_case(
    conv: tuple,
    act: tuple[str, tuple[float, ...]],
    residual: str,
    z_dtype: type | None,
    out_precision: str,
    x_dtype: type,
    seed: int,
) -> tuple[QConvSpec, list[np.ndarray | None]]:
    """A random QConv layer and its inputs (outputs spread over the int8 range)."""
    x_shape, cout, (kh, kw), strides, pads, dil, group = conv
    rng = np.random.default_rng(seed)
    cin = x_shape[1]
    n, _, h, w = x_shape
    ho = (h + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) // strides[0] + 1
    wo = (w + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) // strides[1] + 1
    out_shape = (n, cout, ho, wo)
    weight = rng.integers(-127, 128, (cout, cin // group, kh, kw)).astype(np.int8)
    w_scale = rng.uniform(0.5, 2.0, cout).astype(np.float32) / np.sqrt(weight[0].size) / 64
    x_scale = 0.05
    if x_dtype == np.int8:
        x = rng.integers(-128, 128, x_shape).astype(np.int8)
    else:  # some values exactly at half steps, some saturating
        x = (rng.standard_normal(x_shape) * 40 * x_scale).astype(np.float32)
        x.flat[::7] = (np.round(x.flat[::7] / x_scale) + 0.5).astype(np.float32) * x_scale
    bias = rng.integers(-4000, 4000, cout).astype(np.int32)
    z = None
    z_scale = 0.0
    if residual != "none":
        if z_dtype == np.int8:
            z, z_scale = rng.integers(-128, 128, out_shape).astype(np.int8), 0.02
        else:
            z = rng.standard_normal(out_shape).astype(np.float32)
    spec = QConvSpec(
        x_shape=x_shape,
        x_dtype=np.dtype(x_dtype),
        out_shape=out_shape,
        weight=weight,
        w_scale=w_scale,
        bias=bias,
        x_scale=x_scale,
        strides=strides,
        pads=pads,
        dilations=dil,
        group=group,
        activation=act[0],
        activation_params=act[1],
        residual=residual,
        z_dtype=None if z is None else np.dtype(z.dtype),
        z_scale=z_scale,
        out_precision="fp32",
    )
    inputs = [x, weight, w_scale, bias, z]
    y = qconv(*inputs, **spec.attrs())
    out_scale = max(float(np.abs(y).max()), 1e-3) / 140.0  # some saturate past 127
    spec = QConvSpec(**{**spec.__dict__, "out_precision": out_precision, "out_scale": out_scale})
    return spec, inputs


def run_native(spec: QConvSpec, inputs: list, workers: int = 1) -> np.ndarray:
    dtype = {"fp32": np.float32, "fp16": np.float16, "int8": np.int8}[spec.out_precision]
    out = np.zeros(spec.out_shape, dtype)
    pool = WorkPool(workers) if workers > 1 else None
    try:
        QConvNative(spec).bind(inputs, [out], ScratchPool(pool))()
    finally:
        if pool is not None:
            pool.close()
    return out


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
        np.testing.assert_allclose(g, w, rtol=1e-6 if got.dtype == np.float32 else 1e-3,
                                   atol=1e-6, err_msg=what)  # fmt: skip


@pytest.mark.parametrize("conv", CONVS, ids=lambda c: f"{c[0]}-{c[1]}-k{c[2][0]}s{c[3][0]}g{c[6]}")
def test_every_geometry_int8_in_int8_out(conv) -> None:
    for k, act in enumerate(ACTS):
        spec, inputs = make_case(conv, act, "none", None, "int8", np.int8, seed=k)
        want = qconv(*inputs, **spec.attrs())
        check(spec, run_native(spec, inputs, workers=1 + k % 2), want, f"{act}")


def tile_choice(T: int, cout: int, g1: int, wg: int, ho: int, wo: int) -> int:
    """conv_int8.c's register tile for a call over grid positions [0, g1): 7 or 6 positions
    of an output-channel tile, 0 for position tiles."""
    lib = native.library()
    fn = lib.qconv_int8_tile
    fn.restype, fn.argtypes = ctypes.c_long, [ctypes.c_void_p]
    fields = {name: None for name, kind in native.ARGS["qconv_int8_f32"]._fields_}
    fields.update({k: 0 for k, v in fields.items() if k not in ("layout", "toff", "wts",
                   "bias", "wsum", "mult", "out", "z")})  # fmt: skip
    fields.update(T=T, coutp=-(-cout // 48) * 48, cout=cout, g0=0, g1=g1, wg=wg, ho=ho, wo=wo)
    args = native.ARGS["qconv_int8_f32"](**fields)
    return int(fn(ctypes.byref(args)))


def test_output_channel_tiles() -> None:
    """AVX-512 VNNI: a ResNet-50 3x3 layer at 14x14 (16 grid columns a row for 14, 256
    channels) takes 7-position x 48-channel tiles (the last 16 channels a tile of one
    vector), a 7x7 map too, a 6x6 map 6 x 64, a 1x1 of few terms position tiles; layers
    that take each tile, with last tiles of fewer channels (7 x 32, 6 x 16; with 2 workers
    calls of part of the channels and grid strips), give the reference's bits under every
    epilogue."""
    if native.library().qconv_int8_path() == 4:
        assert tile_choice(576, 256, 224, 16, 14, 14) == 7
        assert tile_choice(128, 2048, 49, 7, 7, 7) == 7
        assert tile_choice(64, 1024, 196, 14, 14, 14) == 0
        assert tile_choice(216, 128, 48, 8, 6, 6) == 6
    convs = [
        (((1, 96, 14, 14), 128, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1), 7),
        (((1, 96, 6, 6), 80, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1), 6),
    ]
    cases = [
        (("relu", ()), "none", None, "int8"),
        (("", ()), "pre", np.int8, "int8"),
        (("clip", (0.0, 6.0)), "post", np.float32, "fp32"),
        (("silu", ()), "none", None, "fp16"),
        (("silu", ()), "none", None, "int8"),
    ]
    for (conv, tile), (k, (act, residual, z_dtype, out_precision)) in itertools.product(
        convs, enumerate(cases)
    ):
        spec, inputs = make_case(conv, act, residual, z_dtype, out_precision, np.int8, seed=k)
        if native.library().qconv_int8_path() == 4:
            assert QConvNative(spec)._oc_tile() == tile
        want = qconv(*inputs, **spec.attrs())
        got = run_native(spec, inputs, workers=1 + k % 2)
        check(spec, got, want, f"{conv[0]} {act} {residual} {out_precision}")


@pytest.mark.skipif(
    not native.available() or native.library().qconv_int8_path() != 4,
    reason="blocked weights only on the AVX-512 VNNI path",
)
@contextlib.contextmanager
def gemm_calls() -> Iterator[list[dict]]:
    """The fields of every qconv_int8_f32 call bound inside the block."""
    made: list[dict] = []
    init = native.NativeCall.__init__

    def spy(self: Any, name: str, fields: Any, keep: Any) -> None:
        init(self, name, fields, keep)
        if name == "qconv_int8_f32":
            made.append(fields)

    native.NativeCall.__init__ = spy  # type: ignore[method-assign]
    try:
        yield made
    finally:
        native.NativeCall.__init__ = init  # type: ignore[method-assign]


def run_tactic(tactic: QConvNative, inputs: list, workers: int) -> np.ndarray:
    """``tactic`` bound on ``workers`` threads and run once: its int8 output."""
    out = np.zeros(tactic.spec.out_shape, np.int8)
    pool = WorkPool(workers) if workers > 1 else None
    try:
        tactic.bind(inputs, [out], ScratchPool(pool))()
    finally:
        if pool is not None:
            pool.close()
    return out


def test_position_tiles_read_blocked_weights() -> None:
    """AVX-512 VNNI: a layer of position tiles binds its term rows a block of 6 channels at
    a time (conv_int8.c wblk), every GEMM call pointing at its first channel's block (2
    workers split this one at channels 24 and 48); an output-channel tile layer keeps the
    rows alone. Bit for bit: the tests above (through wblk on this path)."""
    conv = ((1, 512, 4, 4), 96, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)  # by channels
    spec, inputs = make_case(conv, ("relu", ()), "none", None, "int8", np.int8, seed=3)
    tactic = QConvNative(spec)
    blocked, p = tactic._blocked(), tactic._prepared()
    assert blocked is not None
    T, coutp = p["terms"], p["coutp"]
    assert blocked.shape == (1, coutp // VNNI_MR, T, VNNI_MR)
    for b, t, i in [(0, 0, 0), (3, T - 1, 5), (coutp // VNNI_MR - 1, 2, 1)]:
        assert blocked[0, b, t, i] == p["wts"][0, t, b * VNNI_MR + i]
    with gemm_calls() as made:
        out = run_tactic(tactic, inputs, 2)
    check(spec, out, qconv(*inputs, **spec.attrs()), "2 workers")
    base = blocked.ctypes.data
    starts = {(f["wts"] - p["wts"].ctypes.data) // 4: f["wblk"] for f in made}
    assert starts and all(w == base + 4 * o0 * T for o0, w in starts.items())
    deep = ((1, 96, 7, 7), 128, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1)
    spec, _ = make_case(deep, ("relu", ()), "none", None, "int8", np.int8, seed=4)
    assert QConvNative(spec)._oc_tile() and QConvNative(spec)._blocked() is None


def test_output_channel_tiles_read_blocked_weights() -> None:
    """AVX-512 VNNI: a layer whose whole grid takes output-channel tiles binds its term rows a
    vector of 16 channels at a time (conv_int8.c wblk_oc), each GEMM call pointing at its
    first channel's vector; on 2 workers the calls split the channels into the threads'
    equal shares (64 and 64: 48 + 16 each, where whole 48-channel tiles from channel 0 gave
    96 and 32), the position tiles' blocks none. Bit for bit: here and
    test_output_channel_tiles (through wblk_oc on this path)."""
    if native.library().qconv_int8_path() != 4:
        pytest.skip("the AVX-512 VNNI path only")
    deep = ((1, 96, 7, 7), 128, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1)
    spec, inputs = make_case(deep, ("relu", ()), "pre", np.int8, "int8", np.int8, seed=4)
    tactic = QConvNative(spec)
    assert tactic._oc_tile() == 7 and tactic._blocked() is None
    blocked, p = tactic._blocked_oc(), tactic._prepared()
    assert blocked is not None
    T, coutp = p["terms"], p["coutp"]
    assert blocked.shape == (1, coutp // 16, T, 16)
    for b, t, i in [(0, 0, 0), (1, T - 1, 15), (5, 5, 7)]:
        assert blocked[0, b, t, i] == p["wts"][0, t, b * 16 + i]
    for workers in (1, 2):
        with gemm_calls() as made:
            out = run_tactic(tactic, inputs, workers)
        check(spec, out, qconv(*inputs, **spec.attrs()), f"{workers} workers")
        base = blocked.ctypes.data
        starts = {(f["wts"] - p["wts"].ctypes.data) // 4: f["wblk_oc"] for f in made}
        assert all(w == base + 4 * o0 * T for o0, w in starts.items())
        sizes = [f["cout"] for f in made]
        assert sizes == ([128] if workers == 1 else [48, 16, 48, 16]), sizes
    spec, _ = make_case(CONVS[0], ("relu", ()), "none", None, "int8", np.int8, seed=4)
    assert QConvNative(spec)._blocked_oc() is None


@pytest.mark.parametrize(
    "residual,z_dtype,out_precision,x_dtype",
    [
        case
        for case in itertools.product(
            ["none", "pre", "post"], [np.float32, np.int8], ["fp32", "fp16", "int8"],
            [np.int8, np.float32],
        )
        if case[0] != "none" or case[1] == np.float32  # no residual: its dtype is moot
    ],
)  # fmt: skip
def test_epilogue_and_storage(residual, z_dtype, out_precision, x_dtype) -> None:
    for k, conv in enumerate(CONVS[:4]):
        act = ACTS[(k * 3 + len(residual)) % len(ACTS)]
        spec, inputs = make_case(conv, act, residual, z_dtype, out_precision, x_dtype, seed=k)
        want = qconv(*inputs, **spec.attrs())
        check(spec, run_native(spec, inputs, workers=2), want, f"{conv} {act}")


@pytest.mark.parametrize("conv", CONVS[-3:], ids=lambda c: f"{c[0]}-k{c[2][0]}s{c[3][0]}")
def test_float_input_wide_rows(conv) -> None:
    """A float input quantized in the layout, its rows wider than a 64-column block."""
    for k, act in enumerate((ACTS[0], ACTS[5])):
        spec, inputs = make_case(conv, act, "none", None, "int8", np.float32, seed=k)
        want = qconv(*inputs, **spec.attrs())
        check(spec, run_native(spec, inputs, workers=1 + k), want, f"{act}")


# unpadded 1x1 stride-1 layers of an int8 input: chunks of positions with their own layouts
# (two chunks of one image: 512 channels over 400 positions; three of each of two images
# with 2 workers, the last short)
CHUNKED = [
    ((1, 512, 20, 20), 40, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((2, 16, 12, 12), 24, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
]


@pytest.mark.parametrize("conv", CHUNKED, ids=lambda c: f"{c[0]}-{c[1]}")
@pytest.mark.parametrize(
    "residual,z_dtype,out_precision",
    [("none", None, "int8"), ("pre", np.int8, "int8"), ("post", np.float32, "fp32"),
     ("pre", np.float32, "fp16")],
)  # fmt: skip
def test_position_chunks(conv, residual, z_dtype, out_precision) -> None:
    for k, act in enumerate((ACTS[1], ACTS[3], ACTS[5])):
        spec, inputs = make_case(conv, act, residual, z_dtype, out_precision, np.int8, seed=k)
        want = qconv(*inputs, **spec.attrs())
        for workers in (1, 2):
            check(spec, run_native(spec, inputs, workers), want, f"{act} {workers} workers")


def tie_case() -> tuple[QConvSpec, list]:
    """Requantization landing exactly on halves (acc * 2^-4 / 2^-3 = acc / 2), and a float
    input whose every value quantizes to a half: rint rounds them half to even."""
    spec, inputs = make_case(CONVS[1], ("", ()), "none", None, "int8", np.float32, seed=5)
    x = (np.arange(inputs[0].size) % 21 - 10).reshape(inputs[0].shape) * 0.125 + 0.0625
    inputs[0] = x.astype(np.float32)  # at x_scale 0.125: k + 0.5
    inputs[2] = np.full(spec.cout, 0.5, np.float32)  # y = acc * 0.125 * 0.5
    spec = QConvSpec(
        **{**spec.__dict__, "x_scale": 0.125, "w_scale": inputs[2], "out_scale": 0.125}
    )
    return spec, inputs


def test_int8_ties_round_half_to_even() -> None:
    spec, inputs = tie_case()
    want = qconv(*inputs, **spec.attrs())
    assert (np.abs(want) < 127).mean() > 0.3  # not all saturated
    for workers in (1, 2):
        np.testing.assert_array_equal(run_native(spec, inputs, workers), want)


def inexact_tie_case() -> tuple[QConvSpec, list]:
    """Ties where 1/scale is inexact: scales 103 * 2^-10, float input values
    (k + 0.5) * x_scale and y = acc * 103 * 2^-11 (y / out_scale = acc / 2). x * (1/x_scale)
    and y * (1/out_scale) then land a hair off the half, on either side; the kernels must see
    that and round the quotient (half to even). leaky_relu (alpha 0.5: negative ties at
    acc = 2 mod 4) keeps the epilogue off the fast path (the double-precision quantize8 and
    quantize_row)."""
    spec, inputs = make_case(
        CONVS[1], ("leaky_relu", (0.5,)), "none", None, "int8", np.float32, seed=6
    )
    s = 103.0 / 1024
    x = (np.arange(inputs[0].size) % 33 - 16).reshape(inputs[0].shape) * s + s / 2
    inputs[0] = x.astype(np.float32)
    inputs[1] = np.sign(inputs[1]).astype(np.int8)  # small sums: few saturate
    inputs[2] = np.full(spec.cout, 0.5, np.float32)  # mult = s * 0.5
    inputs[3] = np.zeros(spec.cout, np.int32)
    fields = {"weight": inputs[1], "w_scale": inputs[2], "bias": inputs[3]}
    spec = QConvSpec(**{**spec.__dict__, **fields, "x_scale": s, "out_scale": s})
    return spec, inputs


def test_int8_ties_with_inexact_inverse_scales() -> None:
    spec, inputs = inexact_tie_case()
    want = qconv(*inputs, **spec.attrs())
    assert (np.abs(want.astype(np.float64)) < 127).mean() > 0.8  # few saturated
    # the float input: every value a tie that x * float64(1/s) misses on some values
    x = inputs[0].astype(np.float64)
    assert np.any(np.rint(x * (1 / spec.x_scale)) != np.rint(x / spec.x_scale))
    acc = np.arange(-200, 200)  # and so do the outputs' ties
    y = (acc * (spec.x_scale * 0.5)).astype(np.float32).astype(np.float64)
    assert np.any(np.rint(y * (1 / spec.out_scale)) != np.rint(y / spec.out_scale))
    for workers in (1, 2):
        np.testing.assert_array_equal(run_native(spec, inputs, workers), want)


# -- the other dot-product paths of this CPU, each compiled into a library of its own -----

PATHS = {1: "generic C", 2: "AVX2 vpmaddwd", 3: "VNNI 256", 4: "AVX-512 VNNI"}
_PATH_FEATURES = {2: ("__AVX2__",), 3: ("__AVX512VNNI__", "__AVX512VL__"), 4: ("__AVX512VNNI__",)}


def _macros() -> str:
    cc = native._compiler()
    assert cc is not None
    return subprocess.run(
        [cc, *native._flags()[:2], "-dM", "-E", "-x", "c", "/dev/null"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def runnable_paths() -> list[int]:
    """The paths of PATHS this CPU can run."""
    macros = _macros()
    return [p for p in sorted(PATHS) if all(f" {m} " in macros for m in _PATH_FEATURES.get(p, ()))]


def path_library(path: int, folder: Path) -> Any:
    """conv_int8.c with EI_INT8_PATH=path, and the pool, as a library (ctypes): compiled
    once (isa_builds' object cache), beside the other paths this CPU runs (asked for next by
    the parametrized tests), in parallel. ``folder`` is unused (kept for the callers)."""
    del folder
    cc = native._compiler()
    assert cc is not None
    flags = [f for f in native._flags() if f != "-shared"]
    sources = [native.KERNELS / f for f in ("conv_int8.c", "pool.c", "args.c")]
    others = [[*flags, f"-DEI_INT8_PATH={p}"] for p in runnable_paths() if p != path]
    objs = isa_builds.objects(cc, [*flags, f"-DEI_INT8_PATH={path}"], sources, also=others)
    target = isa_builds.link(cc, objs, native._flags(), f"qconv-path{path}.so")
    lib = ctypes.CDLL(str(target))
    lib.pool_create.restype = ctypes.c_void_p
    lib.pool_create.argtypes = [ctypes.c_long, ctypes.c_long]
    lib.pool_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
    lib.pool_destroy.argtypes = [ctypes.c_void_p]
    for name in ("qconv_split_f32", "qconv_int8_f32"):
        getattr(lib, name).restype = None
        getattr(lib, name).argtypes = [ctypes.POINTER(native.ARGS[name])]
    assert lib.qconv_int8_path() == path
    return lib


@pytest.fixture(scope="module", params=sorted(PATHS), ids=lambda p: PATHS[p])
def path_lib(request, tmp_path_factory):
    macros = _macros()
    if not all(f" {m} " in macros for m in _PATH_FEATURES.get(request.param, ())):
        pytest.skip(f"this CPU cannot run the {PATHS[request.param]} path")
    return path_library(request.param, tmp_path_factory.mktemp("qconv"))


def float32_tie_case(hw: tuple[int, int]) -> tuple[QConvSpec, list]:
    """Ties that y * float32(1/s) misses: scale 117 * 2^-10 (float32(1/s) about 2^-24 off,
    relatively), y = acc * s / 2 with acc = x0 + x1 (odd and even, mostly |acc| > 190), so
    y / s = acc / 2 lies on a half; in float32 the product rounds off the half for some
    |acc| > 200 (the exact y / s: half to even). leaky_relu keeps it off the fast epilogue
    (the AVX2 epilogue's float32 quotient: its near-half lanes must be redone as the
    quotient in double). h x w with h w = 20 or 28 mod 64: a run's last 3 or 4 vectors, the
    last partial."""
    x_shape = (1, 2, *hw)
    spec, inputs = make_case(
        (x_shape, 8, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
        ("leaky_relu", (0.5,)), "none", None, "int8", np.int8, seed=7,
    )  # fmt: skip
    s = 117.0 / 1024
    n = hw[0] * hw[1]
    big = np.r_[np.arange(-128, -95), np.arange(96, 128)]  # |acc| mostly past 190
    i = np.arange(n)
    x = np.stack([big[i % 65], big[(7 * i + i // 65) % 65]])
    inputs[0] = x.reshape(x_shape).astype(np.int8)
    w = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]] * 2, np.int8)
    inputs[1] = w.reshape(8, 2, 1, 1)
    inputs[2] = np.full(8, 0.5, np.float32)  # mult = s / 2
    inputs[3] = np.zeros(8, np.int32)
    fields = {"weight": inputs[1], "w_scale": inputs[2], "bias": inputs[3]}
    spec = QConvSpec(**{**spec.__dict__, **fields, "x_scale": s, "out_scale": s})
    return spec, inputs


@pytest.mark.parametrize("hw", [(12, 23), (4, 71)])
def test_int8_ties_float32_quotient_misses(hw, path_lib, monkeypatch) -> None:
    spec, inputs = float32_tie_case(hw)
    want = qconv(*inputs, **spec.attrs())
    y = np.float32(spec.x_scale * 0.5) * np.arange(-255, 254, 2, dtype=np.float32)
    t32 = y * np.float32(1.0 / spec.out_scale)
    missed = np.rint(t32) != np.rint(y.astype(np.float64) / spec.out_scale)
    assert missed.sum() > 10  # the float32 quotient misses ties in this range ...
    acc = inputs[0][0, 0].astype(np.int32) + inputs[0][0, 1]
    assert np.isin(acc, np.arange(-255, 254, 2)[missed]).sum() > 10  # ... which the layer has
    monkeypatch.setattr(native, "library", lambda: path_lib)
    np.testing.assert_array_equal(run_native(spec, inputs), want)


def test_float_input_ties_float32_quotient_misses(path_lib, monkeypatch) -> None:
    """float32_tie_case on a float input whose values lie on half steps, (k + 0.5) s for
    |k| up to 140: x * float32(1/s) rounds off the half for some (the float input rows'
    float32 quotient: near-half lanes redone as the quotient in double)."""
    spec, inputs = float32_tie_case((12, 23))
    s = spec.x_scale
    k = np.arange(inputs[0].size).reshape(inputs[0].shape) * 7 % 281 - 140
    x = ((k + 0.5) * s).astype(np.float32)
    missed = np.rint(x * np.float32(1.0 / s)) != np.rint(x.astype(np.float64) / s)
    assert missed.sum() > 10
    inputs[0] = x
    spec = QConvSpec(**{**spec.__dict__, "x_dtype": np.dtype(np.float32)})
    want = qconv(*inputs, **spec.attrs())
    monkeypatch.setattr(native, "library", lambda: path_lib)
    np.testing.assert_array_equal(run_native(spec, inputs), want)


def test_every_path_of_this_cpu(path_lib, monkeypatch) -> None:
    monkeypatch.setattr(native, "library", lambda: path_lib)
    for spec, inputs in (tie_case(), inexact_tie_case()):
        want = qconv(*inputs, **spec.attrs())
        np.testing.assert_array_equal(run_native(spec, inputs), want)
    for k, conv in enumerate(CONVS):
        act = ACTS[k % len(ACTS)]
        residual = ("none", "pre", "post")[k % 3]
        out_precision = ("int8", "fp32", "fp16")[k % 3]
        x_dtype = np.float32 if k % 4 == 3 else np.int8
        spec, inputs = make_case(conv, act, residual, np.int8, out_precision, x_dtype, seed=k)
        want = qconv(*inputs, **spec.attrs())
        check(spec, run_native(spec, inputs, workers=1 + k % 2), want, f"{conv} {act}")


def test_batch_chunks_every_path(path_lib, monkeypatch) -> None:
    """A batch's 1x1 positions in chunks across its images (qconv_chunks._batch_chunks, on
    every path here, not only the ones BATCH_CHUNK_PATHS takes them on): the runs to each
    image's end, through every path's epilogue (int8, float32, float16 out, residuals)."""
    from edge_infer.engine.backends.cpu.tactics import qconv_chunks

    monkeypatch.setattr(native, "library", lambda: path_lib)
    monkeypatch.setattr(qconv_chunks, "BATCH_CHUNK_PATHS", {path_lib.qconv_int8_path()})
    cases = [
        (((8, 24, 7, 7), 20), ("relu", ()), "pre", np.int8, "int8"),
        (((3, 20, 5, 9), 13), ("clip", (0.0, 6.0)), "none", None, "int8"),
        (((2, 16, 10, 10), 8), ("silu", ()), "post", np.float32, "fp32"),
        (((3, 8, 6, 11), 30), ("", ()), "pre", np.float32, "fp16"),
    ]
    for k, ((shape, cout), act, residual, z_dtype, out_precision) in enumerate(cases):
        conv = (shape, cout, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
        spec, inputs = make_case(conv, act, residual, z_dtype, out_precision, np.int8, seed=k)
        want = qconv(*inputs, **spec.attrs())
        for workers in (1, 2):
            check(spec, run_native(spec, inputs, workers), want, f"{shape} {workers}")


# layout rows whose last columns are not a whole 64-column block: (stride 2) 64, 40 and 63
# columns a phase row (the masked tail's whole block, part of one, one short of one), 127
# columns (stride 1: a block and a 63-column tail), 3 and 2 columns (scalar)
ROW_TAILS = [
    ((1, 8, 3, 128), 6, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),
    ((1, 8, 4, 80), 6, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),
    ((1, 8, 3, 126), 6, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),
    ((1, 4, 3, 127), 6, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((1, 8, 3, 3), 6, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((1, 8, 5, 5), 6, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),
]


def test_layout_row_tails(path_lib, monkeypatch) -> None:
    """The layout's last columns of a row (AVX-512: masked loads, the real columns copied
    out; a whole-vector store would overwrite the right padding or another quad's plane),
    int8 and float inputs, every path: the reference's bits."""
    monkeypatch.setattr(native, "library", lambda: path_lib)
    for k, conv in enumerate(ROW_TAILS):
        for x_dtype in (np.int8, np.float32):
            spec, inputs = make_case(conv, ACTS[0], "none", None, "int8", x_dtype, seed=k)
            want = qconv(*inputs, **spec.attrs())
            got = run_native(spec, inputs, workers=1 + k % 2)
            np.testing.assert_array_equal(got, want, err_msg=f"{conv} {x_dtype}")


def test_proved_requantization(path_lib, monkeypatch) -> None:
    """An int8 output with no residual and no activation, relu or clip: the channels with a
    proved multiplier (tactics/qdw_requant.py; most of them) store clamp(rint(acc * vmq), lo,
    hi) with no check near half steps, on every path the reference's bits; the kernel reads
    those rows (a multiplier 1.5x off changes the outputs); a residual proves none."""
    monkeypatch.setattr(native, "library", lambda: path_lib)
    conv = ((1, 16, 9, 9), 20, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    for k, act in enumerate([("", ()), ("relu", ()), ("clip", (0.0, 3.0))]):
        spec, inputs = make_case(conv, act, "none", None, "int8", np.int8, seed=k)
        want = qconv(*inputs, **spec.attrs())
        tactic = QConvNative(spec)
        prep = tactic._prepared()
        vmq = prep["wts"][0, prep["terms"]].view(np.float32)
        assert (vmq[: spec.cout] != 0).mean() >= 0.75, act
        out = np.zeros(spec.out_shape, np.int8)
        tactic.bind(inputs, [out], ScratchPool(None))()
        np.testing.assert_array_equal(out, want, err_msg=f"{act}")
        vmq *= 1.5
        tactic.bind(inputs, [out], ScratchPool(None))()
        assert (out != want).mean() > 0.1, act
    spec, _ = make_case(conv, ("relu", ()), "pre", np.int8, "int8", np.int8, seed=0)
    prep = QConvNative(spec)._prepared()
    assert not prep["wts"][0, prep["terms"] : prep["terms"] + PROVED_ROWS].any()


def test_weights_of_minus_128(path_lib, monkeypatch) -> None:
    """A group with a weight of -128 (an imported model's full int8 range): its sign row is 0
    and the AVX2 path takes the sign-extended tile there (|x| . (w * sign(x)) would wrap
    -(-128)), the other group the sign tile; the reference's bits on every path. On the AVX2
    path a sign row forced to 1 changes the outputs (the row is read)."""
    monkeypatch.setattr(native, "library", lambda: path_lib)
    conv = ((1, 16, 9, 9), 24, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2)
    spec, inputs = make_case(conv, ("", ()), "none", None, "fp32", np.int8, seed=5)
    x, w = inputs[0].copy(), inputs[1].copy()
    x.flat[::3] = -128
    w[:12].flat[::5] = -128  # the first group only
    spec = QConvSpec(**{**spec.__dict__, "weight": w})
    inputs = [x, w, *inputs[2:]]
    want = qconv(*inputs, **spec.attrs())
    tactic = QConvNative(spec)
    prep = tactic._prepared()
    sign_row = prep["wts"][:, prep["terms"] + PROVED_ROWS]
    assert not sign_row[0].any() and sign_row[1].all()
    out = np.zeros(spec.out_shape, np.float32)
    tactic.bind(inputs, [out], ScratchPool(None))()
    np.testing.assert_array_equal(out, want)
    if path_lib.qconv_int8_path() == 2:
        sign_row[0] = 1
        tactic.bind(inputs, [out], ScratchPool(None))()
        assert (out[:, :12] != want[:, :12]).mean() > 0.1


def test_nonnegative_activations(path_lib, monkeypatch) -> None:
    """Activations in [0, 127] (after a relu; the AVX2 path's vpmaddubsw tile), weights of -128
    in one group; then negative bytes in the last input rows only (the tiles there, and the
    call's tiles after them, take the signed tiles): the reference's bits on every path."""
    monkeypatch.setattr(native, "library", lambda: path_lib)
    conv = ((1, 16, 12, 12), 24, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2)
    spec, inputs = make_case(conv, ("", ()), "none", None, "fp32", np.int8, seed=7)
    w = inputs[1].copy()
    w[:12].flat[::5] = -128
    w[12:].flat[::7] = 127
    spec = QConvSpec(**{**spec.__dict__, "weight": w})
    x = np.abs(inputs[0].astype(np.int16)).clip(0, 127).astype(np.int8)
    x.flat[::4] = 127
    for what in ("nonnegative", "negative last rows"):
        if what != "nonnegative":
            x[:, :, -2:] = -128
        case = [x, w, *inputs[2:]]
        want = qconv(*case, **spec.attrs())
        out = np.zeros(spec.out_shape, np.float32)
        QConvNative(spec).bind(case, [out], ScratchPool(None))()
        np.testing.assert_array_equal(out, want, err_msg=what)


def test_avx_vnni_path_compiles_to_vex_dot_products() -> None:
    """AVX-VNNI (VEX, no AVX-512: Alder Lake and later) is not on this CPU: compiled only,
    for a CPU that has it (its arithmetic is the EVEX "VNNI 256" path's, run above)."""
    cc = native._compiler()
    assert cc is not None
    if " __x86_64__ " not in _macros():
        pytest.skip("an x86 compiler is needed")
    asm = subprocess.run(
        [cc, "-O2", "-march=alderlake", "-std=c11", "-S", "-o", "-", "-I", str(native.KERNELS),
         str(native.KERNELS / "conv_int8.c")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "{vex} vpdpbusd" in asm


# -- aarch64: the Jetson's sdot path (Cortex-A78AE), replayed under qemu -----------------
# (the generic C path is the x86 "generic C" build above; the same file on both)


def _aarch64_cases() -> list[tuple[Any, QConvSpec, np.ndarray]]:
    from tests.engine.backends.cpu.aarch64 import replay

    cases = []
    for k, conv in enumerate(CONVS[:-1]):  # the largest costs emulation time, adds no path
        for j in range(2):
            act = ACTS[(2 * k + j) % len(ACTS)]
            residual = ("none", "pre", "post")[(k + j) % 3]
            out_precision = ("int8", "fp16", "fp32")[(k + 2 * j) % 3]
            x_dtype = np.float32 if (k + j) % 4 == 0 else np.int8
            z_dtype = np.int8 if j else np.float32
            spec, inputs = make_case(conv, act, residual, z_dtype, out_precision, x_dtype, k)
            want = qconv(*inputs, **spec.attrs())
            out = np.empty(spec.out_shape, want.dtype)
            out.view(np.uint8).fill(0x55)  # unwritten outputs show
            name = f"qconv {conv[0]} {conv[1]} k{conv[2]} s{conv[3]} g{conv[6]} {act[0]}"
            arrays = [a for a in inputs if isinstance(a, np.ndarray)]
            with replay.recording(name, arrays, out) as rec:
                QConvNative(spec).bind(inputs, [out], ScratchPool())()
            check(spec, out, want, f"host {name}")
            cases.append((rec, spec, want))
    return cases


def _qconv_driver(out: Path) -> Path:
    """The replay driver (aarch64/driver.c) with conv_int8.c as its only kernel, for the Jetson's
    cores (the full driver, every kernel included, is test_aarch64_kernels.py's)."""
    from tests.engine.backends.cpu.aarch64.test_aarch64_kernels import compile_driver

    return compile_driver(out, "cortex-a78ae", only=("conv_int8.c",))


def test_aarch64_sdot_path(tmp_path) -> None:
    from tests.engine.backends.cpu.aarch64 import replay
    from tests.engine.backends.cpu.aarch64.test_aarch64_kernels import emulate

    build = "cortex-a78ae"
    exe = _qconv_driver(tmp_path)
    cases = _aarch64_cases()
    replay.write(tmp_path / "calls.bin", [c[0] for c in cases])
    emulate(exe, "replay", str(tmp_path / "calls.bin"), str(tmp_path / "out.bin"))
    regions = replay.read(tmp_path / "out.bin")
    first = 0
    for rec, spec, want in cases:
        got = rec.output(regions[first : first + len(rec.regions)])
        first += len(rec.regions)
        check(spec, got, want, f"{build} {rec.name}")
