"""What identifies this CPU: architecture, model name and the vector ISA the kernels rely on."""

from __future__ import annotations

import functools
import platform
from pathlib import Path
from typing import Any

#: ISA flags that change which kernels are fastest (and, for BLAS, which code runs)
_ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "asimd",
    "asimddp",
    "sve",
    "neon",
)


@functools.cache
def cpu_fingerprint() -> dict[str, Any]:
    """A stable description of this CPU (no core count: containers vary it)."""
    model, flags = "unknown", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware", "cpu model") and model == "unknown":
                model = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    return {
        "kind": "cpu",
        "arch": platform.machine(),
        "model": model,
        "isa": sorted(f for f in _ISA_FLAGS if f in flags),
    }


def describe(fingerprint: dict[str, Any]) -> str:
    isa = ",".join(fingerprint.get("isa", [])) or "-"
    return f"{fingerprint.get('model', '?')} ({fingerprint.get('arch', '?')}; {isa})"
