"""The device layer: one small interface over a CUDA device, thin and boring.

Memory (:class:`DeviceBuffer`, pinned :class:`HostBuffer`), :class:`Stream`, :class:`Event`,
:class:`Module`/:class:`Function` (the handles, in ``handles.py``, re-exported here), async
copies and kernel launches. Two implementations:
``EmuDevice`` (``emu_device.py``: the kernel library's emulated build on the CPU, streams as
concurrent ordered queues) and ``PycudaDevice`` (``pycuda_device.py``: a real GPU).

Every launch and copy *declares* the byte ranges (:class:`Region`) it reads and writes. The
CUDA backend computes them from the memory plan; the device hands them to the stream-order
:class:`~edge_infer.cuda.hazards.HazardChecker` (on by default on the emulator), which fails
an unordered conflicting pair at the call that issues the second of them. Host reads and writes
of pinned memory are declared with :meth:`Device.host_access`.

The public methods validate and order the checker; the ``_``-prefixed hooks do the work.
"""

from __future__ import annotations

import abc
import ctypes
import itertools
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from edge_infer.cuda.handles import (
    DeviceBuffer,
    DeviceProperties,
    Dim3,
    Event,
    Function,
    HostBuffer,
    Module,
    Region,
    RegionLike,
    Stream,
    _Memory,
)
from edge_infer.cuda.hazards import HazardChecker
from edge_infer.errors import CudaError

__all__ = [
    "Device",
    "DeviceBuffer",
    "DeviceProperties",
    "Dim3",
    "Event",
    "Function",
    "HostBuffer",
    "Module",
    "Region",
    "RegionLike",
    "Stream",
]

#: CUDA's launch limits (every SM since 3.0): threads per block, block z, grid y/z.
MAX_BLOCK_THREADS = 1024
_MAX_BLOCK = (1024, 1024, 64)
_MAX_GRID = (2**31 - 1, 65535, 65535)


class Device(abc.ABC):
    """Allocate, copy, launch, order. Subclasses implement the ``_``-prefixed hooks."""

    def __init__(self, properties: DeviceProperties, *, check_hazards: bool):
        self.properties = properties
        self.hazards: HazardChecker | None = HazardChecker() if check_hazards else None
        # One lock orders the checker and the enqueue: the checker sees calls in queue order.
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._live: dict[int, _Memory] = {}
        self._streams: dict[int, Stream] = {}
        self._frame_buffers: dict[int, HostBuffer] = {}  # host address -> its allocation
        self._closed = False

    # -- memory --------------------------------------------------------------------------------

    def allocate(self, nbytes: int, name: str = "") -> DeviceBuffer:
        """Device memory, 256-byte aligned (as cudaMalloc)."""
        nbytes = self._check_size(nbytes, name)
        with self._lock:
            ptr, handle = self._alloc_device(nbytes, name)
            buffer = DeviceBuffer(self, next(self._ids), nbytes, name, handle, ptr)
            self._live[buffer.alloc_id] = buffer
            return buffer

    def allocate_host(self, nbytes: int, name: str = "") -> HostBuffer:
        """Pinned host memory; mapped into the device's address space where it is integrated."""
        nbytes = self._check_size(nbytes, name)
        with self._lock:
            array, device_ptr, handle = self._alloc_host(nbytes, name)
            buffer = HostBuffer(self, next(self._ids), nbytes, name, handle, array, device_ptr)
            self._live[buffer.alloc_id] = buffer
            return buffer

    @property
    def is_integrated(self) -> bool:
        """The GPU shares DRAM with the CPU (Jetson): pinned buffers are mapped, zero copy."""
        return self.properties.integrated

    def host_frame_buffer(self, shape: Sequence[int], name: str = "frame") -> np.ndarray:
        """A uint8 array of ``shape`` in pinned memory, for a camera to decode into: mapped
        (kernels read it in place) on an integrated GPU, a source of async copies on a
        discrete one. The device remembers it, so :meth:`pinned_region` finds it again and
        host writes to it (:meth:`claim_frame_buffer`) are checked against device reads."""
        shape = tuple(int(d) for d in shape)
        buffer = self.allocate_host(int(np.prod(shape)), name)
        array = buffer.view(np.uint8, shape)
        with self._lock:
            self._frame_buffers[int(array.ctypes.data)] = buffer
        return array

    def pinned_region(self, array: np.ndarray) -> Region | None:
        """The pinned bytes of ``array`` when it is (the whole of) a live
        :meth:`host_frame_buffer`, else None (memory the device cannot read directly)."""
        if not isinstance(array, np.ndarray) or not array.flags.c_contiguous:
            return None
        with self._lock:
            buffer = self._frame_buffers.get(int(array.ctypes.data))
        if buffer is None or buffer.freed or array.nbytes > buffer.nbytes:
            return None
        return buffer.region(0, array.nbytes)

    def claim_frame_buffer(self, array: np.ndarray, label: str = "camera writes frame") -> None:
        """Declare that the host is about to write a :meth:`host_frame_buffer` (a camera
        decoding into it): the hazard checker fails it while device work may still read it."""
        region = self.pinned_region(array)
        if region is not None:
            self.host_access(label, writes=[region])

    def free_frame_buffer(self, array: np.ndarray) -> None:
        """Free a :meth:`host_frame_buffer` (no-op for any other array)."""
        with self._lock:
            buffer = self._frame_buffers.pop(int(array.ctypes.data), None)
        if buffer is not None and not buffer.freed:
            self.free(buffer)

    def free(self, buffer: DeviceBuffer | HostBuffer) -> None:
        """Release an allocation (waits for the device's work first, as cudaFree does)."""
        with self._lock:
            if buffer.device is not self or buffer.freed:
                raise CudaError(f"'{buffer.name}' is not a live allocation of this device")
            self._sync_device()
            buffer.freed = True
            del self._live[buffer.alloc_id]
            if isinstance(buffer, DeviceBuffer):
                self._free_device(buffer._handle)
            else:
                self._free_host(buffer._handle)
            buffer._handle = None
            if self.hazards is not None:
                self.hazards.forget(buffer.alloc_id)

    # -- streams and events --------------------------------------------------------------------

    def stream(self, name: str = "") -> Stream:
        with self._lock:
            self._check_open()
            name = name or f"stream{len(self._streams)}"
            agent = self.hazards.add_stream(name) if self.hazards is not None else -1
            stream = Stream(self, name, agent, self._create_stream(name))
            self._streams[id(stream)] = stream
            return stream

    def event(self, name: str = "") -> Event:
        with self._lock:
            self._check_open()
            return Event(self, name or "event", next(self._ids), self._create_event())

    # -- code ----------------------------------------------------------------------------------

    def load_module(self, image: Any, name: str = "") -> Module:
        """Load device code: cubin bytes on a GPU; the emulated kernel library on the emulator."""
        with self._lock:
            self._check_open()
            return Module(self, name or "module", self._load_module(image))

    # -- work on streams -----------------------------------------------------------------------

    def copy_htod(self, dst: RegionLike, src: RegionLike, stream: Stream, label: str = "") -> None:
        """Async copy pinned host -> device on ``stream``."""
        d, s = self._copy_args(dst, src, DeviceBuffer, HostBuffer, "copy_htod")
        self._enqueue(stream, label or "htod", [s], [d], lambda h: self._copy(d, s, h))

    def copy_dtoh(self, dst: RegionLike, src: RegionLike, stream: Stream, label: str = "") -> None:
        """Async copy device -> pinned host on ``stream``."""
        d, s = self._copy_args(dst, src, HostBuffer, DeviceBuffer, "copy_dtoh")
        self._enqueue(stream, label or "dtoh", [s], [d], lambda h: self._copy(d, s, h))

    def copy_dtod(self, dst: RegionLike, src: RegionLike, stream: Stream, label: str = "") -> None:
        """Async copy device -> device on ``stream`` (the ranges must not overlap)."""
        d, s = self._copy_args(dst, src, DeviceBuffer, DeviceBuffer, "copy_dtod")
        if d.span.overlaps(s.span):
            raise CudaError(f"copy_dtod: {s.span} and {d.span} overlap; copy through a temporary")
        self._enqueue(stream, label or "dtod", [s], [d], lambda h: self._copy(d, s, h))

    def memset(self, dst: RegionLike, value: int, stream: Stream, label: str = "") -> None:
        """Async fill of device bytes with ``value`` (0..255) on ``stream``."""
        d = self._region(dst, "memset")
        if not isinstance(d.buffer, DeviceBuffer) or not 0 <= int(value) <= 255:
            raise CudaError("memset takes a device region and a byte value 0..255")
        self._enqueue(stream, label or "memset", [], [d], lambda h: self._memset(d, int(value), h))

    def launch(
        self,
        function: Function,
        grid: int | Sequence[int],
        block: int | Sequence[int],
        params: Any = None,
        *,
        stream: Stream,
        shared_bytes: int = 0,
        reads: Iterable[RegionLike] = (),
        writes: Iterable[RegionLike] = (),
        label: str = "",
    ) -> None:
        """Launch ``function`` on ``stream``. ``params`` is the kernel's parameter struct (a
        ctypes structure, copied now, as CUDA copies kernel parameters at launch) or raw bytes;
        ``reads``/``writes`` are every byte range the kernel may touch."""
        if not isinstance(function, Function) or function.module.device is not self:
            raise CudaError(f"launch: {function!r} is not a function loaded on this device")
        g, b = _dim3(grid, "grid", _MAX_GRID), _dim3(block, "block", _MAX_BLOCK)
        if b[0] * b[1] * b[2] > MAX_BLOCK_THREADS:
            raise CudaError(f"launch '{function.name}': block {b} has over 1024 threads")
        if int(shared_bytes) < 0:
            raise CudaError(f"launch '{function.name}': negative shared memory {shared_bytes}")
        payload = _params_copy(params, function.name)
        r = [self._kernel_region(x, function.name) for x in reads]
        w = [self._kernel_region(x, function.name) for x in writes]
        name = label or function.name
        shared = int(shared_bytes)
        self._enqueue(
            stream, name, r, w, lambda h: self._launch(function, g, b, payload, shared, h, name, w)
        )

    def host_access(
        self, label: str, *, reads: Iterable[RegionLike] = (), writes: Iterable[RegionLike] = ()
    ) -> None:
        """Declare that the host reads/writes these pinned bytes now (checked for hazards)."""
        r = [self._region(x, "host_access") for x in reads]
        w = [self._region(x, "host_access") for x in writes]
        for region in (*r, *w):
            if not isinstance(region.buffer, HostBuffer):
                raise CudaError(f"host_access '{label}': '{region.buffer.name}' is device memory")
        if self.hazards is not None:
            self.hazards.host_op(label, [x.span for x in r], [x.span for x in w])

    def synchronize(self) -> None:
        """Wait for all work on the device; raises the first failure of any stream's work."""
        with self._lock:
            point = self.hazards.device_point() if self.hazards is not None else None
        self._sync_device()
        if point is not None:
            self.hazards.host_joins(point)

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Destroy every stream and free every allocation (idempotent)."""
        with self._lock:
            if self._closed:
                return
            try:
                self._sync_device()
            finally:
                for stream in list(self._streams.values()):
                    self._stream_close(stream, sync=False)
                for buffer in list(self._live.values()):
                    buffer.freed = True
                    if isinstance(buffer, DeviceBuffer):
                        self._free_device(buffer._handle)
                    else:
                        self._free_host(buffer._handle)
                self._live.clear()
                self._closed = True
                self._shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing for Stream/Event -------------------------------------------------------------

    def _stream_wait(self, stream: Stream, event: Event) -> None:
        self._check_stream(stream)
        self._check_event(event)
        with self._lock:
            if self.hazards is not None:
                self.hazards.wait(stream.agent, event.key)
            if event.recorded:  # waiting on a never-recorded event is a no-op, as in CUDA
                self._wait(stream._handle, event._handle)

    def _stream_synchronize(self, stream: Stream) -> None:
        self._check_stream(stream)
        with self._lock:
            point = self.hazards.stream_point(stream.agent) if self.hazards is not None else None
        self._sync_stream(stream._handle)
        if point is not None:
            self.hazards.host_joins(point)

    def _stream_close(self, stream: Stream, sync: bool = True) -> None:
        with self._lock:
            if stream.closed:
                return
            if sync:
                self._sync_stream(stream._handle)
            stream.closed = True
            self._streams.pop(id(stream), None)
            self._destroy_stream(stream._handle)
            if self.hazards is not None:
                self.hazards.remove_stream(stream.agent)

    def _event_record(self, event: Event, stream: Stream) -> None:
        self._check_stream(stream)
        self._check_event(event)
        with self._lock:
            if self.hazards is not None:
                self.hazards.record(event.key, stream.agent)
            self._record(event._handle, stream._handle)
            event.recorded = True

    def _event_synchronize(self, event: Event) -> None:
        self._check_event(event)
        with self._lock:
            point = self.hazards.event_point(event.key) if self.hazards is not None else None
        if event.recorded:
            self._sync_event(event._handle)
        if point is not None:
            self.hazards.host_joins(point)

    def _event_query(self, event: Event) -> bool:
        self._check_event(event)
        with self._lock:
            point = self.hazards.event_point(event.key) if self.hazards is not None else None
        done = not event.recorded or self._query_event(event._handle)
        if done and point is not None:
            self.hazards.host_joins(point)
        return done

    def _event_elapsed(self, start: Event, end: Event) -> float:
        self._check_event(start)
        self._check_event(end)
        if not (start.recorded and end.recorded):
            raise CudaError("elapsed_ms: record both events on a stream first")
        return float(self._elapsed_ms(start._handle, end._handle))

    def _event_close(self, event: Event) -> None:
        with self._lock:
            if event.closed:
                return
            event.closed = True
            self._destroy_event(event._handle)
            if self.hazards is not None:
                self.hazards.remove_event(event.key)

    # -- validation ----------------------------------------------------------------------------

    def _enqueue(self, stream, label, reads, writes, submit) -> None:
        self._check_stream(stream)
        with self._lock:
            if self.hazards is not None:
                self.hazards.stream_op(
                    stream.agent, label, [x.span for x in reads], [x.span for x in writes]
                )
            submit(stream._handle)

    def _region(self, x: RegionLike, what: str) -> Region:
        region = x.region() if isinstance(x, (DeviceBuffer, HostBuffer)) else x
        if not isinstance(region, Region):
            raise CudaError(f"{what}: expected a Region or a buffer, got {type(x).__name__}")
        if region.buffer.device is not self or region.buffer.freed:
            raise CudaError(f"{what}: '{region.buffer.name}' is freed or of another device")
        return region

    def _kernel_region(self, x: RegionLike, name: str) -> Region:
        region = self._region(x, f"launch '{name}'")
        region.device_ptr  # noqa: B018 -- raises for pinned memory a kernel cannot address
        return region

    def _copy_args(self, dst, src, dst_type, src_type, what) -> tuple[Region, Region]:
        d, s = self._region(dst, what), self._region(src, what)
        if not isinstance(d.buffer, dst_type) or not isinstance(s.buffer, src_type):
            raise CudaError(
                f"{what}: copies {src_type.kind} -> {dst_type.kind} memory, got "
                f"'{s.buffer.name}' ({s.buffer.kind}) -> '{d.buffer.name}' ({d.buffer.kind})"
            )
        if d.nbytes != s.nbytes:
            raise CudaError(f"{what}: {s.nbytes} bytes into a {d.nbytes}-byte region")
        return d, s

    def _check_size(self, nbytes: int, name: str) -> int:
        self._check_open()
        if int(nbytes) <= 0:
            raise CudaError(f"allocation '{name}': size must be positive, got {nbytes}")
        return int(nbytes)

    def _check_stream(self, stream: Stream) -> None:
        if not isinstance(stream, Stream) or stream.device is not self or stream.closed:
            raise CudaError(f"{stream!r} is not an open stream of this device")

    def _check_event(self, event: Event) -> None:
        if not isinstance(event, Event) or event.device is not self or event.closed:
            raise CudaError(f"{event!r} is not an open event of this device")

    def _check_open(self) -> None:
        if self._closed:
            raise CudaError("the device is closed")

    # -- the implementation's hooks ------------------------------------------------------------

    @abc.abstractmethod
    def _alloc_device(self, nbytes: int, name: str) -> tuple[int, Any]: ...
    @abc.abstractmethod
    def _free_device(self, handle: Any) -> None: ...
    @abc.abstractmethod
    def _alloc_host(self, nbytes: int, name: str) -> tuple[np.ndarray, int | None, Any]: ...
    @abc.abstractmethod
    def _free_host(self, handle: Any) -> None: ...
    @abc.abstractmethod
    def _create_stream(self, name: str) -> Any: ...
    @abc.abstractmethod
    def _destroy_stream(self, handle: Any) -> None: ...
    @abc.abstractmethod
    def _create_event(self) -> Any: ...
    @abc.abstractmethod
    def _destroy_event(self, handle: Any) -> None: ...
    @abc.abstractmethod
    def _record(self, event: Any, stream: Any) -> None: ...
    @abc.abstractmethod
    def _wait(self, stream: Any, event: Any) -> None: ...
    @abc.abstractmethod
    def _sync_stream(self, stream: Any) -> None: ...
    @abc.abstractmethod
    def _sync_event(self, event: Any) -> None: ...
    @abc.abstractmethod
    def _query_event(self, event: Any) -> bool: ...
    @abc.abstractmethod
    def _elapsed_ms(self, start: Any, end: Any) -> float: ...
    @abc.abstractmethod
    def _sync_device(self) -> None: ...
    @abc.abstractmethod
    def _load_module(self, image: Any) -> Any: ...
    @abc.abstractmethod
    def _get_function(self, module: Module, name: str) -> Any: ...
    @abc.abstractmethod
    def _copy(self, dst: Region, src: Region, stream: Any) -> None: ...
    @abc.abstractmethod
    def _memset(self, dst: Region, value: int, stream: Any) -> None: ...
    @abc.abstractmethod
    def _launch(
        self, function, grid: Dim3, block: Dim3, params, shared, stream, label, writes
    ) -> None: ...

    @abc.abstractmethod
    def _shutdown(self) -> None:
        """Release the device itself after close (the primary context, worker threads)."""


def _dim3(value: int | Sequence[int], what: str, limits: Dim3) -> Dim3:
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3:
        raise CudaError(f"launch {what} {value!r}: give 1 to 3 dimensions")
    full = tuple(int(d) for d in dims) + (1,) * (3 - len(dims))
    if any(not 1 <= d <= lim for d, lim in zip(full, limits)):
        raise CudaError(f"launch {what} {full}: each dimension must be within 1..{limits}")
    return full  # type: ignore[return-value]


def _params_copy(params: Any, name: str) -> Any:
    """A private copy of the parameter struct, so later edits by the caller do not leak in."""
    if params is None:
        return None
    if isinstance(params, (bytes, bytearray, memoryview)):
        return bytes(params)
    if isinstance(params, (ctypes.Structure, ctypes.Union, ctypes.Array, ctypes._SimpleCData)):
        return type(params).from_buffer_copy(params)
    raise CudaError(f"launch '{name}': params must be a ctypes struct or bytes")
