"""The CUDA kernel table of BENCHMARKS.md: per kernel, ptxas's registers and static shared
memory for an SM (NVRTC), the block sizes the kernel tests launch, the theoretical occupancy
from those, and the emulator's time in each kernel over the kernel test suite.

    .venv/bin/python bench/cuda_kernels.py [--sm 87] [--out results.md]

Runs the kernel test modules (emulator, plain build) in this process, then prints a markdown
table. No GPU is used: GPU timings are not measured here.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_infer.cuda import compile as nvrtc  # noqa: E402
from edge_infer.cuda import library  # noqa: E402
from edge_infer.cuda.emulator import EmuLibrary  # noqa: E402
from edge_infer.cuda.occupancy import occupancy  # noqa: E402
from tests.cuda.test_emulator_sanitizers import kernel_test_modules  # noqa: E402


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sm", type=int, default=87)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    resources = nvrtc.resources(args.sm)
    EmuLibrary.get()  # built before the clock starts
    modules = [str(m) for m in kernel_test_modules() if m.name != "test_emulator.py"]
    wall, cpu = time.perf_counter(), _cpu_seconds()
    code = pytest.main(["-q", "-m", "not gpu", "-p", "no:cacheprovider", *modules])
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    lib = EmuLibrary.get()

    lines = [
        f"Kernels on sm_{args.sm} ({nvrtc.nvrtc_version()}); occupancy = resident warps / max "
        f"warps per SM at the block size the tests launch (largest dynamic shared memory seen); "
        f"emulator: seconds inside the kernel's launches over the kernel tests "
        f"({len(modules)} modules, {wall:.1f} s wall, {cpu:.1f} s CPU in this process, "
        f"{os.cpu_count()} cores, pytest exit {code}).",
        "",
        "| kernel | source | registers | static smem B | block | occupancy | limiter "
        "| emu launches | emu s |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for entry, spec in sorted(library.specs().items(), key=lambda kv: (kv[1].source, kv[0])):
        res = resources.get(entry)
        stats = lib.stats.get(entry)
        if res is None:
            lines.append(f"| {entry} | {spec.source} | - | - | - | - | not compiled | - | - |")
            continue
        if stats and stats.block_threads:
            threads = max(stats.block_threads)
            occ = occupancy(
                args.sm, threads, res.registers, res.shared_bytes + stats.max_dynamic_shared
            )
            occ_text, limiter = f"{occ.fraction:.0%} ({occ.warps} warps)", occ.limiter
            block = "/".join(str(t) for t in sorted(stats.block_threads))
        else:
            occ_text, limiter, block = "-", "not launched by the tests", "-"
        lines.append(
            f"| {entry} | {spec.source} | {res.registers} | {res.shared_bytes} | {block} "
            f"| {occ_text} | {limiter} | {stats.launches if stats else 0} "
            f"| {stats.seconds if stats else 0:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)
    return int(code)


if __name__ == "__main__":
    raise SystemExit(main())
