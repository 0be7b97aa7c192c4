"""One kernel source built for the x86 vector paths other than this host's default, for the
tests that run the same bound calls through each (shared by the native kernel tests)."""

from __future__ import annotations

import ctypes
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from edge_infer.engine.backends.cpu import native

#: build → (flags, the CPU features it needs on this host)
X86_BUILDS: dict[str, tuple[list[str], set[str]]] = {
    "avx512": (["-march=skylake-avx512"], {"avx512f", "avx512vl"}),
    "avx2": (["-march=haswell"], {"avx2", "fma"}),
    "x86-64": (["-march=x86-64", "-Wno-psabi"], set()),
}


def host_flags() -> set[str]:
    """The CPU feature flags of this host (empty where /proc/cpuinfo is not)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {f for line in text.splitlines() if line.startswith("flags") for f in line.split()}


def need_features(needs: set[str]) -> None:
    """Skip when this host cannot run a build that needs ``needs``."""
    missing = needs - host_flags()
    if missing:
        pytest.skip(f"this CPU lacks {sorted(missing)}")


def build_kernels(out: Path, sources: Sequence[str], flags: Sequence[str]) -> ctypes.CDLL:
    """``sources`` (names in kernels/) alone, with the device compile's flags but ``flags``
    for the CPU; -Werror: no warnings."""
    keep = [f for f in native._flags() if not f.startswith(("-march", "-mcpu"))]
    lib = out / f"{Path(sources[0]).stem}.so"
    src = [str(native.KERNELS / n) for n in sources]
    subprocess.run(["cc", *keep, "-Wall", "-Werror", *flags, "-o", str(lib), *src], check=True)
    return ctypes.CDLL(str(lib))
