"""Fixtures of the CUDA kernel tests.

- ``device``: where a test's kernels run, parametrized ``emu`` (the emulator, always) and
  ``gpu`` (a real GPU through pycuda; ``gpu``-marked, skipped without one). Tests written
  against it (``device.to_device``, ``device.empty``, ``device.run(call)``,
  ``device.to_host``) run the same cases on both.
- ``emu``: the emulator library of every registered kernel, in-process. Its variant is
  ``plain`` unless the process was started by :func:`run_sanitized` (``asan`` / ``tsan``).
- ``sanitized``: True in such a process: tests then use their small shapes only.
- :func:`run_sanitized`: runs pytest on some test files in a subprocess that loads the
  sanitized library (the runtime preloaded); its tests use the ``emu``/``device`` fixtures
  unchanged.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_infer.cuda.emulator import EmuLibrary, sanitizer_env
from edge_infer.cuda.library import KernelCall

#: set by run_sanitized for the subprocess (test harness only; the library reads no environment)
VARIANT_ENV = "EI_CUDA_EMU_VARIANT"
#: test-only kernels (planted bugs, probes of the emulated subset)
TEST_KERNELS_DIR = Path(__file__).resolve().parent / "kernels"
REPO = Path(__file__).resolve().parents[2]


def emu_variant() -> str:
    """The emulator variant this process runs (``plain`` unless started by run_sanitized)."""
    return os.environ.get(VARIANT_ENV, "plain")


def run_sanitized(
    variant: str, *pytest_args: str, timeout: float = 300.0
) -> subprocess.CompletedProcess[str]:
    """Run ``pytest pytest_args`` in a subprocess whose ``emu`` fixture is the ``variant``
    library (``asan`` or ``tsan``); the library is built first, here, so that a compile error
    is reported as such."""
    _build_only(variant)
    env = {**os.environ, **sanitizer_env(variant), VARIANT_ENV: variant}
    # --capture=sys: a sanitizer report goes to file descriptor 2, which must stay the real one
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-x",
        "-p",
        "no:cacheprovider",
        "--capture=sys",
        "-o",
        "addopts=",
        *pytest_args,
    ]
    return subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _build_only(variant: str) -> None:
    from edge_infer.cuda import emulator, library

    prebuild(variant, library.sources())
    emulator.build(library.sources(), variant)


def prebuild(variant: str, sources: Iterable[Path]) -> None:
    """The objects ``emulator.build(sources, variant)`` would compile (and the runtime's),
    compiled side by side, one per core, largest source first; ``build`` then finds them
    cached and only links. ``build`` compiles one after another: a sanitized variant's 18
    objects take ~45 s that way on a 2-core host, the suite builds three variants.
    (test_emulator_sanitizers checks that ``build`` compiles nothing after this.)
    One process at a time per variant (a file lock): pytest-xdist's other workers wait for
    the objects instead of compiling them too."""
    from edge_infer.cuda import emulator as em

    cache = em.default_cache_dir() / variant
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".prebuild.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _prebuild(em, cache, variant, sources)


def _prebuild(em: Any, cache: Path, variant: str, sources: Iterable[Path]) -> None:
    includes = [em.KERNELS_DIR]
    flags = [*em._COMMON, *em.FLAGS[variant], *(f"-I{d}" for d in includes)]
    version = em.compiler_version()
    headers = em._headers_digest(includes)
    todo = []
    for source in sorted({*sources, em.RUNTIME_SOURCE}, key=lambda p: -p.stat().st_size):
        key = em._digest(version, " ".join(flags), headers, source.read_bytes())
        obj = cache / "obj" / f"{source.stem}-{key}.o"
        if not obj.exists():
            lang = ["-x", "c++"] if source.suffix == ".cu" else []
            cmd = ["g++", *flags, *lang, "-c", str(source), "-o", "{out}"]
            todo.append((cmd, obj, f"compiling {source.name}"))
    if todo:
        with ThreadPoolExecutor(min(len(todo), len(os.sched_getaffinity(0)))) as pool:
            list(pool.map(lambda job: em._atomic_run(*job), todo))


if emu_variant() != "plain":
    # a sanitized process runs every thread instrumented: few property-test examples
    from hypothesis import settings

    settings.register_profile("ei-sanitized", max_examples=4, deadline=None)
    settings.load_profile("ei-sanitized")


class EmuDevice:
    """The emulator as a device: device memory is host memory (numpy arrays)."""

    name = "emu"

    def __init__(self, lib: EmuLibrary):
        self.lib = lib

    def to_device(self, host: np.ndarray) -> np.ndarray:
        return np.array(host, copy=True, order="C")

    def empty(self, shape: Sequence[int] | int, dtype: Any) -> np.ndarray:
        # all-ones bytes (NaN for floats): an element the kernel never writes shows up
        out = np.empty(shape, dtype)
        out.view(np.uint8).fill(0xFF)
        return out

    def to_host(self, array: np.ndarray) -> np.ndarray:
        return np.array(array, copy=True)

    def run(self, call: KernelCall) -> None:
        self.lib.run(call)


@pytest.fixture(scope="session")
def sanitized() -> bool:
    """True when this process runs a sanitized emulator (use small shapes only)."""
    return emu_variant() != "plain"


@pytest.fixture(scope="session", autouse=True)
def _emulator_objects() -> None:
    """This process's emulator variant compiled once, one object per core, before the first
    CUDA test builds it (the library's kernels and the test-only ones)."""
    from edge_infer.cuda import library

    test_kernels = [TEST_KERNELS_DIR / n for n in ("emu_probe.cu", "sanitizer_bugs.cu")]
    prebuild(emu_variant(), [*library.sources(), *test_kernels])


@pytest.fixture(scope="session")
def emu() -> EmuLibrary:
    """The emulator library of every registered kernel."""
    return EmuLibrary.get(emu_variant())


@pytest.fixture(scope="session", params=["emu", pytest.param("gpu", marks=pytest.mark.gpu)])
def device(request: pytest.FixtureRequest) -> Any:
    """Where the kernels run: the emulator, or a real GPU (``gpu`` marker)."""
    if request.param == "emu":
        return EmuDevice(request.getfixturevalue("emu"))
    from tests.cuda.gpu_device import GpuDevice

    return GpuDevice.open_or_skip()
