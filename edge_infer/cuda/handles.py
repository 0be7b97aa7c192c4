"""What a :class:`~edge_infer.cuda.device.Device` hands out: buffers and the byte ranges
(:class:`Region`) of them that work declares, streams, events, modules and functions, and the
device's properties. Each is a thin handle; the device does the work (``self.device._...``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_infer.cuda.hazards import Span
from edge_infer.errors import CudaError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from edge_infer.cuda.device import Device

Dim3 = tuple[int, int, int]


@dataclass(frozen=True)
class DeviceProperties:
    """What the engine fingerprint records about a device."""

    name: str
    sm: tuple[int, int]
    integrated: bool  # shares DRAM with the CPU (Jetson): pinned buffers are mapped zero-copy
    driver_version: int  # CUDA driver API version, e.g. 12040 (0 on the emulator)
    runtime_version: int  # CUDA version the binding was built against (0 on the emulator)
    total_memory: int  # bytes
    emulated: bool = False

    @property
    def arch(self) -> str:
        """The NVRTC/nvcc target, e.g. ``sm_87``."""
        return f"sm_{self.sm[0]}{self.sm[1]}"


class _Memory:
    """An allocation; freed explicitly, by its context manager, or when its device closes."""

    kind = "memory"

    def __init__(self, device: Device, alloc_id: int, nbytes: int, name: str, handle: Any):
        self.device = device
        self.alloc_id = alloc_id
        self.nbytes = nbytes
        self.name = name or f"{self.kind}#{alloc_id}"
        self.freed = False
        self._handle = handle

    def region(self, offset: int = 0, nbytes: int | None = None) -> Region:
        """Bytes ``[offset, offset + nbytes)`` of this allocation (to its end by default)."""
        if nbytes is None:
            nbytes = self.nbytes - offset
        if offset < 0 or nbytes < 0 or offset + nbytes > self.nbytes:
            raise CudaError(
                f"region [{offset}, {offset + nbytes}) is outside '{self.name}' "
                f"({self.nbytes} bytes): check the memory plan's offsets"
            )
        return Region(self, int(offset), int(nbytes))

    def free(self) -> None:
        self.device.free(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.freed:
            self.free()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.nbytes} bytes)"


class DeviceBuffer(_Memory):
    """Device memory: ``ptr`` is the device address kernels take (256-byte aligned)."""

    kind = "device"

    def __init__(self, device, alloc_id, nbytes, name, handle, ptr: int):
        super().__init__(device, alloc_id, nbytes, name, handle)
        self.ptr = ptr


class HostBuffer(_Memory):
    """Pinned (page-locked) host memory with a numpy view. Where the GPU is integrated it is
    mapped: ``device_ptr`` is the address kernels use to read and write it in place (zero
    copy); elsewhere ``device_ptr`` is None and data moves by copies."""

    kind = "pinned"

    def __init__(self, device, alloc_id, nbytes, name, handle, array: np.ndarray, device_ptr):
        super().__init__(device, alloc_id, nbytes, name, handle)
        self.array = array  # uint8, nbytes long
        self.ptr = int(array.ctypes.data)
        self.device_ptr: int | None = device_ptr

    @property
    def mapped(self) -> bool:
        return self.device_ptr is not None

    def view(self, dtype: Any, shape: Sequence[int] | None = None, offset: int = 0) -> np.ndarray:
        """A typed numpy view of the bytes from ``offset`` (the whole rest if no shape)."""
        dtype = np.dtype(dtype)
        count = (self.nbytes - offset) // dtype.itemsize if shape is None else int(np.prod(shape))
        stop = offset + count * dtype.itemsize
        if offset < 0 or stop > self.nbytes:
            raise CudaError(f"view of {count} x {dtype} at {offset} exceeds '{self.name}'")
        out = self.array[offset:stop].view(dtype)
        return out if shape is None else out.reshape(shape)


@dataclass(frozen=True)
class Region:
    """A byte range of one allocation: what launches and copies declare they touch."""

    buffer: DeviceBuffer | HostBuffer
    offset: int
    nbytes: int

    @property
    def device_ptr(self) -> int:
        """The address a kernel uses for the first byte (device memory, or mapped pinned)."""
        base = self.buffer.ptr if isinstance(self.buffer, DeviceBuffer) else self.buffer.device_ptr
        if base is None:
            raise CudaError(
                f"'{self.buffer.name}' is pinned host memory not mapped on this device "
                "(a discrete GPU): copy it to a device buffer first"
            )
        return base + self.offset

    @property
    def span(self) -> Span:
        return Span(self.buffer.alloc_id, self.offset, self.offset + self.nbytes, self.buffer.name)


RegionLike = Region | DeviceBuffer | HostBuffer


class Stream:
    """An ordered queue of device work; ``with device.stream() as s:`` destroys it on exit."""

    def __init__(self, device: Device, name: str, agent: int, handle: Any):
        self.device = device
        self.name = name
        self.agent = agent  # the hazard checker's id for this stream
        self.closed = False
        self._handle = handle

    def wait(self, event: Event) -> None:
        """Work enqueued later on this stream starts after the event's last record."""
        self.device._stream_wait(self, event)

    def synchronize(self) -> None:
        self.device._stream_synchronize(self)

    def close(self) -> None:
        self.device._stream_close(self)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Stream({self.name!r})"


class Event:
    """A point in a stream: record, wait on it from other streams, synchronize, time."""

    def __init__(self, device: Device, name: str, key: int, handle: Any):
        self.device = device
        self.name = name
        self.key = key  # the hazard checker's id: unique for the device's life (id() is not)
        self.recorded = False
        self.closed = False
        self._handle = handle

    def record(self, stream: Stream) -> None:
        self.device._event_record(self, stream)

    def synchronize(self) -> None:
        self.device._event_synchronize(self)

    def query(self) -> bool:
        """Whether the recorded work has finished (a True answer orders the host after it)."""
        return self.device._event_query(self)

    def elapsed_ms(self, end: Event) -> float:
        """Milliseconds from this event to ``end``; both recorded and finished."""
        return self.device._event_elapsed(self, end)

    def close(self) -> None:
        self.device._event_close(self)

    def __enter__(self) -> Event:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Module:
    """Loaded device code (a cubin on a GPU, the emulated library on the emulator)."""

    def __init__(self, device: Device, name: str, handle: Any):
        self.device = device
        self.name = name
        self._handle = handle
        self._functions: dict[str, Function] = {}

    def function(self, name: str) -> Function:
        """The ``extern "C" __global__`` entry point ``name``."""
        if name not in self._functions:
            handle = self.device._get_function(self, name)
            self._functions[name] = Function(self, name, handle)
        return self._functions[name]


@dataclass(frozen=True)
class Function:
    module: Module
    name: str
    _handle: Any
