"""bench.mnv_fp32_ab (one process, old / new / old2 states alternating, every layer timed)
with each state's arena at a chosen address modulo 64 bytes: ``ARENA_OFFS=a,b,c`` places the
arenas in the order they are made (old, old2, new; cycling). The engine's arenas come from
numpy at 16 or 32 bytes past a 64-byte boundary, differently from state to state and process
to process, which moves some kernels' times by more than the change measured; this fixes it.
Every other argument is mnv_fp32_ab's. Not run by the tests.

    git show HEAD:edge_infer/engine/backends/cpu/kernels/conv_pointwise.c > /tmp/old_pw.c
    ARENA_OFFS=16,16,16 env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python \\
        -m bench.pw_arena_ab --kernel conv_pointwise --old /tmp/old_pw.c \\
        --new edge_infer/engine/backends/cpu/kernels/conv_pointwise.c --threads 1 --cpu
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from bench import mnv_fp32_ab
from edge_infer.engine.backends.cpu import program

#: an arena is the one-dimensional byte array of more than this many bytes
ARENA_MIN = 1 << 20


def placed(offsets: list[int]) -> Any:
    """program._touched with arenas at ``offsets`` (bytes past 64, in turn)."""
    made: list[int] = []
    touched = program._touched

    def place(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        dtype = np.dtype(dtype)
        if dtype != np.uint8 or len(shape) != 1 or shape[0] <= ARENA_MIN:
            return touched(shape, dtype)
        want = offsets[len(made) % len(offsets)]
        raw = touched((shape[0] + 128,), dtype)
        start = (want - raw.ctypes.data) % 64
        arena = raw[start : start + shape[0]]
        made.append(arena.ctypes.data % 64)
        print(f"arena {len(made)}: {made[-1]} bytes past 64", file=sys.stderr)
        return arena

    return place


def main() -> int:
    offsets = [int(v) for v in os.environ.get("ARENA_OFFS", "").split(",") if v]
    if offsets:
        program._touched = placed(offsets)
    return mnv_fp32_ab.main()


if __name__ == "__main__":
    raise SystemExit(main())
