"""Recorded native calls replayed on aarch64: the kernels cross-compiled into the replay
driver (-mcpu=cortex-a78ae, as on Jetson Orin) and run under qemu-user."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.engine.backends.cpu.aarch64 import replay
from tests.sysdeps import need


def driver(tmp_path: Path, only: tuple[str, ...]) -> Path:
    """The replay driver of the kernel sources ``only``, cross-compiled for the Jetson's
    cores (skips without the cross compiler and qemu-user; fails under CI=true)."""
    from tests.engine.backends.cpu.aarch64.test_aarch64_kernels import (
        CROSS,
        QEMU,
        compile_driver,
    )

    need(CROSS, QEMU, "cc")
    return compile_driver(tmp_path, "cortex-a78ae", only=only)


def replayed(exe: Path, tmp_path: Path, recs: list[replay.Recording]) -> list[np.ndarray]:
    """``recs`` replayed by ``exe`` under qemu-user: each recording's output, in turn."""
    from tests.engine.backends.cpu.aarch64.test_aarch64_kernels import emulate

    replay.write(tmp_path / "calls.bin", recs)
    emulate(exe, "replay", str(tmp_path / "calls.bin"), str(tmp_path / "out.bin"))
    regions = replay.read(tmp_path / "out.bin")
    outs, first = [], 0
    for rec in recs:
        outs.append(rec.output(regions[first : first + len(rec.regions)]))
        first += len(rec.regions)
    return outs
