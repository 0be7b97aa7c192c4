"""A stand-in for ``pycuda.driver`` that checks how PycudaDevice uses it, without a GPU.

Each function and class mirrors the signature pycuda exports (transcribed from pycuda's
``src/wrapper/wrap_cudadrv.cpp`` and ``pycuda/driver.py``) and the one rule tests cannot see
otherwise: every driver call needs a context current *on the calling thread*, as the CUDA
driver does. Work runs synchronously on host memory ("device pointers" are host addresses),
so it proves the call sequence, argument kinds, byte ranges and context handling of
PycudaDevice -- not GPU semantics, which only the ``gpu``-marked tests prove.
"""

from __future__ import annotations

import ctypes
import struct
import threading
import time
import types
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


class Error(Exception):
    pass


class MemoryError(Error):  # pycuda's own name
    pass


class LogicError(Error):
    pass


class LaunchError(Error):
    pass


class RuntimeError(Error):  # pycuda's own name
    pass


class FakeDriver:
    """State of one fake driver: devices, the per-thread context stacks, the kernels."""

    def __init__(
        self,
        kernels: Mapping[str, tuple[type, Callable]],
        *,
        integrated: bool,
        count: int = 1,
        memory: int = 1 << 30,
    ):
        self.kernels = dict(kernels)  # name -> (params ctypes type, python kernel)
        self.integrated = integrated
        self.count = count
        self.memory = memory
        self.used = 0
        self.local = threading.local()
        self.calls: list[str] = []

    def stack(self) -> list:
        if not hasattr(self.local, "stack"):
            self.local.stack = []
        return self.local.stack

    def need_context(self, what: str) -> None:
        self.calls.append(what)
        if not self.stack():
            raise LogicError(f"{what} failed: invalid device context")

    def module(self) -> types.ModuleType:
        """The fake ``pycuda.driver`` module."""
        drv = self
        mod = types.ModuleType("pycuda.driver")
        for exc in (Error, MemoryError, LogicError, LaunchError, RuntimeError):
            setattr(mod, exc.__name__, exc)
        mod.device_attribute = types.SimpleNamespace(INTEGRATED=18)
        mod.function_attribute = types.SimpleNamespace(MAX_DYNAMIC_SHARED_SIZE_BYTES=8)
        mod.host_alloc_flags = types.SimpleNamespace(PORTABLE=1, DEVICEMAP=2, WRITECOMBINED=4)
        mod.init = lambda flags=0: None
        mod.get_driver_version = lambda: 12040
        mod.get_version = lambda: (12, 4, 0)

        class Context:
            def push(self) -> None:
                drv.stack().append(self)

            @staticmethod
            def pop() -> None:
                if not drv.stack():
                    raise LogicError("context::pop: cannot pop non-current context")
                drv.stack().pop()

            @staticmethod
            def synchronize() -> None:
                drv.need_context("cuCtxSynchronize")

        class Device:
            def __init__(self, ordinal: int):
                if not 0 <= ordinal < drv.count:
                    raise LogicError("cuDeviceGet failed: invalid device ordinal")

            @staticmethod
            def count() -> int:
                return drv.count

            def name(self) -> str:
                return "Fake Orin"

            def compute_capability(self) -> tuple[int, int]:
                return (8, 7)

            def total_memory(self) -> int:
                return drv.memory

            def get_attribute(self, attr: int) -> int:
                if attr != 18:
                    raise LogicError(f"attribute {attr} not faked")
                return int(drv.integrated)

            def retain_primary_context(self) -> Context:
                return Context()

        class DeviceAllocation:
            def __init__(self, nbytes: int):
                drv.need_context("cuMemAlloc")
                if drv.used + nbytes > drv.memory:
                    raise MemoryError("cuMemAlloc failed: out of memory")
                drv.used += nbytes
                raw = np.zeros(nbytes + 256, np.uint8)
                self._array = raw[-raw.ctypes.data % 256 :][:nbytes]
                self.nbytes = nbytes

            def __int__(self) -> int:
                return int(self._array.ctypes.data)

            def free(self) -> None:
                drv.need_context("cuMemFree")
                drv.used -= self.nbytes

        class HostAllocation:
            def __init__(self, shape, dtype, flags: int):
                self._raw = np.zeros(shape, dtype)
                self._flags = flags
                self.__array_interface__ = self._raw.__array_interface__

            def get_device_pointer(self) -> int:
                drv.need_context("cuMemHostGetDevicePointer")
                if not self._flags & 2:
                    raise LogicError("cuMemHostGetDevicePointer failed: not DEVICEMAP memory")
                return int(self._raw.ctypes.data)

            def free(self) -> None:
                drv.need_context("cuMemFreeHost")

        def pagelocked_empty(shape, dtype, order="C", mem_flags=0) -> np.ndarray:
            """As pycuda's: an ndarray whose ``base`` is the page-locked allocation."""
            drv.need_context("cuMemHostAlloc")
            return np.asarray(HostAllocation(shape, dtype, mem_flags))

        class Stream:
            def __init__(self, flags: int = 0):
                drv.need_context("cuStreamCreate")
                self.flags = flags

            def synchronize(self) -> None:
                drv.need_context("cuStreamSynchronize")

            def wait_for_event(self, evt: Event) -> None:
                drv.need_context("cuStreamWaitEvent")
                if not isinstance(evt, Event):
                    raise TypeError("wait_for_event takes an Event")

        class Event:
            def __init__(self, flags: int = 0):
                drv.need_context("cuEventCreate")
                self.time = None

            def record(self, stream: Stream | None = None) -> Event:
                drv.need_context("cuEventRecord")
                _check_stream(stream)
                self.time = time.perf_counter()
                return self

            def synchronize(self) -> Event:
                drv.need_context("cuEventSynchronize")
                return self

            def query(self) -> bool:
                drv.need_context("cuEventQuery")
                return True

            def time_since(self, event: Event) -> float:
                drv.need_context("cuEventElapsedTime")
                return (self.time - event.time) * 1e3

        def _check_stream(stream: Any) -> None:
            if stream is not None and not isinstance(stream, Stream):
                raise TypeError(f"stream must be a Stream, got {type(stream).__name__}")

        def _ptr(value: Any) -> int:
            if not isinstance(value, (int, DeviceAllocation)):  # CUdeviceptr: int or allocation
                raise TypeError(f"expected a device pointer, got {type(value).__name__}")
            return int(value)

        def memcpy_htod_async(dest, src, stream=None) -> None:
            drv.need_context("cuMemcpyHtoDAsync")
            _check_stream(stream)
            view = memoryview(src)
            if not view.contiguous:
                raise TypeError("src must be contiguous")
            ctypes.memmove(_ptr(dest), np.asarray(src).ctypes.data, view.nbytes)

        def memcpy_dtoh_async(dest, src, stream=None) -> None:
            drv.need_context("cuMemcpyDtoHAsync")
            _check_stream(stream)
            view = memoryview(dest)
            if view.readonly or not view.contiguous:
                raise TypeError("dest must be writable and contiguous")
            ctypes.memmove(np.asarray(dest).ctypes.data, _ptr(src), view.nbytes)

        def memcpy_dtod_async(dest, src, size, stream=None) -> None:
            drv.need_context("cuMemcpyDtoDAsync")
            _check_stream(stream)
            ctypes.memmove(_ptr(dest), _ptr(src), int(size))

        def memset_d8_async(dest, data, size, stream=None) -> None:
            drv.need_context("cuMemsetD8Async")
            _check_stream(stream)
            ctypes.memset(_ptr(dest), int(data), int(size))

        class Function:
            def __init__(self, name: str):
                self.name = name
                self.attributes: dict[int, int] = {}

            def prepare(self, arg_types: str) -> Function:
                self.arg_format = arg_types
                return self

            def set_attribute(self, attr: int, value: int) -> None:
                drv.need_context("cuFuncSetAttribute")
                self.attributes[attr] = value

            def prepared_async_call(self, grid, block, stream, *args, shared_size=0) -> None:
                drv.need_context("cuLaunchKernel")
                _check_stream(stream)
                if shared_size > 48 * 1024 and self.attributes.get(8, 0) < shared_size:
                    raise LaunchError("cuLaunchKernel: too much dynamic shared memory")
                payload = struct.pack(self.arg_format, *args)
                params_type, kernel = drv.kernels[self.name]
                params = params_type.from_buffer_copy(payload) if payload else None
                kernel(tuple(grid), tuple(block), params, shared_size)

        class Module:
            def get_function(self, name: str) -> Function:
                drv.need_context("cuModuleGetFunction")
                if name not in drv.kernels:
                    raise LogicError("cuModuleGetFunction failed: named symbol not found")
                return Function(name)

        def module_from_buffer(buffer, options=None, message_handler=None) -> Module:
            drv.need_context("cuModuleLoadDataEx")
            if not bytes(buffer).startswith(b"\x7fELF"):
                raise LogicError("cuModuleLoadDataEx failed: device kernel image is invalid")
            return Module()

        mod.Context, mod.Device, mod.DeviceAllocation = Context, Device, DeviceAllocation
        mod.Stream, mod.Event, mod.Function, mod.Module = Stream, Event, Function, Module
        mod.mem_alloc = DeviceAllocation
        mod.pagelocked_empty = pagelocked_empty
        mod.memcpy_htod_async, mod.memcpy_dtoh_async = memcpy_htod_async, memcpy_dtoh_async
        mod.memcpy_dtod_async, mod.memset_d8_async = memcpy_dtod_async, memset_d8_async
        mod.module_from_buffer = module_from_buffer
        return mod
