"""Record native kernel calls on the host and replay them elsewhere (driver.c).

A :class:`Recording` holds one case: the native calls the CPU backend made, in the order it
ran them, and a snapshot of every memory region they point into, taken just before the first
call ran (outputs already NaN-filled by the case). Pointer fields of each argument struct are
stored as relocations (field offset → region, offset in region), so the replaying process
can rebuild the same memory at its own addresses.
"""

from __future__ import annotations

import contextlib
import ctypes
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.array_utils import byte_bounds

from edge_infer.engine.backends.cpu import native

MAGIC = b"EIRPLAY1"


@dataclass
class Recording:
    """One case: regions (host address range, bytes at the first call), calls, the output."""

    name: str
    regions: list[tuple[int, int]] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)
    calls: list[native.NativeCall] = field(default_factory=list)
    out: np.ndarray | None = None

    def locate(self, address: int) -> tuple[int, int]:
        """(region index, offset) of a host address the calls use."""
        for k, (lo, hi) in enumerate(self.regions):
            if lo <= address <= hi:
                return k, address - lo
        raise ValueError(
            f"{self.name}: a kernel argument points outside every known array "
            f"(0x{address:x}); add the array to the recording"
        )

    def output(self, data: list[bytes]) -> np.ndarray:
        """The case's output array, read from the regions as the replay left them."""
        assert self.out is not None
        lo = byte_bounds(self.out)[0]
        k, off = self.locate(lo)
        return np.ndarray(
            self.out.shape,
            self.out.dtype,
            buffer=bytearray(data[k]),
            offset=off,
            strides=self.out.strides,
        ).copy()


def _regions(arrays: list[np.ndarray]) -> list[tuple[int, int]]:
    spans = sorted(byte_bounds(a) for a in arrays if a.size)
    merged: list[list[int]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(lo, hi) for lo, hi in merged]


@contextlib.contextmanager
def recording(name: str, arrays: list[np.ndarray], out: np.ndarray) -> Iterator[Recording]:
    """Within the block, native calls made and then run are recorded into the yielded
    Recording; ``arrays`` and every call's ``keep`` arrays are the memory snapshotted."""
    rec = Recording(name, out=out)
    made: list[native.NativeCall] = []
    init, call = native.NativeCall.__init__, native.NativeCall.__call__

    def made_one(self: native.NativeCall, *args: Any, **kw: Any) -> None:
        init(self, *args, **kw)
        made.append(self)

    def ran_one(self: native.NativeCall) -> None:
        if not rec.calls:  # the memory as the first kernel finds it
            keep = [a for c in made for a in c.keep if isinstance(a, np.ndarray)]
            rec.regions = _regions([*arrays, out, *keep])
            rec.data = [ctypes.string_at(lo, hi - lo) for lo, hi in rec.regions]
        rec.calls.append(self)
        call(self)

    native.NativeCall.__init__ = made_one  # type: ignore[method-assign]
    native.NativeCall.__call__ = ran_one  # type: ignore[method-assign]
    try:
        yield rec
    finally:
        native.NativeCall.__init__ = init  # type: ignore[method-assign]
        native.NativeCall.__call__ = call  # type: ignore[method-assign]


def write(path: Path, cases: list[Recording]) -> list[int]:
    """All cases into one replay file (driver.c's format); returns each case's first region
    index in it."""
    regions: list[bytes] = []
    calls: list[bytes] = []
    firsts = []
    for rec in cases:
        if not rec.calls:
            raise ValueError(f"{rec.name}: no native call ran")
        first = len(regions)
        firsts.append(first)
        regions.extend(rec.data)
        for c in rec.calls:
            args = c.args
            relocs = []
            for fname, ftype in args._fields_:
                if ftype is not ctypes.c_void_p:
                    continue
                address = getattr(args, fname)
                if address:
                    k, off = rec.locate(address)
                    relocs.append((getattr(type(args), fname).offset, first + k, off))
            name = c.name.encode()
            blob = bytes(args)
            calls.append(
                b"".join(
                    [
                        struct.pack("<Q", len(name)),
                        name,
                        struct.pack("<Q", len(blob)),
                        blob,
                        struct.pack("<Q", len(relocs)),
                        *(struct.pack("<QQQ", *r) for r in relocs),
                    ]
                )
            )
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<QQ", len(regions), len(calls)))
        for r in regions:
            f.write(struct.pack("<Q", len(r)) + r)
        f.writelines(calls)
    return firsts


def read(path: Path) -> list[bytes]:
    """The regions a replay wrote back."""
    raw = path.read_bytes()
    out, pos = [], 0
    while pos < len(raw):
        (n,) = struct.unpack_from("<Q", raw, pos)
        out.append(raw[pos + 8 : pos + 8 + n])
        pos += 8 + n
    return out
