"""IR layers → kernel launches: which library kernel computes a node, with what parameters.

``LOWERINGS`` maps an op type to a function of a :class:`Layer` (the node, its inputs and
outputs as :class:`~edge_infer.cuda.arena.DeviceArray` views, constants also as host arrays)
that returns the node's :class:`~edge_infer.cuda.library.KernelCall` list, or ``None`` when
the library does not cover this instance (a dtype, an attribute, a layout): the program then
runs the layer on the host fallback (``program.py``), and the build lists it. The lowerings
live in one module per op family, listed in :data:`MODULES` (imported on first use).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_infer.cuda.arena import DeviceArray
from edge_infer.cuda.library import KernelCall
from edge_infer.engine.ir import Node
from edge_infer.errors import BackendError

#: the lowering modules, one per op family (owners add their line here)
MODULES: tuple[str, ...] = (
    "edge_infer.cuda.lowering.conv",
    "edge_infer.cuda.lowering.matmul",
    "edge_infer.cuda.lowering.pool",
    "edge_infer.cuda.lowering.elementwise",
    "edge_infer.cuda.lowering.movement",
    "edge_infer.cuda.lowering.fp16",
)

F32 = np.dtype(np.float32)
F16 = np.dtype(np.float16)
S8 = np.dtype(np.int8)
#: storage dtype -> the kernels' element suffix and precision name
OUT = {F32: "f32", F16: "f16", S8: "s8"}
PRECISION = {F32: "fp32", F16: "fp16", S8: "int8"}


@dataclass
class Layer:
    """One node bound to device views. ``consts[k]`` is input k's host array when it is a
    constant (``ins[k]`` is then its uploaded copy); ``upload`` puts a host table on the
    device (kept for the engine's life); ``scratch`` gives the layer device memory of its own
    (the context's, for an intermediate result between two of its launches, declared as read
    and written)."""

    node: Node
    ins: list[DeviceArray | None]
    consts: list[np.ndarray | None]
    outs: list[DeviceArray]
    opset: int
    upload: Callable[[np.ndarray], DeviceArray]
    tactic: str | None = None
    extra_reads: list[DeviceArray] = field(default_factory=list)
    scratch_fn: Callable[[tuple[int, ...], Any], DeviceArray] | None = None
    extra_writes: list[DeviceArray] = field(default_factory=list)

    def scratch(self, shape: tuple[int, ...], dtype: Any) -> DeviceArray:
        """Contiguous device memory of ``shape`` and ``dtype`` for this layer alone."""
        if self.scratch_fn is None:
            raise BackendError(f"layer '{self.node.name}' has no scratch memory here")
        array = self.scratch_fn(tuple(shape), dtype)
        self.extra_reads.append(array)
        self.extra_writes.append(array)
        return array

    @property
    def attrs(self) -> dict[str, Any]:
        return self.node.attrs


Lowering = Callable[[Layer], "list[KernelCall] | None"]
LOWERINGS: dict[str, Lowering] = {}


def lowering(*op_types: str) -> Callable[[Lowering], Lowering]:
    def register(fn: Lowering) -> Lowering:
        for op in op_types:
            if op in LOWERINGS:
                raise ValueError(f"CUDA lowering for {op} registered twice")
            LOWERINGS[op] = fn
        return fn

    return register


@functools.cache
def registry() -> dict[str, Lowering]:
    """Every lowering by op type (the modules of :data:`MODULES` imported once)."""
    for name in MODULES:
        importlib.import_module(name)
    return LOWERINGS


def lower(layer: Layer) -> list[KernelCall] | None:
    """The launches computing ``layer``, or None for the host fallback."""
    fn = registry().get(layer.node.op_type)
    if fn is None:
        return None
    try:
        return fn(layer)
    except BackendError:  # a planner refused this instance (layout, dtype): host fallback
        return None


def into_contiguous(
    layer: Layer, out: DeviceArray, compute: Callable[[DeviceArray], list[KernelCall]]
) -> list[KernelCall]:
    """``compute`` writing ``out``, through a contiguous scratch copy when ``out`` is a strided
    view (a concat's slice): the kernels that write contiguous outputs only."""
    if out.contiguous:
        return compute(out)
    from edge_infer.cuda.params.copy import copy  # the strided copy kernel

    temp = layer.scratch(out.shape, out.dtype)
    return [*compute(temp), copy(temp, out)]  # type: ignore[arg-type]


def element_strides(a: DeviceArray) -> list[int]:
    return [s // a.itemsize for s in a.strides]


def narrow(a: DeviceArray, axis: int, start: int, stop: int, step: int = 1) -> DeviceArray:
    """``a[..., start:stop:step, ...]`` along ``axis`` (``step`` > 0)."""
    shape, strides = list(a.shape), list(a.strides)
    shape[axis] = max(0, -(-(stop - start) // step))
    strides[axis] *= step
    return DeviceArray(a.buffer, a.offset + start * a.strides[axis], shape, a.dtype, strides)
