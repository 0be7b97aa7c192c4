"""``fp16_step``'s Sigmoid and Softmax on float16 storage (tactics/cpu_fp16.py: kernels/
pointwise.c's ``half`` bits) give exactly the bits of the conversion route around the same
float32 kernel (inputs widened or rounded into float32, the kernel, outputs narrowed or
rounded): every float16 value through Sigmoid, softmaxes with vector tails and special
values, every storage mix (float16 / float32 input, rounded or not; float16 / float32
output), 1 and 2 threads; on this host's library and on every x86 vector path."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics.cpu_fp16 import Fp16Step
from edge_infer.engine.tactics.fp16 import Fp16Spec
from tests.engine.backends.cpu import isa_builds
from tests.engine.backends.cpu.tactics import half_io_support as hs

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler: no native path")

F16, F32 = np.dtype(np.float16), np.dtype(np.float32)
#: (x dtype, round the float32 input, y dtype)
STORAGE = [(F16, False, F16), (F16, False, F32), (F32, True, F16), (F32, False, F32)]
#: softmax shapes and axes: inner positions below, at and past whole vectors of 8, axis 1
#: (the DFL head's [4, 16, 1, 1600]), the last axis, a long axis
SOFTMAX = [((4, 16, 1, 37), 1), ((2, 5, 8), 1), ((3, 7), -1), ((1, 300, 3), 1), ((2, 3, 19), 2)]


def _spec(op: str, attrs: dict, x: np.ndarray, rounded: bool, ydtype: np.dtype) -> Fp16Spec:
    return Fp16Spec(
        op=op,
        op_domain="",
        opset=17,
        op_attrs=attrs,
        round_inputs=(0,) if rounded else (),
        fp16_outputs=(0,) if ydtype == F16 else (),
        inputs=((x.shape, x.dtype.name),),
        outputs=((x.shape, ydtype.name),),
        consts={},
    )


def _both(spec: Fp16Spec, x: np.ndarray, ydtype: np.dtype, threads: int) -> list[np.ndarray]:
    """The layer's output through the half kernel and through the conversion route."""
    outs = []
    with hs.work_pool(threads) as pool:
        for direct in (True, False):
            y = np.full(x.shape, np.nan, ydtype)
            scratch = ScratchPool(pool)
            step = Fp16Step(spec)
            if direct:
                assert step._half_kernel([x], [y], scratch) is not None, "declined"
            else:
                step._half_kernel = lambda *a: None  # type: ignore[method-assign]
            step.bind([x], [y], scratch)()
            outs.append(y)
    return outs


def _sigmoid_input(dtype: np.dtype) -> np.ndarray:
    """Every float16 bit pattern (as float16, or widened and nudged off float16's values so
    that the rounding of a float32 input matters)."""
    every = np.arange(1 << 16, dtype=np.uint16).view(F16)
    if dtype == F16:
        return every.reshape(16, 4096)
    wide = every.astype(F32)
    nudge = np.random.default_rng(3).integers(-(1 << 12), 1 << 12, wide.size)
    return (wide.view(np.uint32).astype(np.int64) + nudge).astype(np.uint32).view(F32)[:-3]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("xdtype", "rounded", "ydtype"), STORAGE)
def test_sigmoid_on_float16_storage_is_the_conversion_route(
    xdtype: np.dtype, rounded: bool, ydtype: np.dtype, threads: int
) -> None:
    x = _sigmoid_input(xdtype)
    got, want = _both(_spec("Sigmoid", {}, x, rounded, ydtype), x, ydtype, threads)
    hs.assert_bits(got, want, f"sigmoid {xdtype} {rounded} {ydtype}")


def _softmax_input(shape: tuple[int, ...], dtype: np.dtype, k: int) -> np.ndarray:
    rng = np.random.default_rng(k)
    with np.errstate(over="ignore"):
        x = hs.random_values(rng, shape, 4.0, special=k % 2 == 1).astype(dtype)
    if dtype == F32:  # off float16's values
        x = x * np.float32(1 + 2**-13)
    return x


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("xdtype", "rounded", "ydtype"), STORAGE)
def test_softmax_on_float16_storage_is_the_conversion_route(
    xdtype: np.dtype, rounded: bool, ydtype: np.dtype, threads: int
) -> None:
    for k, (shape, axis) in enumerate(SOFTMAX):
        x = _softmax_input(shape, xdtype, k)
        spec = _spec("Softmax", {"axis": axis}, x, rounded, ydtype)
        got, want = _both(spec, x, ydtype, threads)
        hs.assert_bits(got, want, f"softmax {shape} axis {axis} {xdtype} {rounded} {ydtype}")


def test_a_softmax_axis_past_the_kernels_buffer_takes_the_conversion_route() -> None:
    x = np.zeros((1, 600, 2), F16)
    spec = _spec("Softmax", {"axis": 1}, x, False, F16)
    y = np.empty_like(x)
    assert Fp16Step(spec).takes_half()  # the op does, this layer's axis is too long
    assert not Fp16Step(_spec("Relu", {}, x, False, F16)).takes_half()
    assert Fp16Step(spec)._half_kernel([x], [y], ScratchPool()) is None
    Fp16Step(spec).bind([x], [y], ScratchPool())()
    np.testing.assert_array_equal(y, np.full_like(y, 1 / 600))


# -- every vector path ------------------------------------------------------------------------


def _call(lib: Any, name: str, **fields: Any) -> None:
    call = native.NativeCall(name, fields, ())
    fn = getattr(lib, name)
    fn.restype = None
    fn(ctypes.byref(call.args))


def _as_read(x: np.ndarray, bits: int) -> np.ndarray:
    """The float32 values the kernel computes on: x widened, or rounded to float16's values
    (bit 8), or as it is."""
    with np.errstate(over="ignore"):
        return x.astype(F32).astype(F16).astype(F32) if bits & 9 else x.astype(F32)


@pytest.mark.parametrize("build", list(isa_builds.X86_BUILDS))
def test_every_x86_vector_path_is_the_conversion_route(build: str, tmp_path: Path) -> None:
    """Each half mode of unary_f32 and softmax_f32 against the float32 mode of the same build
    between numpy's conversions (numpy's astype: nearest even, as every path converts)."""
    flags, needs = isa_builds.X86_BUILDS[build]
    isa_builds.need_features(needs)
    lib = isa_builds.build_kernels(tmp_path, ["pointwise.c", "args.c"], flags)
    for xdtype, rounded, ydtype in STORAGE:
        bits = (1 if xdtype == F16 else 8 if rounded else 0) | (2 if ydtype == F16 else 4)
        x = _sigmoid_input(xdtype).ravel()[:5003]
        x32 = _as_read(x, bits)
        y, y32 = np.full(x.shape, np.nan, ydtype), np.full(x.shape, np.nan, F32)
        _call(lib, "unary_f32", x=x.ctypes.data, y=y.ctypes.data, n=x.size, kind=4, half=bits)
        _call(lib, "unary_f32", x=x32.ctypes.data, y=y32.ctypes.data, n=x.size, kind=4, half=0)
        with np.errstate(over="ignore"):
            want = y32.astype(F16).astype(ydtype)
        hs.assert_bits(y, want, f"{build} sigmoid {bits}")
        for k, (shape, axis) in enumerate(SOFTMAX):
            x = _softmax_input(shape, xdtype, k)
            ax = axis % x.ndim
            outer, inner = int(np.prod(shape[:ax])), int(np.prod(shape[ax + 1 :]))
            x32 = _as_read(x, bits)
            y, y32 = np.full(shape, np.nan, ydtype), np.full(shape, np.nan, F32)
            for a, b, h in ((x, y, bits), (x32, y32, 0)):
                _call(lib, "softmax_f32", x=a.ctypes.data, y=b.ctypes.data, outer=outer,
                      axis=shape[ax], inner=inner, half=h)  # fmt: skip
            with np.errstate(over="ignore", invalid="ignore"):
                want = y32.astype(F16).astype(ydtype)
            hs.assert_bits(y, want, f"{build} softmax {shape} {bits}")
