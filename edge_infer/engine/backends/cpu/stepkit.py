"""The step registry and what every step module shares: ``STEPS`` (op type → factory), the
``step`` decorator that fills it, the factory's types and the array checks and thread splits
the steps use. The steps themselves live in steps.py (layout and glue ops, BLAS products),
steps_elementwise.py (elementwise ops, Sigmoid, Softmax, fused pointwise chains) and
steps_int8.py (the INT8 engines' Reformat and QGemm); importing steps.py registers them all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import split
from edge_infer.engine.ir import Node

Run = Callable[[], None]
Scratch = Callable[[tuple[int, ...], Any, "str | None"], np.ndarray]
Factory = Callable[[Node, list[Any], list[np.ndarray], Scratch], Run | None]

STEPS: dict[str, Factory] = {}


def step(*op_types: str) -> Callable[[Factory], Factory]:
    def register(factory: Factory) -> Factory:
        for op in op_types:
            if op in STEPS:
                raise ValueError(f"step factory for {op} registered twice")
            STEPS[op] = factory
        return factory

    return register


def is_float(*arrays: Any) -> bool:
    return all(a is None or np.asarray(a).dtype.kind == "f" for a in arrays)


def native_ok(*arrays: Any) -> Any | None:
    """The native kernel library when every array is a C-contiguous float32 ndarray."""
    if not all(
        isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous for a in arrays
    ):
        return None
    return native.library()


def planes_ok(*arrays: Any) -> bool:
    """Every array a float32 (N, C, H, W) ndarray whose (H, W) planes are contiguous (a
    channel slice of a bigger buffer qualifies)."""
    for a in arrays:
        if not (isinstance(a, np.ndarray) and a.dtype == np.float32 and a.ndim == 4):
            return False
        w = a.shape[3]
        if a.strides[3] != 4 or a.strides[2] != 4 * w or a.strides[0] % 4 or a.strides[1] % 4:
            return False
    return True


def unit_planes(a: np.ndarray) -> bool:
    """Rows of unit stride, planes of contiguous rows (a channel slice qualifies): every
    channel's positions one run, strides whole elements."""
    isz = a.itemsize
    return (
        a.ndim == 4
        and a.strides[3] == isz
        and a.strides[2] == a.shape[3] * isz
        and not any(s % isz for s in a.strides)
    )


def int8_planes(*arrays: Any) -> bool:
    """Every array an int8 (N, C, H, W) ndarray whose (H, W) planes are contiguous."""
    return all(
        isinstance(a, np.ndarray)
        and a.dtype == np.int8
        and a.ndim == 4
        and a.strides[3] == 1
        and a.strides[2] == a.shape[3]
        for a in arrays
    )


#: an elementwise or per-row native pass is split between threads from this many values
#: (each part at least half of it)
_ELEMENTWISE_SPLIT = 1 << 16


def thread_parts(size: int, scratch: Scratch, units: int) -> list[tuple[int, int]]:
    """``units`` (planes, rows, values) of a pass over ``size`` values split into ranges for
    the layer's threads: one range below _ELEMENTWISE_SPLIT values or without threads."""
    workers = getattr(scratch, "workers", 1)
    parts = max(1, min(workers, size // (_ELEMENTWISE_SPLIT // 2))) if workers > 1 else 1
    return split(units, parts)


def is_const(node: Node, k: int) -> bool:
    """Input ``k`` of ``node`` is a constant (its array never changes after bind). A node
    without inputs (an FP16 layer's wrapped op) says nothing: treated as changing."""
    return k < len(node.inputs) and node.inputs[k] is not None and node.inputs[k].const is not None


def thread_kwargs(scratch: Scratch) -> dict[str, Any]:
    return {"workers": getattr(scratch, "workers", 1), "pool": getattr(scratch, "pool", None)}
