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
dominated by block barriers (a context switch per CUDA thread at each; the direct kernel has
none and ran 10-20x faster than a tiled one when the emulator's threads were OS threads), and
an engine built for the emulator runs only on the emulator (its fingerprint names it), so its
choices need to be correct, not fast. Every tile shape is checked by the kernel tests; the
engine tests run tiled tactics through hints and the injected timer.

A test drives the timed path on the emulator with an injected timer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_infer.cuda.arena import DeviceArray
from edge_infer.cuda.device import Device
from edge_infer.cuda.lowering import Layer, lower
from edge_infer.cuda.params.conv import ConvGeometry, ConvTactic
from edge_infer.engine.backends.base import Timer
from edge_infer.engine.ir import Node
from edge_infer.errors import BackendError

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


class TuningBench:
    """Random device inputs and outputs of one convolution, and a launch per tactic."""

    def __init__(self, device: Device, node: Node, rng: np.random.Generator) -> None:
        self.device = device
        self.node = node
        self.stream = device.stream("tuning bench")
        self.buffers: list[Any] = []
        self.arrays: list[DeviceArray | None] = []
        for k, v in enumerate(node.inputs):
            if v is None:
                self.arrays.append(None)
                continue
            host = v.const if v.const is not None else random_fill(v.shape, v.dtype, rng)
            self.arrays.append(self._upload(np.ascontiguousarray(host), f"tune in{k}"))
        y = node.outputs[0]
        buf = device.allocate(max(y.type.nbytes, 1), "tune out")  # type: ignore[union-attr]
        self.buffers.append(buf)
        self.out = DeviceArray(buf, 0, y.shape, y.dtype)

    def _upload(self, host: np.ndarray, name: str) -> DeviceArray:
        buf = self.device.allocate(max(host.nbytes, 1), name)
        pinned = self.device.allocate_host(max(host.nbytes, 1), name + " staging")
        self.device.host_access(name, writes=[pinned])
        pinned.array[: host.nbytes] = host.view(np.uint8).reshape(-1)
        self.device.copy_htod(buf, pinned, self.stream)
        self.stream.synchronize()
        pinned.free()
        self.buffers.append(buf)
        return DeviceArray(buf, 0, host.shape, host.dtype)

    def _scratch(self, shape: tuple[int, ...], dtype: Any) -> DeviceArray:
        dtype = np.dtype(dtype)
        buf = self.device.allocate(max(int(np.prod(shape)) * dtype.itemsize, 1), "tune scratch")
        self.buffers.append(buf)
        return DeviceArray(buf, 0, shape, dtype)

    def bind(self, candidate: Candidate) -> Any:
        from edge_infer.cuda.emulator import EmuLibrary

        node = self.node
        layer = Layer(
            node,
            list(self.arrays),
            [None] + [v.const if v is not None else None for v in node.inputs[1:]],
            [self.out],
            17,
            lambda a: self._upload(np.ascontiguousarray(a), "tune table"),
            candidate.name,
            scratch_fn=self._scratch,
        )  # type: ignore[arg-type]
        calls = lower(layer)
        if calls is None:
            raise BackendError(f"tactic {candidate.name} cannot run layer {node.name}")
        call = calls[-1]  # the convolution (a reformat of its input may come first)
        if self.device.properties.emulated:
            function = self.device.load_module(EmuLibrary.get()).function(call.entry)
        else:  # pragma: no cover - needs a GPU
            from edge_infer.cuda import compile as nvrtc
            from edge_infer.cuda import library

            sm = self.device.properties.sm[0] * 10 + self.device.properties.sm[1]
            path, _ = nvrtc.compile_source(library.get(call.entry).path, sm)
            function = self.device.load_module(path.read_bytes()).function(call.entry)
        reads = [a.region() for a in (*self.arrays, *layer.extra_reads) if a is not None]
        writes = [self.out.region()]

        def run() -> None:
            self.device.launch(
                function,
                call.grid,
                call.block,
                call.params,
                stream=self.stream,
                shared_bytes=call.shared_bytes,
                reads=reads,
                writes=writes,
                label=f"tune {node.name}:{call.entry}",
            )

        run.tactic = candidate.name  # type: ignore[attr-defined]  (for injected timers)
        run.stream = self.stream  # type: ignore[attr-defined]
        return run

    def __enter__(self) -> TuningBench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.synchronize()
        for buf in self.buffers:
            buf.free()
        self.stream.close()
