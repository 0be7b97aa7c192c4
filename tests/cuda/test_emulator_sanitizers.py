"""The sanitized emulator builds: planted bugs are caught (an out-of-bounds read by
AddressSanitizer, a missing __syncthreads by ThreadSanitizer), and the whole kernel suite runs
once under each sanitizer, at the tests' small shapes, in a subprocess that preloads the
sanitizer runtime (tests/cuda/conftest.py: run_sanitized)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_infer.cuda import library
from edge_infer.cuda.emulator import sanitizer_env
from tests.cuda import emu_kernels as ek
from tests.cuda.conftest import REPO, VARIANT_ENV, emu_variant, prebuild, run_sanitized

pytestmark = pytest.mark.skipif(
    emu_variant() != "plain", reason="drives the sanitized runs; not run inside one"
)

#: launches one test-only kernel of sanitizer_bugs.cu over 64 threads
_SCRIPT = """
import sys
import numpy as np
from tests.cuda import emu_kernels as ek
lib = ek.load(sys.argv[1])
x = np.arange(64, dtype=np.float32)
out = np.zeros(64, np.float32)
lib.launch(sys.argv[2], 1, 64, ek.BugParams(x=x.ctypes.data, out=out.ctypes.data, n=64))
print("finished", float(out.sum()), "on", lib.scheduler)
"""

#: sanitizer reports end the process with this status (emulator.sanitizer_env)
REPORTED = 66


def _run_bug(
    variant: str, entry: str, scheduler: str = "fibers"
) -> subprocess.CompletedProcess[str]:
    from edge_infer.cuda import emulator

    sources = [ek.KERNELS / "emu_probe.cu", ek.KERNELS / "sanitizer_bugs.cu"]
    # the variant's whole set at once, side by side: test_kernel_suite_under_sanitizer's too
    prebuild(variant, [*library.sources(), *sources])
    emulator.build(sources, variant)
    env = {**os.environ, **sanitizer_env(variant), VARIANT_ENV: variant, "PYTHONPATH": str(REPO)}
    env.pop("EI_EMU_THREADS", None)
    if scheduler == "threads":
        env["EI_EMU_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT, variant, entry],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("variant", ["plain", "asan"])
def test_prebuild_leaves_build_only_the_link(variant: str, monkeypatch) -> None:
    """conftest.prebuild compiles the very objects emulator.build would: after it, build()
    compiles nothing (else the suite would compile each variant twice, serially the second
    time)."""
    from edge_infer.cuda import emulator

    sources = [*library.sources(), ek.KERNELS / "emu_probe.cu"]
    prebuild(variant, sources)
    steps: list[str] = []
    real = emulator._atomic_run

    def record(cmd: list[str], target: Path, what: str) -> None:
        steps.append(what)
        real(cmd, target, what)

    monkeypatch.setattr(emulator, "_atomic_run", record)
    emulator.build(sources, variant)
    assert not [s for s in steps if s.startswith("compiling")], steps


def test_asan_catches_an_out_of_bounds_read() -> None:
    proc = _run_bug("asan", "ei_bug_oob_read")
    assert proc.returncode == REPORTED, proc.stderr[-2000:]
    assert "AddressSanitizer: heap-buffer-overflow" in proc.stderr
    assert "sanitizer_bugs.cu" in proc.stderr and "ei_bug_oob_read" in proc.stderr


@pytest.mark.parametrize("scheduler", ["fibers", "threads"])
def test_tsan_catches_a_missing_syncthreads(scheduler: str) -> None:
    """On fibers too: only the barriers order a block's threads for ThreadSanitizer, though
    the fibers run one after another."""
    proc = _run_bug("tsan", "ei_bug_missing_sync", scheduler)
    assert proc.returncode == REPORTED, proc.stderr[-2000:]
    assert "ThreadSanitizer: data race" in proc.stderr
    assert "ei_bug_missing_sync" in proc.stderr


@pytest.mark.parametrize("variant", ["asan", "tsan"])
@pytest.mark.parametrize("scheduler", ["fibers", "threads"])
def test_the_same_kernel_with_its_barrier_is_clean(variant: str, scheduler: str) -> None:
    proc = _run_bug(variant, "ei_bug_fixed_sync", scheduler)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished" in proc.stdout and proc.stdout.strip().endswith(f"on {scheduler}")


def kernel_test_modules() -> list[Path]:
    """The emulator probes and every registered concept's tests (``test_<concept>*.py``)."""
    here = REPO / "tests" / "cuda"
    concepts = {name.rsplit(".", 1)[-1] for name in library.CONCEPT_MODULES}
    found = {here / "test_emulator.py"}
    for concept in concepts:
        found.update(here.glob(f"test_{concept}*.py"))
    return sorted(found)


def test_every_concept_has_tests() -> None:
    here = REPO / "tests" / "cuda"
    for name in library.CONCEPT_MODULES:
        concept = name.rsplit(".", 1)[-1]
        assert list(here.glob(f"test_{concept}*.py")), f"no tests/cuda/test_{concept}*.py"


@pytest.mark.parametrize("variant", ["asan", "tsan"])
def test_kernel_suite_under_sanitizer(variant: str) -> None:
    """The kernel test modules once more, in a process running the ``variant`` library; their
    ``sanitized`` fixture picks small shapes and the ``large``-marked cases are left out."""
    proc = run_sanitized(
        variant, *map(str, kernel_test_modules()), "-m", "not gpu and not large", timeout=900
    )
    tail = proc.stdout[-3000:] + proc.stderr[-6000:]
    assert proc.returncode == 0, f"{variant} run failed (exit {proc.returncode}):\n{tail}"
    assert " passed" in proc.stdout, tail
