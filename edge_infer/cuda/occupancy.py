"""Theoretical occupancy of a kernel on an SM, from ptxas's resource report and the launch's
block size (the CUDA occupancy calculator's arithmetic, per SM, without a GPU)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edge_infer.errors import BackendError


@dataclass(frozen=True)
class SmLimits:
    """Per-SM resources of one compute capability (CUDA C++ Programming Guide, table 21)."""

    max_warps: int
    max_blocks: int
    registers: int = 65536
    register_unit: int = 256  # registers are given to warps in units of this many
    shared_bytes: int = 0  # usable shared memory per SM
    shared_unit: int = 128
    reserved_shared: int = 0  # the system's shared memory per block (sm_80+: 1 KiB)


LIMITS: dict[int, SmLimits] = {
    72: SmLimits(max_warps=64, max_blocks=32, shared_bytes=96 * 1024, shared_unit=256),
    87: SmLimits(max_warps=48, max_blocks=16, shared_bytes=164 * 1024, reserved_shared=1024),
    90: SmLimits(max_warps=64, max_blocks=32, shared_bytes=228 * 1024, reserved_shared=1024),
}


@dataclass(frozen=True)
class Occupancy:
    """Resident blocks per SM, the fraction of the SM's warp slots they fill, and what limits
    them (``"warps"``, ``"blocks"``, ``"registers"`` or ``"shared"``)."""

    blocks: int
    warps: int
    fraction: float
    limiter: str


def occupancy(sm: int, threads: int, registers: int, shared_bytes: int) -> Occupancy:
    """Occupancy of blocks of ``threads`` using ``registers`` per thread and ``shared_bytes``
    of shared memory (static + dynamic) per block."""
    if sm not in LIMITS:
        raise BackendError(f"no SM limits for sm_{sm}; known: {sorted(LIMITS)}")
    if not 1 <= threads <= 1024:
        raise BackendError(f"a block has 1 to 1024 threads, got {threads}")
    lim = LIMITS[sm]
    warps = math.ceil(threads / 32)
    per_warp = math.ceil(max(registers, 1) * 32 / lim.register_unit) * lim.register_unit
    smem = math.ceil((shared_bytes + lim.reserved_shared) / lim.shared_unit) * lim.shared_unit
    bounds = {
        "warps": lim.max_warps // warps,
        "blocks": lim.max_blocks,
        "registers": (lim.registers // per_warp) // warps,
        "shared": lim.shared_bytes // smem if smem else lim.max_blocks,
    }
    limiter = min(bounds, key=lambda k: bounds[k])
    blocks = bounds[limiter]
    return Occupancy(blocks, blocks * warps, blocks * warps / lim.max_warps, limiter)
