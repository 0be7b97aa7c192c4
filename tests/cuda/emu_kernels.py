"""ctypes mirrors and specs of the test-only kernels in tests/cuda/kernels/."""

from __future__ import annotations

import ctypes
from pathlib import Path

from edge_infer.cuda.emulator import EmuLibrary
from edge_infer.cuda.library import KernelSpec

KERNELS = Path(__file__).resolve().parent / "kernels"


class ProbeParams(ctypes.Structure):
    """``struct ProbeParams`` of emu_probe.cu."""

    _fields_ = [
        ("x", ctypes.c_void_p),
        ("out", ctypes.c_void_p),
        ("iout", ctypes.c_void_p),
        ("a", ctypes.c_void_p),
        ("b", ctypes.c_void_p),
        ("c", ctypes.c_void_p),
        ("d", ctypes.c_void_p),
        ("n", ctypes.c_int32),
        ("mode", ctypes.c_int32),
    ]


class BugParams(ctypes.Structure):
    """``struct BugParams`` of sanitizer_bugs.cu."""

    _fields_ = [("x", ctypes.c_void_p), ("out", ctypes.c_void_p), ("n", ctypes.c_int32)]


PROBES = tuple(
    KernelSpec(f"ei_probe_{name}", "emu_probe.cu", ProbeParams)
    for name in (
        "warp",
        "block_sum",
        "reverse",
        "early_exit",
        "atomics",
        "half",
        "dp4a",
        "wmma_f16_f32",
        "wmma_f16_f16",
        "wmma_s8",
        "partial_mask",
        "math",
        "deadlock",
    )
)
BUGS = tuple(
    KernelSpec(f"ei_bug_{name}", "sanitizer_bugs.cu", BugParams)
    for name in ("oob_read", "missing_sync", "fixed_sync")
)


def load(variant: str = "plain") -> EmuLibrary:
    """The emulator library of the test-only kernels, built by the library's own machinery."""
    specs = {s.entry: s for s in (*PROBES, *BUGS)}
    return EmuLibrary.load(
        [KERNELS / "emu_probe.cu", KERNELS / "sanitizer_bugs.cu"], specs, variant
    )
