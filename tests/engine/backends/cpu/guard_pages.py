"""Arrays against inaccessible pages, for the bounds tests of kernels that may read past a
row (test_qdepthwise_bounds, tactics/test_depthwise_bounds): a stray read kills the process
with SIGSEGV, so the layer runs in a subprocess (:func:`run_isolated`) whose script places
its input with :func:`guarded`."""

from __future__ import annotations

import ctypes
import mmap
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[4]


def guarded(x: np.ndarray) -> Iterator[np.ndarray]:
    """Copies of ``x`` (C order), first byte just after an inaccessible page, then last byte
    just before one. A copy is valid until the next one is made."""
    page = mmap.PAGESIZE
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    pages = -(-x.nbytes // page)
    buf = mmap.mmap(-1, (pages + 2) * page)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    assert libc.mprotect(base, page, 0) == 0
    assert libc.mprotect(base + (pages + 1) * page, page, 0) == 0
    for at in (page, (pages + 1) * page - x.nbytes):  # after / before a guard
        xg = np.frombuffer(buf, x.dtype, x.size, at).reshape(x.shape)
        xg[...] = x
        yield xg
        del xg


def run_isolated(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``script`` run by this Python in a fresh process from the repository's root."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
