"""Choosing each convolution's kernel and tile shape: timed on a GPU, by a heuristic otherwise.

On a real device every candidate (``params.conv.candidates``) runs on random data in device
memory and is timed with CUDA events (:class:`EventTimer`) through the engine's auto-tuner
(``tune_layer``: interleaved rounds, early exit, the timing cache keyed by the device
fingerprint — GPU name, SM, driver — and the layer signature).

The emulator's clock measures the emulator, not a GPU, so nothing is timed there: the
:func:`heuristic` picks (documented, deterministic):

1. a depthwise layer takes the depthwise kernel;
2. otherwise the implicit-GEMM tile with the most work per block (BM x BN) whose grid still
   has at least :data:`FILL_BLOCKS` blocks (two waves on a 16-SM Orin: enough to hide a
   wave's tail); when no tile fills the device, the smallest tile (most blocks);
3. the direct kernel only when it is the sole candidate.

On the emulator (``emulated=True``) rule 2 becomes: the direct kernel, else (FP16, INT8)
the tile with the fewest threads per block, a SIMT one before a tensor-core one (the
emulator's wmma is warp-collective: more barriers), then the largest. The emulator's cost is
dominated by block barriers (every CUDA thread is an OS thread; the direct kernel has none and
runs 10-20x faster than a tiled one there), and an engine built for the emulator runs only on
the emulator (its fingerprint names it), so its choices need to be correct, not fast. Every
tile shape is checked by the kernel tests; the engine tests run tiled tactics through hints
and the injected timer.

A test drives the timed path on the emulator with an injected timer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_infer.cuda.params.conv import ConvGeometry, ConvTactic
from edge_infer.engine.backends.base import Timer

#: blocks a grid needs to count as filling the device (2 waves x 16 SMs, Orin AGX)
FILL_BLOCKS = 32


def heuristic(
    geom: ConvGeometry, tactics: Sequence[ConvTactic], emulated: bool = False
) -> ConvTactic:
    """The tactic the rules in the module docstring choose."""
    depthwise = [t for t in tactics if t.family == "depthwise"]
    if depthwise:
        return depthwise[0]
    direct = [t for t in tactics if t.family == "direct"]
    if emulated and direct:
        return direct[0]
    if emulated and tactics:
        return min(tactics, key=lambda t: (t.threads, t.family == "wmma", -t.bm * t.bn))
    tiled = [t for t in tactics if t.family in ("igemm", "wmma", "dp4a")]
    if not tiled:
        return tactics[0]

    def blocks(t: ConvTactic) -> int:
        grid, _ = t.launch_dims(geom)
        return math.prod(grid)

    filling = [t for t in tiled if blocks(t) >= FILL_BLOCKS]
    if filling:
        return max(filling, key=lambda t: (t.bm * t.bn, t.bm))
    return min(tiled, key=lambda t: (t.bm * t.bn, -blocks(t)))


def signature(geom: ConvGeometry, node_op: str, attrs: dict[str, Any], dtypes: str) -> str:
    """What a convolution's timing depends on (the timing cache key, with the device's)."""
    act = attrs.get("activation", "")
    return (
        f"cuda conv {node_op} {dtypes} n{geom.n} c{geom.c} {geom.h}x{geom.w} k{geom.k} "
        f"{geom.r}x{geom.s} g{geom.group} s{geom.stride} p{geom.pad} d{geom.dilation} "
        f"{act} {attrs.get('residual', 'none')}"
    )


class EventTimer(Timer):
    """Seconds one ``run`` takes on the device: CUDA events recorded around it on ``stream``."""

    def __init__(self, device: Any, stream: Any) -> None:
        self.device = device
        self.stream = stream
        self._start = device.event("tune start")
        self._end = device.event("tune end")

    def measure(self, run: Callable[[], None]) -> float:
        stream = getattr(run, "stream", self.stream)  # the stream the run launches on
        self._start.record(stream)
        run()
        self._end.record(stream)
        self._end.synchronize()
        return self._start.elapsed_ms(self._end) / 1e3


@dataclass(frozen=True)
class Candidate:
    """A tactic as the auto-tuner sees it (a name)."""

    name: str


def random_fill(shape: Sequence[int], dtype: Any, rng: np.random.Generator) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(tuple(shape)).astype(dtype)
    return rng.integers(-8, 8, tuple(shape)).astype(dtype)
