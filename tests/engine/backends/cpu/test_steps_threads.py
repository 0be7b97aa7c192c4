"""The elementwise and per-row native steps split between a layer's threads (steps.py
_parts): Sigmoid (unary_f32 in 64-value ranges), Softmax (softmax_f32 in outer ranges) and
int8 nearest Resize (upsample_nearest_s8_f32 in channel ranges, channel slices in and out);
each bit for bit what one thread writes, and one call below the split size."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.steps import STEPS
from edge_infer.engine.ir import Node

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

RESIZE = {
    "mode": "nearest",
    "nearest_mode": "floor",
    "coordinate_transformation_mode": "asymmetric",
}


def _run(op: str, attrs: dict, ins: list, out: np.ndarray, workers: int) -> tuple[np.ndarray, Any]:
    pool = WorkPool(workers) if workers > 1 else None
    try:
        run = STEPS[op](Node(op, "n", "", attrs), ins, [out], ScratchPool(pool))
        assert run is not None
        run()
    finally:
        if pool is not None:
            pool.close()
    return out.copy(), run


def _cases() -> list[tuple[str, str, dict, Callable[[], tuple[list, np.ndarray]]]]:
    rng = np.random.default_rng(3)

    def sigmoid(size: int) -> Callable[[], tuple[list, np.ndarray]]:
        x = (rng.standard_normal(size) * 8).astype(np.float32)
        return lambda: ([x], np.full(size, 5, np.float32))

    def softmax(shape: tuple[int, ...]) -> Callable[[], tuple[list, np.ndarray]]:
        x = (rng.standard_normal(shape) * 4).astype(np.float32)
        return lambda: ([x], np.full(shape, 5, np.float32))

    def resize(c: int) -> Callable[[], tuple[list, np.ndarray]]:
        big = rng.integers(-128, 128, (2, c + 3, 20, 21)).astype(np.int8)
        scales = np.array([1, 1, 2, 2], np.float32)
        return lambda: (
            [big[:, 1 : c + 1], None, scales],
            np.zeros((2, c + 2, 40, 42), np.int8)[:, 2:],
        )

    return [
        ("sigmoid-200003", "Sigmoid", {}, sigmoid(200_003)),  # a tail past the last 64
        ("sigmoid-1000", "Sigmoid", {}, sigmoid(1000)),  # one call
        ("softmax-7x16x1100", "Softmax", {"axis": 1}, softmax((7, 16, 1100))),
        ("resize-int8-x2", "Resize", RESIZE, resize(45)),
    ]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_threads_write_one_threads_bits(case: tuple) -> None:
    _, op, attrs, make = case
    ins, out = make()
    one, run1 = _run(op, attrs, ins, out, 1)
    ins, out = make()
    two, _ = _run(op, attrs, ins, out, 2)
    np.testing.assert_array_equal(two, one)
    assert isinstance(run1, native.NativeCall)  # one thread: one call
    if op == "Resize":  # each output pixel its source's
        np.testing.assert_array_equal(one, ins[0].repeat(2, axis=2).repeat(2, axis=3))
    elif op == "Sigmoid":
        want = 1.0 / (1.0 + np.exp(-ins[0].astype(np.float64)))
        np.testing.assert_allclose(one, want, rtol=1e-6, atol=1e-7)
    else:
        e = np.exp(ins[0].astype(np.float64) - ins[0].max(axis=1, keepdims=True))
        np.testing.assert_allclose(one, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_big_passes_are_split() -> None:
    """Above the split size the step is the pool's (not one native call)."""
    ins, out = _cases()[0][3]()
    pool = WorkPool(2)
    try:
        run = STEPS["Sigmoid"](Node("Sigmoid", "n", "", {}), ins, [out], ScratchPool(pool))
        assert run is not None and not isinstance(run, native.NativeCall)
    finally:
        pool.close()
