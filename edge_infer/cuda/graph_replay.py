"""A context's recorded launch list, replayed per inference (the emulator's CUDA graph).

Lowering a program for a context records every launch once — kernel, grid, block, params,
declared reads and writes — as a :class:`LaunchGraph`, the analogue of a CUDA graph captured
for that context and batch plan: nothing is planned per inference, only replayed. On the
emulator, and on pycuda (whose driver API this project uses without stream capture), the
replay issues the recorded launches in order on the context's stream; a host-fallback step
in the list synchronizes the stream where it sits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_infer.cuda.device import Device, Region, Stream
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
    """A layer computed on the host: copy ``staged`` device regions to pinned memory, wait,
    ``compute`` (reads and writes the pinned copies), copy the outputs back."""

    layer: str
    staged: list[tuple[Any, Region]]  # (DeviceArray, pinned region of its copy)
    host_reads: list[Region]
    out_regions: list[Region]
    compute: Callable[[], None]

    def issue(self, device: Device, stream: Stream) -> None:
        for array, pinned in self.staged:
            device.copy_dtoh(
                pinned,
                array.buffer.region(array.offset, pinned.nbytes),
                stream,
                label=f"{self.layer}: to host",
            )
        stream.synchronize()
        pinned_regions = [p for _, p in self.staged]
        device.host_access(
            f"{self.layer} (host fallback)", reads=pinned_regions, writes=pinned_regions
        )
        self.compute()
        outs = {(r.offset, r.nbytes) for r in self.out_regions}
        for array, pinned in self.staged:
            if (array.offset, pinned.nbytes) in outs:
                device.copy_htod(
                    array.buffer.region(array.offset, pinned.nbytes),
                    pinned,
                    stream,
                    label=f"{self.layer}: from host",
                )


class LaunchGraph:
    """The recorded steps of one context and batch plan."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.steps: list[LaunchStep | HostStep] = []
        self.replays = 0

    def add(self, step: LaunchStep | HostStep) -> None:
        self.steps.append(step)

    @property
    def launches(self) -> int:
        return sum(isinstance(s, LaunchStep) for s in self.steps)

    @property
    def host_steps(self) -> int:
        return sum(isinstance(s, HostStep) for s in self.steps)

    def replay(self, stream: Stream) -> None:
        """Issue every recorded step on ``stream`` in order."""
        for step in self.steps:
            step.issue(self.device, stream)
        self.replays += 1
