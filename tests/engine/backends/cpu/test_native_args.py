"""The native kernels' argument structs (kernels/args.h) and their ctypes mirrors agree, and a
disagreement is refused at load instead of corrupting memory."""

from __future__ import annotations

import ctypes
import logging

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native, native_args

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler on this machine")


def test_every_struct_and_activation_code_matches_the_library() -> None:
    lib = native.library()
    assert native.layout_mismatches(lib) == []
    assert set(native.library_layouts(lib)) == set(native.ARGS)
    for name in native.ARGS:  # every kernel is also a pool task
        assert native.task_address(name) != 0


def test_a_mirror_that_disagrees_disables_the_kernels(monkeypatch, caplog) -> None:
    """Two fields of one mirror swapped: named in the warning, native kernels refused."""

    class Swapped(native_args.KernelArgs):
        _fields_ = (
            ("x", ctypes.c_void_p),
            ("y", ctypes.c_void_p),
            ("kind", ctypes.c_long),
            ("n", ctypes.c_long),
            ("half", ctypes.c_long),
        )

    monkeypatch.setitem(native.ARGS, "unary_f32", Swapped)
    problems = native.layout_mismatches(native.library())
    assert problems == [
        "unary_f32.kind: native.py (offset, size) (16, 8), library (24, 8)",
        "unary_f32.n: native.py (offset, size) (24, 8), library (16, 8)",
    ]
    native.library.cache_clear()
    try:
        with caplog.at_level(logging.WARNING):
            assert native.library() is None
        assert "unary_f32.n" in caplog.text and "args.h" in caplog.text
    finally:
        monkeypatch.undo()
        native.library.cache_clear()
    assert native.library() is not None


def test_a_field_missing_from_the_library_is_reported(monkeypatch) -> None:
    class Longer(native_args.KernelArgs):
        _fields_ = (*native_args.SoftmaxArgs._fields_, ("extra", ctypes.c_long))

    monkeypatch.setitem(native.ARGS, "softmax_f32", Longer)
    problems = native.layout_mismatches(native.library())
    assert "softmax_f32.sizeof: native.py (offset, size) (0, 56), library (0, 48)" in problems
    assert "softmax_f32.extra: native.py (offset, size) (48, 8), library None" in problems


def test_a_call_names_every_field_exactly_once() -> None:
    x = np.linspace(-3, 3, 37, dtype=np.float32)
    y = np.empty_like(x)
    with pytest.raises(TypeError, match=r"missing fields \['kind', 'half'\]"):
        native.NativeCall("unary_f32", dict(x=x.ctypes.data, y=y.ctypes.data, n=x.size), (x, y))
    with pytest.raises(TypeError, match=r"unknown fields \['size'\]"):
        native.NativeCall(
            "unary_f32",
            dict(
                x=x.ctypes.data,
                y=y.ctypes.data,
                n=x.size,
                kind=native.Activation.TANH,
                half=0,
                size=1,
            ),
            (x, y),
        )
    call = native.NativeCall(
        "unary_f32",
        dict(x=x.ctypes.data, y=y.ctypes.data, n=x.size, kind=native.Activation.TANH, half=0),
        (x, y),
    )
    call()
    np.testing.assert_allclose(y, np.tanh(x.astype(np.float64)), rtol=1e-6, atol=1e-7)


def test_activation_codes_are_the_epilogue_codes() -> None:
    from edge_infer.engine.backends.cpu.activations import ACTIVATION_CODES

    assert ACTIVATION_CODES == {
        "": 0,
        "relu": 1,
        "leaky_relu": 2,
        "clip": 3,
        "sigmoid": 4,
        "silu": 5,
        "hard_swish": 6,
        "hard_sigmoid": 7,
        "tanh": 8,
    }
