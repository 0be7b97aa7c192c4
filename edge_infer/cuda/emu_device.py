"""``EmuDevice``: the device layer on the CPU, running the kernel library's emulated build.

- Device memory is host memory (numpy, 256-byte aligned as cudaMalloc); a "device pointer" is
  the host address the emulated kernels dereference. Pinned buffers are host memory too, and
  mapped (kernels may address them) when the emulated device is integrated, as on Jetson.
- Each stream is an ordered queue with its own worker thread, so streams really run at the
  same time; an event is a completion flag set when the worker reaches its record, and a wait
  blocks the waiting stream's worker on the flag of the record current at the time of the wait
  (cudaStreamWaitEvent semantics).
- Copies are memmoves and launches call the emulated function, both on the stream's worker.
  A failure is kept and raised as :class:`CudaLaunchError` by the next synchronize, as CUDA
  reports asynchronous errors; the device is then unusable (a sticky error, as in CUDA), and
  queued work is skipped.
- Event times come from the host's ``perf_counter`` when a worker reaches the record: they
  measure the emulator, not a GPU.
- The stream-order hazard checker is on by default. It proves the *declared* accesses are
  ordered; ``verify_writes=True`` also proves the declarations cover what kernels write: each
  kernel then runs alone and fails if it changed a byte of device memory (or of a mapped
  buffer it writes) outside its declared writes (slow: it compares all that memory around
  every launch; for tests).

Kernels come from the emulated library (``EmuLibrary``: anything with
``launch(entry, grid, block, params, shared_bytes)``) or, for tests and stand-ins, from a
:class:`PyModule` of Python callables.
"""

from __future__ import annotations

import contextlib
import ctypes
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from edge_infer.cuda.device import Device, DeviceProperties, Dim3, Function, Module, Region
from edge_infer.errors import CudaError, CudaLaunchError, CudaOutOfMemoryError

_ALIGN = 256
#: Orin's SM by default: the product's main target.
DEFAULT_SM = (8, 7)
DEFAULT_MEMORY = 8 << 30


class EmuKernelSource(Protocol):
    """What EmuDevice loads: the emulated kernel library's launch entry."""

    def launch(
        self, entry: str, grid: Dim3, block: Dim3, params: Any, shared_bytes: int = 0
    ) -> None: ...


PyKernel = Callable[[Dim3, Dim3, Any, int], None]


class PyModule:
    """Python callables standing in for kernels: ``kernel(grid, block, params, shared_bytes)``
    works on the host memory the params' pointers address (tests; stand-ins)."""

    def __init__(self, kernels: Mapping[str, PyKernel]):
        self.kernels = dict(kernels)

    def launch(self, entry: str, grid: Dim3, block: Dim3, params: Any, shared_bytes: int = 0):
        self.kernels[entry](grid, block, params, shared_bytes)

    def __contains__(self, entry: str) -> bool:
        return entry in self.kernels


class _Mark:
    """A point in a stream: set (with its time) when the stream's worker reaches it."""

    __slots__ = ("done", "time")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.time = 0.0

    def reach(self) -> None:
        self.time = time.perf_counter()
        self.done.set()


class _Worker:
    """One stream: a queue of callables run in order by one thread."""

    def __init__(self, device: EmuDevice, name: str):
        self._device = device
        self._queue: queue.SimpleQueue[tuple[str, Callable[[], None], bool] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name=f"emu-stream-{name}", daemon=True)
        self._thread.start()

    def put(self, label: str, work: Callable[[], None], *, always: bool = False) -> None:
        """Queue ``work``; ``always`` for ordering work (marks, waits) that runs even after a
        failure, so that synchronizes and waits on other streams still return."""
        self._queue.put((label, work, always))

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            label, work, always = item
            if not always and self._device._failure is not None:
                continue
            try:
                work()
            except BaseException as exc:  # a kernel's failure, kept for the next synchronize
                self._device._fail(label, exc)


class EmuDevice(Device):
    """A CUDA device emulated on the CPU (see the module doc)."""

    def __init__(
        self,
        *,
        sm: tuple[int, int] = DEFAULT_SM,
        integrated: bool = True,
        total_memory: int = DEFAULT_MEMORY,
        check_hazards: bool = True,
        verify_writes: bool = False,
        name: str = "edge_infer CUDA emulator",
    ):
        props = DeviceProperties(
            name=name,
            sm=(int(sm[0]), int(sm[1])),
            integrated=integrated,
            driver_version=0,
            runtime_version=0,
            total_memory=int(total_memory),
            emulated=True,
        )
        super().__init__(props, check_hazards=check_hazards)
        self._used = 0
        self._failure: CudaLaunchError | None = None
        self._failure_lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._verify = verify_writes
        # With verify_writes every copy, memset and launch runs alone, so a kernel's changes
        # can be told from other streams' (the checker proves ordering; this, completeness).
        self._exclusive = threading.Lock() if verify_writes else contextlib.nullcontext()

    # -- memory --------------------------------------------------------------------------------

    def _alloc_device(self, nbytes: int, name: str) -> tuple[int, Any]:
        if self._used + nbytes > self.properties.total_memory:
            raise CudaOutOfMemoryError(
                f"allocating {nbytes} bytes for '{name}' exceeds the emulated device's "
                f"{self.properties.total_memory} bytes ({self._used} in use); free buffers or "
                "build for a smaller batch"
            )
        array = _aligned(nbytes)
        self._used += nbytes
        return int(array.ctypes.data), array

    def _free_device(self, handle: Any) -> None:
        self._used -= handle.nbytes

    def _alloc_host(self, nbytes: int, name: str) -> tuple[np.ndarray, int | None, Any]:
        array = _aligned(nbytes)
        mapped = int(array.ctypes.data) if self.properties.integrated else None
        return array, mapped, array

    def _free_host(self, handle: Any) -> None:
        pass  # numpy owns it; the buffer is marked freed and no longer reachable here

    # -- streams and events --------------------------------------------------------------------

    def _create_stream(self, name: str) -> Any:
        worker = _Worker(self, name)
        self._workers.append(worker)
        return worker

    def _destroy_stream(self, handle: Any) -> None:
        handle.stop()
        self._workers.remove(handle)

    def _create_event(self) -> Any:
        return [None]  # the current record's _Mark (a list: re-recording replaces it)

    def _destroy_event(self, handle: Any) -> None:
        pass

    def _record(self, event: Any, stream: Any) -> None:
        mark = _Mark()
        event[0] = mark
        stream.put("event record", mark.reach, always=True)

    def _wait(self, stream: Any, event: Any) -> None:
        mark = event[0]  # the record current now: a later re-record does not move this wait
        stream.put("event wait", mark.done.wait, always=True)

    def _sync_stream(self, stream: Any) -> None:
        mark = _Mark()
        stream.put("synchronize", mark.reach, always=True)
        mark.done.wait()
        self._raise_failure()

    def _sync_event(self, event: Any) -> None:
        event[0].done.wait()
        self._raise_failure()

    def _query_event(self, event: Any) -> bool:
        done = event[0].done.is_set()
        if done:
            self._raise_failure()
        return done

    def _elapsed_ms(self, start: Any, end: Any) -> float:
        if not (start[0].done.is_set() and end[0].done.is_set()):
            raise CudaError("elapsed_ms: an event has not completed; synchronize it first")
        return (end[0].time - start[0].time) * 1e3

    def _sync_device(self) -> None:
        marks = []
        for worker in list(self._workers):
            mark = _Mark()
            worker.put("synchronize", mark.reach, always=True)
            marks.append(mark)
        for mark in marks:
            mark.done.wait()
        self._raise_failure()

    # -- code ----------------------------------------------------------------------------------

    def _load_module(self, image: Any) -> Any:
        if isinstance(image, (bytes, bytearray, memoryview)):
            raise CudaError(
                "EmuDevice cannot run cubins: load the emulated kernel library "
                "(edge_infer.cuda.emulator.EmuLibrary.get()) or a PyModule instead"
            )
        if not callable(getattr(image, "launch", None)):
            raise CudaError(f"EmuDevice.load_module: {type(image).__name__} has no launch()")
        return image

    def _get_function(self, module: Module, name: str) -> Any:
        source = module._handle
        known = getattr(source, "kernels", None)
        if known is not None and name not in known:
            raise CudaError(f"no kernel {name!r} in module '{module.name}'; it has {sorted(known)}")
        return source

    # -- work ----------------------------------------------------------------------------------

    def _copy(self, dst: Region, src: Region, stream: Any) -> None:
        d, s, n = _host_address(dst), _host_address(src), dst.nbytes

        def copy() -> None:
            with self._exclusive:
                ctypes.memmove(d, s, n)

        stream.put("copy", copy)

    def _memset(self, dst: Region, value: int, stream: Any) -> None:
        d, n = _host_address(dst), dst.nbytes

        def memset() -> None:
            with self._exclusive:
                ctypes.memset(d, value, n)

        stream.put("memset", memset)

    def _launch(
        self, function: Function, grid: Dim3, block: Dim3, params, shared, stream, label, writes
    ) -> None:
        source, entry = function._handle, function.name

        def run() -> None:
            source.launch(entry, grid, block, params, shared)

        stream.put(label, (lambda: self._verified(label, run, writes)) if self._verify else run)

    def _verified(self, label: str, run: Callable[[], None], writes: Sequence[Region]) -> None:
        """Run a kernel alone and fail it if it changed a byte outside its declared writes."""
        with self._exclusive:
            # all device memory, and the pinned buffers it was given to write (other pinned
            # memory is the host's, which may legally change it meanwhile)
            declared = {id(w.buffer) for w in writes}
            memory = [
                b for b in list(self._live.values()) if b.kind == "device" or id(b) in declared
            ]
            before = [b._handle.copy() for b in memory]
            run()
            for buffer, old in zip(memory, before):
                changed = old != buffer._handle
                for w in writes:
                    if w.buffer is buffer:
                        changed[w.offset : w.offset + w.nbytes] = False
                if changed.any():
                    first = int(np.flatnonzero(changed)[0])
                    last = int(np.flatnonzero(changed)[-1])
                    raise CudaError(
                        f"'{label}' changed bytes of '{buffer.name}' in [{first}, {last + 1}) "
                        "outside the ranges it declared as writes: declare them (the memory "
                        "plan's regions for this layer) or fix the kernel's addressing"
                    )

    # -- failures ------------------------------------------------------------------------------

    def _fail(self, label: str, exc: BaseException) -> None:
        with self._failure_lock:
            if self._failure is None:
                failure = CudaLaunchError(
                    f"'{label}' failed on the emulated device: {type(exc).__name__}: {exc} "
                    "(the device is unusable now, as after a CUDA launch failure: open a new one)"
                )
                failure.__cause__ = exc
                self._failure = failure

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _shutdown(self) -> None:
        for worker in list(self._workers):
            worker.stop()
        self._workers.clear()


def _aligned(nbytes: int) -> np.ndarray:
    """``nbytes`` of zeroed host memory starting on a 256-byte boundary."""
    raw = np.zeros(nbytes + _ALIGN, np.uint8)
    start = -int(raw.ctypes.data) % _ALIGN
    return raw[start : start + nbytes]


def _host_address(region: Region) -> int:
    return int(region.buffer.ptr) + region.offset
