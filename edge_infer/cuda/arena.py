"""Device memory of a CUDA program: views of the activation arena, and the uploaded weights.

A :class:`DeviceArray` is what the kernel planning functions (``edge_infer.cuda.params``) take
in place of a numpy array: shape, dtype, byte strides and a device address (``gpudata``,
which :func:`edge_infer.cuda.params.ptr` reads), plus the :class:`~edge_infer.cuda.device.
Region` of bytes it spans, which every launch declares to the hazard checker. Views come from
the memory plan's address records (:class:`edge_infer.engine.memory.Address`): an alias (a
concat slice, a split view, a reshape) is just another view of its buffer's bytes.

:class:`WeightStore` uploads constants once per device and shares them between every program
(batch size) of an engine and every execution context.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_infer.cuda.device import Device, DeviceBuffer, Region, Stream
from edge_infer.engine.memory import Address, contiguous_strides
from edge_infer.errors import CudaError

#: runs a strided view is declared as at most (beyond it: its whole extent)
MAX_PIECES = 256


class DeviceArray:
    """An n-d view of device memory with numpy-like metadata (no data access from the host)."""

    def __init__(
        self,
        buffer: DeviceBuffer,
        offset: int,
        shape: Sequence[int],
        dtype: Any,
        strides: Sequence[int] | None = None,
    ) -> None:
        self.buffer = buffer
        self.offset = int(offset)
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.strides = (
            tuple(int(s) for s in strides)
            if strides is not None
            else contiguous_strides(self.shape, self.dtype)
        )

    @classmethod
    def at(cls, buffer: DeviceBuffer, address: Address) -> DeviceArray:
        """The view an address record of the memory plan describes, in ``buffer`` (the arena)."""
        return cls(buffer, address.offset, address.shape, address.dtype, address.strides)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.size * self.itemsize

    @property
    def gpudata(self) -> int:
        """The device address of the first element (what a params pointer field holds)."""
        return self.buffer.ptr + self.offset

    @property
    def contiguous(self) -> bool:
        return self.strides == contiguous_strides(self.shape, self.dtype)

    @property
    def extent(self) -> int:
        """Bytes from the first element to one past the last."""
        if self.size == 0:
            return 0
        return (
            sum((d - 1) * s for d, s in zip(self.shape, self.strides, strict=True)) + self.itemsize
        )

    def region(self) -> Region:
        """The byte range this view may touch (declared by the launches that use it)."""
        return self.buffer.region(self.offset, max(self.extent, 1))

    def pieces(self) -> list[tuple[int, int]]:
        """The view's bytes as ``(offset, nbytes)`` runs, relative to its first element: one
        run when it is dense, else one per index of its leading non-dense dims (a channel
        slice of a concat's buffer at batch 2 is two runs, not the span between them, so two
        streams writing neighbouring slices do not conflict). More than
        :data:`MAX_PIECES` runs: the whole extent."""
        if self.size == 0:
            return [(0, 1)]
        for d in range(self.ndim + 1):
            tail = self.shape[d:]
            if self.strides[d:] == contiguous_strides(tail, self.dtype):
                break
        dense = math.prod(self.shape[d:]) * self.itemsize
        count = math.prod(self.shape[:d])
        if d == 0 or count > MAX_PIECES:
            return [(0, max(self.extent, 1))]
        starts = [0]
        for size, stride in zip(self.shape[:d], self.strides[:d], strict=True):
            starts = [s + i * stride for s in starts for i in range(size)]
        return [(s, dense) for s in starts]

    def regions(self) -> list[Region]:
        """The byte ranges of :meth:`pieces`, as launches declare them."""
        return [self.buffer.region(self.offset + s, n) for s, n in self.pieces()]

    def reshape(self, shape: Sequence[int]) -> DeviceArray:
        """A contiguous view's new shape over the same bytes."""
        if not self.contiguous or math.prod(shape) != self.size:
            raise CudaError(
                f"cannot reshape a {self.shape} view with strides {self.strides} to {tuple(shape)}"
            )
        return DeviceArray(self.buffer, self.offset, shape, self.dtype)

    def __repr__(self) -> str:
        return f"DeviceArray({self.buffer.name}+{self.offset}, {self.dtype.name}{list(self.shape)})"


class WeightStore:
    """Constants on one device, each uploaded once (keyed by the array object, which an
    engine's programs share) and kept until the store is closed."""

    ALIGN = 256

    def __init__(self, device: Device) -> None:
        self.device = device
        self._arrays: dict[int, tuple[np.ndarray, DeviceArray]] = {}
        self._lock = threading.Lock()
        self.bytes = 0

    def upload(self, arrays: Sequence[np.ndarray], stream: Stream) -> list[DeviceArray]:
        """Device copies of ``arrays`` (C-contiguous), uploading the ones not there yet in one
        buffer; returns when the upload is finished."""
        with self._lock:
            new = []
            for a in arrays:
                if id(a) not in self._arrays and all(id(a) != id(b) for b in new):
                    new.append(a)
            if new:
                self._upload(new, stream)
            return [self._arrays[id(a)][1] for a in arrays]

    def _upload(self, arrays: list[np.ndarray], stream: Stream) -> None:
        offsets, total = [], 0
        for a in arrays:
            offsets.append(total)
            total += -(-max(a.nbytes, 1) // self.ALIGN) * self.ALIGN
        buffer = self.device.allocate(total, f"weights#{len(self._arrays)}")
        staging = self.device.allocate_host(total, "weights staging")
        try:
            self.device.host_access("stage weights", writes=[staging])
            for a, off in zip(arrays, offsets, strict=True):
                flat = np.ascontiguousarray(a).view(np.uint8).reshape(-1)
                staging.array[off : off + flat.size] = flat
            self.device.copy_htod(buffer, staging, stream, label="upload weights")
            stream.synchronize()
        finally:
            staging.free()
        self.bytes += total
        for a, off in zip(arrays, offsets, strict=True):
            self._arrays[id(a)] = (a, DeviceArray(buffer, off, a.shape, a.dtype))
