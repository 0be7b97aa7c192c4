"""``PycudaDevice``: the device layer on a real NVIDIA GPU, through pycuda's driver API.

The only module of edge_infer that imports pycuda, and only when a PycudaDevice is opened.

- The device's *primary* context (``retain_primary_context``) is used, so the engine shares
  one context with any other CUDA library in the process (cuDNN, PyTorch, OpenCV's CUDA
  module). It is pushed around every call and popped after, so any thread may call (the
  daemon's worker threads): CUDA contexts are per thread.
- Pinned host buffers are page-locked; on an integrated GPU (Jetson: one DRAM for CPU and
  GPU) they are mapped (``DEVICEMAP``) and kernels read and write them in place, zero copy;
  on a discrete GPU they are staging buffers for async copies.
- Streams are non-blocking (``CU_STREAM_NON_BLOCKING``): no implicit ordering with the legacy
  default stream that other libraries in the process may use.
- Kernel parameters are one struct passed by value: its bytes are the launch's argument
  buffer (``Function.prepare("<n>s")``).
- Driver errors become :class:`~edge_infer.errors.CudaError`; a missing pycuda or GPU driver
  becomes :class:`~edge_infer.errors.CudaUnavailableError` saying what to install.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from edge_infer.cuda.device import Device, DeviceProperties, Dim3, Function, Module, Region
from edge_infer.errors import (
    CudaError,
    CudaLaunchError,
    CudaOutOfMemoryError,
    CudaUnavailableError,
)

INSTALL_HINT = "pip install 'edge-infer[cuda]'"
_STREAM_NON_BLOCKING = 1  # CU_STREAM_NON_BLOCKING
_STATIC_SHARED_LIMIT = 48 * 1024  # above this, dynamic shared memory must be opted into


def load_driver() -> Any:
    """``pycuda.driver``, initialized; a one-line CudaUnavailableError when it cannot be."""
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise CudaUnavailableError(
            f"the CUDA backend needs pycuda, which is not installed ({exc}): {INSTALL_HINT} "
            "(with the CUDA toolkit on PATH; on a Jetson see deploy/jetson/), or use --device emu"
        ) from None
    try:
        cuda.init()
        count = cuda.Device.count()
    except cuda.Error as exc:
        raise CudaUnavailableError(
            f"pycuda found no usable NVIDIA GPU driver ({exc}): install the NVIDIA driver "
            "(JetPack on a Jetson), or use --device emu"
        ) from None
    if count == 0:
        raise CudaUnavailableError(
            "the NVIDIA driver sees no GPU on this machine: use --device emu"
        )
    return cuda


class PycudaDevice(Device):
    """GPU ``ordinal`` through pycuda (see the module doc). The hazard checker is off by
    default (a real GPU needs no proof to run), on with ``check_hazards=True``."""

    def __init__(self, ordinal: int = 0, *, check_hazards: bool = False):
        cuda = load_driver()
        if not 0 <= ordinal < cuda.Device.count():
            raise CudaUnavailableError(
                f"no GPU {ordinal}: this machine has {cuda.Device.count()} (--device 0..)"
            )
        self._cuda = cuda
        self._dev = cuda.Device(ordinal)
        self._ctx = self._dev.retain_primary_context()
        attr = cuda.device_attribute
        with self._active("reading device properties"):
            props = DeviceProperties(
                name=self._dev.name(),
                sm=tuple(self._dev.compute_capability()),
                integrated=bool(self._dev.get_attribute(attr.INTEGRATED)),
                driver_version=int(cuda.get_driver_version()),
                runtime_version=_version_number(cuda.get_version()),
                total_memory=int(self._dev.total_memory()),
            )
        self._released = False
        super().__init__(props, check_hazards=check_hazards)

    @contextlib.contextmanager
    def _active(self, what: str) -> Iterator[None]:
        """The primary context current on this thread for the call; driver errors typed."""
        cuda = self._cuda
        self._ctx.push()
        try:
            yield
        except cuda.MemoryError as exc:
            raise CudaOutOfMemoryError(f"{what}: out of GPU memory ({exc})") from exc
        except (cuda.LaunchError, cuda.RuntimeError) as exc:
            raise CudaLaunchError(f"{what}: {exc} (earlier asynchronous work failed)") from exc
        except cuda.Error as exc:
            raise CudaError(f"{what}: {exc}") from exc
        finally:
            cuda.Context.pop()

    # -- memory --------------------------------------------------------------------------------

    def _alloc_device(self, nbytes: int, name: str) -> tuple[int, Any]:
        with self._active(f"allocating {nbytes} bytes for '{name}'"):
            alloc = self._cuda.mem_alloc(nbytes)
        return int(alloc), alloc

    def _free_device(self, handle: Any) -> None:
        with self._active("freeing device memory"):
            handle.free()

    def _alloc_host(self, nbytes: int, name: str) -> tuple[np.ndarray, int | None, Any]:
        flags = self._cuda.host_alloc_flags
        mapped = self.properties.integrated
        with self._active(f"allocating {nbytes} pinned bytes for '{name}'"):
            # portable: pinned for every context of the process (the daemon's threads share
            # the primary one, other libraries may not); mapped where the GPU is integrated
            array = self._cuda.pagelocked_empty(
                nbytes, np.uint8, mem_flags=flags.PORTABLE | (flags.DEVICEMAP if mapped else 0)
            )
            device_ptr = int(array.base.get_device_pointer()) if mapped else None
        return array, device_ptr, array

    def _free_host(self, handle: Any) -> None:
        with self._active("freeing pinned memory"):
            handle.base.free()

    # -- streams and events --------------------------------------------------------------------

    def _create_stream(self, name: str) -> Any:
        with self._active(f"creating stream '{name}'"):
            return self._cuda.Stream(_STREAM_NON_BLOCKING)

    def _destroy_stream(self, handle: Any) -> None:
        pass  # pycuda destroys it with its last reference, under its own context scope

    def _create_event(self) -> Any:
        with self._active("creating an event"):
            return self._cuda.Event()

    def _destroy_event(self, handle: Any) -> None:
        pass  # destroyed with its last reference, under pycuda's own context scope

    def _record(self, event: Any, stream: Any) -> None:
        with self._active("recording an event"):
            event.record(stream)

    def _wait(self, stream: Any, event: Any) -> None:
        with self._active("waiting on an event"):
            stream.wait_for_event(event)

    def _sync_stream(self, stream: Any) -> None:
        with self._active("synchronizing a stream"):
            stream.synchronize()

    def _sync_event(self, event: Any) -> None:
        with self._active("synchronizing an event"):
            event.synchronize()

    def _query_event(self, event: Any) -> bool:
        with self._active("querying an event"):
            return bool(event.query())

    def _elapsed_ms(self, start: Any, end: Any) -> float:
        with self._active("reading event times"):
            return float(end.time_since(start))

    def _sync_device(self) -> None:
        if self._released:
            return
        with self._active("synchronizing the device"):
            self._cuda.Context.synchronize()

    # -- code ----------------------------------------------------------------------------------

    def _load_module(self, image: Any) -> Any:
        if not isinstance(image, (bytes, bytearray, memoryview)):
            raise CudaError(
                f"PycudaDevice.load_module takes cubin bytes, got {type(image).__name__}"
            )
        with self._active("loading a cubin"):
            return self._cuda.module_from_buffer(bytes(image))

    def _get_function(self, module: Module, name: str) -> Any:
        with self._active(f"looking up kernel {name!r}"):
            return module._handle.get_function(name)

    # -- work ----------------------------------------------------------------------------------

    def _copy(self, dst: Region, src: Region, stream: Any) -> None:
        cuda = self._cuda
        with self._active(f"copying {dst.nbytes} bytes"):
            if dst.buffer.kind == "pinned":
                cuda.memcpy_dtoh_async(_host_view(dst), src.device_ptr, stream)
            elif src.buffer.kind == "pinned":
                cuda.memcpy_htod_async(dst.device_ptr, _host_view(src), stream)
            else:
                cuda.memcpy_dtod_async(dst.device_ptr, src.device_ptr, dst.nbytes, stream)

    def _memset(self, dst: Region, value: int, stream: Any) -> None:
        with self._active(f"setting {dst.nbytes} bytes"):
            self._cuda.memset_d8_async(dst.device_ptr, value, dst.nbytes, stream)

    def _launch(
        self, function: Function, grid: Dim3, block: Dim3, params, shared, stream, label, writes
    ) -> None:
        func = function._handle
        payload = b"" if params is None else bytes(params)
        with self._active(f"launching '{label}'"):
            if shared > _STATIC_SHARED_LIMIT:
                func.set_attribute(
                    self._cuda.function_attribute.MAX_DYNAMIC_SHARED_SIZE_BYTES, shared
                )
            if payload:
                func.prepare(f"{len(payload)}s")
                func.prepared_async_call(grid, block, stream, payload, shared_size=shared)
            else:
                func.prepare("")
                func.prepared_async_call(grid, block, stream, shared_size=shared)

    def _shutdown(self) -> None:
        # The primary context stays retained until the process exits, as pycuda.autoprimaryctx
        # leaves it: pycuda releases a context only from the thread that retained it, and the
        # driver keeps one primary context per device for every library in the process anyway.
        self._released = True


def _host_view(region: Region) -> np.ndarray:
    return region.buffer.array[region.offset : region.offset + region.nbytes]


def _version_number(version: tuple[int, ...]) -> int:
    """(12, 4, 0) -> 12040, the driver's own encoding."""
    major, minor = (*tuple(version), 0, 0)[:2]
    return int(major) * 1000 + int(minor) * 10
