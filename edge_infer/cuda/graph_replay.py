"""A context's recorded launch list, replayed per inference (the emulator's CUDA graph).

Lowering a program for a context records every launch once — kernel, grid, block, params,
declared reads and writes — as a :class:`LaunchGraph`, the analogue of a CUDA graph captured
for that context and batch plan: nothing is planned per inference, only replayed. On the
emulator, and on pycuda (whose driver API this project uses without stream capture: the
first replay on a GPU says so in the log), the replay issues the recorded launches — stage by
stage, independent branches on auxiliary streams forked and joined by events — and a
host-fallback step in the list synchronizes its stream where it sits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_infer.cuda.device import Device, Event, Region, Stream
from edge_infer.cuda.library import KernelCall

log = logging.getLogger(__name__)


@dataclass
class LaunchStep:
    """One kernel launch of a layer."""

    layer: str
    function: Any
    call: KernelCall
    reads: list[Region]
    writes: list[Region]

    def issue(self, device: Device, stream: Stream) -> None:
        c = self.call
        device.launch(
            self.function,
            c.grid,
            c.block,
            c.params,
            stream=stream,
            shared_bytes=c.shared_bytes,
            reads=self.reads,
            writes=self.writes,
            label=f"{self.layer}:{c.entry}",
        )


@dataclass
class HostStep:
    """A layer computed on the host: copy its inputs' and outputs' device bytes to pinned
    memory (``(device region, pinned region)`` pairs), wait for the stream, ``compute`` on the
    pinned copies, copy the outputs back."""

    layer: str
    ins: list[tuple[Region, Region]]
    outs: list[tuple[Region, Region]]
    compute: Callable[[], None]

    def issue(self, device: Device, stream: Stream) -> None:
        for dev, pinned in (*self.ins, *self.outs):
            device.copy_dtoh(pinned, dev, stream, label=f"{self.layer}: to host")
        stream.synchronize()
        device.host_access(
            f"{self.layer} (host fallback)",
            reads=[p for _, p in self.ins],
            writes=[p for _, p in self.outs],
        )
        self.compute()
        for dev, pinned in self.outs:
            device.copy_htod(dev, pinned, stream, label=f"{self.layer}: from host")


class LaunchGraph:
    """The recorded steps of one context and batch plan, by stage and lane.

    Steps of one stage (the dependency depth of their layer) do not depend on each other: a
    stage whose steps are on several lanes forks — an event recorded on the context's stream,
    waited on by an auxiliary stream per extra lane — and joins: an event recorded on each
    auxiliary stream after its lane, waited on by the context's stream before the next
    stage. Lane 0 runs on the context's stream.
    """

    def __init__(self, device: Device, aux: list[Stream] | None = None) -> None:
        self.device = device
        self.aux = list(aux or [])
        self.steps: list[LaunchStep | HostStep] = []
        self._where: list[tuple[int, int]] = []  # (stage, lane) of each step
        self._fork = device.event("fork")
        self._joins = [device.event(f"join {s.name}") for s in self.aux]
        self.replays = 0

    def add(self, step: LaunchStep | HostStep, stage: int = 0, lane: int = 0) -> None:
        if lane > len(self.aux):
            raise ValueError(f"lane {lane} needs {lane} auxiliary streams, have {len(self.aux)}")
        self.steps.append(step)
        self._where.append((stage, lane))

    @property
    def launches(self) -> int:
        return sum(isinstance(s, LaunchStep) for s in self.steps)

    @property
    def host_steps(self) -> int:
        return sum(isinstance(s, HostStep) for s in self.steps)

    @property
    def forks(self) -> int:
        """Stages run on more than one stream."""
        lanes: dict[int, set[int]] = {}
        for stage, lane in self._where:
            lanes.setdefault(stage, set()).add(lane)
        return sum(len(v) > 1 for v in lanes.values())

    def replay(self, stream: Stream) -> None:
        """Issue every recorded step: stage by stage, a stage's lanes on their streams."""
        if self.replays == 0 and not self.device.properties.emulated:
            log.info(
                "CUDA graph capture is not used through pycuda: the %d recorded launches are "
                "replayed as plain launches",
                self.launches,
            )
        k = 0
        while k < len(self.steps):
            stage = self._where[k][0]
            lanes: dict[int, list[LaunchStep | HostStep]] = {}
            while k < len(self.steps) and self._where[k][0] == stage:
                lanes.setdefault(self._where[k][1], []).append(self.steps[k])
                k += 1
            self._stage(stream, lanes)
        self.replays += 1

    def _stage(self, main: Stream, lanes: dict[int, list[LaunchStep | HostStep]]) -> None:
        aux = sorted(lane for lane in lanes if lane > 0)
        if aux:
            self._fork.record(main)
            for lane in aux:
                self.aux[lane - 1].wait(self._fork)
        for lane in sorted(lanes):
            target = main if lane == 0 else self.aux[lane - 1]
            for step in lanes[lane]:
                step.issue(self.device, target)
        for lane in aux:
            self._join(main, self.aux[lane - 1], self._joins[lane - 1])

    def _join(self, main: Stream, aux: Stream, event: Event) -> None:
        """Order ``main``'s later work after everything issued on ``aux`` so far."""
        event.record(aux)
        main.wait(event)

    def close(self) -> None:
        """Release the fork and join events (the streams are the context's)."""
        for event in (self._fork, *self._joins):
            event.close()
