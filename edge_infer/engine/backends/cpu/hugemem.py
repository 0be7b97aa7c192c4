"""Arrays on transparent huge pages: a program's weights, arena and scratch.

A model's layers read megabytes of constants and buffers once an inference each, on 4 KB pages
spread over the heap: ResNet-50's INT8 weights alone are 6,000 pages, twice what the L2 TLB
holds, so a layer's pages were mostly out of the TLB when it ran. Arrays from here come from
anonymous mappings advised ``MADV_HUGEPAGE`` (Linux's transparent huge pages in their default
``madvise`` mode): 2 MB pages, one TLB entry for what took 512. Measured in one process, one
engine loaded twice and its two states alternating (``new_state`` against the same without
a region), on a Zen 4 host: ResNet-50 b1 INT8 0.983-0.989 (1 thread), 0.976-0.988 (2);
MobileNetV2 b1 INT8 0.980 (1 thread), FP32 0.986 (2 threads), b8 FP32 0.994.

Arrays are carved from slabs of :data:`SLAB` bytes (a larger one gets a mapping of its own),
each starting on :data:`ALIGN` bytes, within a :func:`region` — a program's binding
(``CpuProgram.new_state``: its arena and scratch, and the constants its tactics prepare
there); a slab's memory is returned when its last array is gone. Outside one (a build timing
candidate tactics, whose arrays come and go; tests) the arrays are numpy's, aligned the same.
Where the platform has no ``madvise`` (not Linux) or huge pages are off, a region's arrays are
ordinary pages: the same contract, without the gain.
"""

from __future__ import annotations

import contextlib
import mmap
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

#: bytes of one slab (a whole number of 2 MB pages)
SLAB = 32 << 20
#: every array starts on a multiple of this many bytes (a cache line)
ALIGN = 64
#: arrays smaller than this come from numpy (a page of their own is not worth it)
MIN_BYTES = 16 << 10

_HUGE = 2 << 20
#: anonymous mappings of this platform's mmap (not on Windows: numpy's arrays there)
_ANONYMOUS = hasattr(mmap, "MAP_ANONYMOUS") and hasattr(mmap, "MAP_PRIVATE")
_local = threading.local()


@contextlib.contextmanager
def region() -> Iterator[None]:
    """Within the block (this thread), :func:`empty` and the rest carve huge-page slabs of
    the block's own, one run of them for the state's buffers and one for constants (so that
    a state's arena is not kept by constants sharing its slab when the state is gone); a
    block inside another shares the outer one's."""
    outer = getattr(_local, "cursors", None)
    if outer is None:
        # per kind (state buffers, constants): the current slab, bytes of it used
        _local.cursors = {True: [None, 0], False: [None, 0]}
    try:
        yield
    finally:
        _local.cursors = outer


def _mapping(nbytes: int) -> np.ndarray:
    """A fresh anonymous mapping of ``nbytes`` (2 MB pages where the kernel gives them)."""
    area = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    advise = getattr(area, "madvise", None)
    flag = getattr(mmap, "MADV_HUGEPAGE", None)
    if advise is not None and flag is not None:
        # (OSError: huge pages not configured in this kernel; ordinary pages then)
        with contextlib.suppress(OSError):
            advise(flag)
    return np.frombuffer(area, np.uint8)


def _bytes(nbytes: int, cursor: list[Any]) -> np.ndarray:
    """``nbytes`` of zeroed memory on an ALIGN boundary, from the region's slab or a new one."""
    if nbytes > SLAB // 4:
        return _mapping(-(-nbytes // _HUGE) * _HUGE)[:nbytes]
    slab, used = cursor
    start = -(-used // ALIGN) * ALIGN
    if slab is None or start + nbytes > slab.size:
        slab, start = _mapping(SLAB), 0
    cursor[:] = [slab, start + nbytes]
    return slab[start : start + nbytes]


def empty(shape: Any, dtype: Any, state: bool = False) -> np.ndarray:
    """A C-contiguous array, zeros (fresh mappings are; numpy's are zeroed here): in a
    :func:`region` on huge pages where it is big enough to want them. ``state``: a buffer of
    the state being bound (its arena, scratch), on slabs that go with it; else a constant its
    tactics prepare, which the program keeps for its other states."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    cursors = getattr(_local, "cursors", None)
    if cursors is None or nbytes < MIN_BYTES or not _ANONYMOUS:
        raw = np.zeros(nbytes + ALIGN, np.uint8)
        start = -raw.ctypes.data % ALIGN
        return raw[start : start + nbytes].view(dtype).reshape(shape)
    return _bytes(nbytes, cursors[state]).view(dtype).reshape(shape)


def zeros(shape: Any, dtype: Any, state: bool = False) -> np.ndarray:
    """:func:`empty`, its pages touched now (at binding, not in the first inference)."""
    array = empty(shape, dtype, state)
    array.fill(0)
    return array


def copy(array: Any, dtype: Any = None) -> np.ndarray:
    """A C-contiguous copy of ``array`` (as ``dtype``) on huge pages."""
    src = np.asarray(array, dtype=dtype)
    out = empty(src.shape, src.dtype)
    out[...] = src
    return out
