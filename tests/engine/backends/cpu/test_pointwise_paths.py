"""kernels/pointwise.c's AVX-512 path (16 floats a vector: unary_f32's sigmoid and tanh,
softmax_f32) gives the AVX2 path's bits (8 floats a vector, the same operations lane by
lane), on sizes that leave every tail, and both are within tolerance of numpy."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from tests.engine.backends.cpu import isa_builds

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

#: the builds compared: the 16-float path and the 8-float one (both with FMA)
BUILDS = ("avx512", "avx2")
SIZES = (1, 8, 15, 16, 17, 31, 47, 1000)
#: softmax as (outer, axis, inner): inner below, at and past 8 and 16 positions
SOFTMAX = ((3, 16, 37), (2, 5, 16), (1, 7, 8), (4, 3, 5))


def _lib(build: str, tmp_path: Path) -> Any:
    flags, needs = isa_builds.X86_BUILDS[build]
    isa_builds.need_features(needs)
    lib = isa_builds.build_kernels(tmp_path, ["pointwise.c", "args.c"], flags)
    for name in ("unary_f32", "softmax_f32"):
        getattr(lib, name).restype = None
    return lib


def _unary(lib: Any, x: np.ndarray, kind: native.Activation) -> np.ndarray:
    y = np.full_like(x, np.nan)
    call = native.NativeCall("unary_f32", dict(x=x.ctypes.data, y=y.ctypes.data, n=x.size,
                             kind=kind, half=0), (x, y))  # fmt: skip
    lib.unary_f32(ctypes.byref(call.args))
    return y


def _softmax(lib: Any, x: np.ndarray) -> np.ndarray:
    y = np.full_like(x, np.nan)
    outer, axis, inner = x.shape
    call = native.NativeCall("softmax_f32", dict(x=x.ctypes.data, y=y.ctypes.data, outer=outer,
                             axis=axis, inner=inner, half=0), (x, y))  # fmt: skip
    lib.softmax_f32(ctypes.byref(call.args))
    return y


def _outputs(lib: Any) -> list[np.ndarray]:
    rng = np.random.default_rng(41)
    outs = []
    for n in SIZES:
        x = (rng.standard_normal(n) * 12).astype(np.float32)
        x[::5] = rng.choice(np.float32([0.0, -0.0, 95.0, -95.0, 1e-30]), size=x[::5].shape)
        for kind in (native.Activation.SIGMOID, native.Activation.TANH):
            y = _unary(lib, x, kind)
            want = 1 / (1 + np.exp(-x.astype(np.float64))) if kind == 4 else np.tanh(x)
            np.testing.assert_allclose(y, want, rtol=2e-6, atol=2e-7, err_msg=f"{kind} {n}")
            outs.append(y)
    for shape in SOFTMAX:
        x = (rng.standard_normal(shape) * 6).astype(np.float32)
        y = _softmax(lib, x)
        e = np.exp(x.astype(np.float64) - x.max(axis=1, keepdims=True))
        np.testing.assert_allclose(y, e / e.sum(axis=1, keepdims=True), rtol=2e-6, atol=1e-7)
        outs.append(y)
    return outs


def test_avx512_path_gives_the_avx2_bits(tmp_path: Path) -> None:
    wide, narrow = (_outputs(_lib(build, tmp_path)) for build in BUILDS)
    for k, (a, b) in enumerate(zip(wide, narrow, strict=True)):
        assert np.array_equal(a.view(np.int32), b.view(np.int32)), f"output {k}"
