"""Tactic self-check: every candidate is run once, before it is timed, and compared with the
reference op; one that disagrees is never chosen.

Engines are built on the device they run on, with whatever compiler and CPU (or GPU) it
has; a kernel right on our CI machines can be wrong there (a miscompile, an alignment or
vector-width assumption). So the builder trusts no candidate it has not seen compute the
layer: each gets the same seeded random input of the layer's real shapes, its outputs
(NaN-filled first, so an element it never writes is caught) are compared with the
registry's reference kernel under the output dtype's tolerance, and a candidate that
disagrees, or raises, is rejected with a warning and recorded in the build record.

Backend-generic: the backend says how to bind a tactic to given arrays (``bind``).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_infer.engine.ir import Node
from edge_infer.engine.ops.quantize import int8_value_range
from edge_infer.engine.shape_inference import node_attrs, resolve_op
from edge_infer.engine.tactics.base import Tactic

log = logging.getLogger(__name__)

#: largest error a candidate may show, relative to the largest reference output magnitude
#: (at least 1), by output dtype. FP32: Winograd's transforms cost ~2e-5 of the scale and
#: long sums (thousands of terms) a few 1e-6; a real bug is off by far more.
TOLERANCES = {"float32": 1e-4, "float16": 4e-3}
#: integer outputs (int8 storage): an absolute error in steps. One step: an INT8 layer's
#: exp-based activation (SiLU, sigmoid, tanh) in float32 may differ from numpy's in the last
#: bit, which moves a value lying on a rounding half by one step; a real bug is off by more
INTEGER_STEPS = 1

#: bind(tactic, inputs, outputs) → a run writing ``outputs`` from ``inputs``
Bind = Callable[[Tactic, list[Any], list[np.ndarray]], Callable[[], None]]


@dataclass(frozen=True)
class Rejection:
    """A candidate the self-check refused: layer, tactic, and what was wrong."""

    layer: str
    tactic: str
    error: str

    def to_json(self) -> dict[str, str]:
        return {"layer": self.layer, "tactic": self.tactic, "error": self.error}


def layer_inputs(node: Node, seed: int = 0) -> list[Any]:
    """The layer's inputs: constants as they are, the others seeded random of their real
    shapes (the seed mixed with the layer's name, so layers differ but rebuilds agree); an
    int8 activation uniform over the values its producer can write (after a ReLU [0, 127]:
    :func:`~edge_infer.engine.ops.quantize.int8_value_range`), so that a candidate is checked
    and timed on the kernel paths the layer's real inputs take."""
    rng = np.random.default_rng([seed, zlib.crc32(node.name.encode())])
    ins: list[Any] = []
    for v in node.inputs:
        if v is None:
            ins.append(None)
        elif v.const is not None:
            ins.append(v.const)
        elif np.dtype(v.dtype) in (np.float32, np.float64):
            ins.append(rng.standard_normal(v.shape, dtype=v.dtype))
        elif np.dtype(v.dtype).kind == "f":
            ins.append(rng.standard_normal(v.shape, dtype=np.float32).astype(v.dtype))
        elif np.dtype(v.dtype) == np.int8:  # int8 storage: the values its producer can write
            lo, hi = int8_value_range(v)
            ins.append(rng.integers(lo, hi + 1, v.shape, dtype=v.dtype))
        elif np.dtype(v.dtype) == np.uint8:
            ins.append(rng.integers(0, 256, v.shape, dtype=v.dtype))
        else:
            ins.append(np.zeros(v.shape, v.dtype))
    return ins


def reference_outputs(node: Node, ins: Sequence[Any]) -> list[np.ndarray]:
    """The registry's reference kernel of ``node`` on ``ins``."""
    if node.graph is None:
        raise ValueError(f"node '{node.name}' is not in a graph")
    op = resolve_op(node.graph, node)
    result = op.kernel(*ins, **node_attrs(op, node))
    results = result if isinstance(result, tuple | list) else (result,)
    return [np.asarray(r) for r in results]


def disagreement(got: np.ndarray, want: np.ndarray, tolerance: float | None = None) -> str | None:
    """Why ``got`` is not ``want`` within the dtype's tolerance, or ``tolerance`` (relative to
    the output scale) when given (None when it is)."""
    if got.shape != want.shape:
        return f"output shape {list(got.shape)}, expected {list(want.shape)}"
    if np.dtype(got.dtype).kind in "iu" and got.size:
        err = np.abs(got.astype(np.int64) - np.asarray(want).astype(np.int64))
        if int(err.max()) <= INTEGER_STEPS:
            return None
        at = np.unravel_index(int(np.argmax(err)), err.shape)
        return (
            f"max |error| {int(err.max())} steps at {tuple(int(i) for i in at)} (got "
            f"{int(got[at])}, reference {int(want[at])}); tolerance {INTEGER_STEPS} step"
        )
    tol = TOLERANCES.get(np.dtype(got.dtype).name, 0.0) if tolerance is None else tolerance
    if got.size == 0:
        return None
    # the common case in two passes over memory (this runs for every candidate of every
    # layer): a NaN or inf anywhere makes `worst` NaN/inf and takes the slow path below
    scale = max(1.0, float(np.abs(want).max()))
    worst = float(np.abs(got - want).max())
    if worst <= tol * scale:
        return None
    g, w = got.astype(np.float64), want.astype(np.float64)
    bad_nan = np.isnan(g) & ~np.isnan(w)
    if bad_nan.any():
        return (
            f"{int(bad_nan.sum())} of {g.size} outputs NaN (unwritten or invalid), "
            f"first at {np.unravel_index(int(np.argmax(bad_nan)), g.shape)}"
        )
    finite = np.isfinite(w)
    scale = max(1.0, float(np.abs(w[finite]).max())) if finite.any() else 1.0
    err = np.where(finite, np.abs(g - w), np.where(g == w, 0.0, np.inf))
    worst = float(err.max()) if err.size else 0.0
    if worst > tol * scale:
        at = np.unravel_index(int(np.argmax(err)), err.shape)
        return (
            f"max |error| {worst:.3g} at {tuple(int(i) for i in at)} (got {g[at]:.6g}, "
            f"reference {w[at]:.6g}); tolerance {tol:g} x output scale {scale:.3g}"
        )
    return None


def _tolerance(node: Node, out: np.ndarray) -> float | None:
    """An FP16 layer rounds its results to float16 even where the engine stores them in
    float32: a summation order that flips one float16 rounding is one float16 step off, and
    float16's tolerance applies."""
    if node.op_type == "Fp16Layer" and np.dtype(out.dtype).kind == "f":
        return TOLERANCES["float16"]
    return None


def _unwritten(dtype: Any) -> Any:
    """What an output is filled with before a candidate runs: NaN for floats (never a
    result), the lowest value for integers (an unwritten element then disagrees wherever the
    reference is not that value)."""
    dt = np.dtype(dtype)
    return np.nan if dt.kind in "fc" else np.iinfo(dt).min if dt.kind in "iu" else 0


def check_tactic(
    node: Node,
    tactic: Tactic,
    ins: list[Any],
    want: list[np.ndarray],
    bind: Bind,
    bound: dict[str, Callable[[], None]] | None = None,
) -> str | None:
    """Run ``tactic`` once on ``ins``; why its outputs differ from ``want`` (None: agree).
    A tactic that agrees leaves its bound run in ``bound`` (the autotuner times it: binding
    again would prepare the same weights twice)."""
    outs = [np.full(v.shape, _unwritten(v.dtype), v.dtype) for v in node.outputs]
    try:
        run = bind(tactic, ins, outs)
        run()
    except Exception as exc:  # a candidate that cannot run this layer is not a candidate
        return f"raised {type(exc).__name__}: {exc}"
    for k, (got, ref) in enumerate(zip(outs, want, strict=False)):
        why = disagreement(got, ref, _tolerance(node, got))
        if why is not None:
            return why if len(outs) == 1 else f"output {k}: {why}"
    if bound is not None:
        bound[tactic.name] = run
    return None


def verified(
    node: Node,
    tactics: Sequence[Tactic],
    bind: Bind,
    seed: int = 0,
    bound: dict[str, Callable[[], None]] | None = None,
) -> tuple[list[Tactic], list[Rejection]]:
    """The candidates of ``node`` that agree with the reference, and the rejections (each
    also logged as a warning naming the layer, the tactic and the error); the runs of those
    that agree go to ``bound`` (see :func:`check_tactic`)."""
    ins = layer_inputs(node, seed)
    want = reference_outputs(node, ins)
    kept: list[Tactic] = []
    rejected: list[Rejection] = []
    for tactic in tactics:
        why = check_tactic(node, tactic, ins, want, bind, bound)
        if why is None:
            kept.append(tactic)
            continue
        rejected.append(Rejection(node.name, tactic.name, why))
        log.warning(
            "layer %s: tactic %s rejected by the self-check (%s); it will not be chosen",
            node.name,
            tactic.name,
            why,
        )
    return kept, rejected


__all__ = [
    "TOLERANCES",
    "Bind",
    "Rejection",
    "check_tactic",
    "disagreement",
    "layer_inputs",
    "reference_outputs",
    "verified",
]
