"""edge_infer::QGemm's kernel (qgemm_packed.c) on classifier shapes, by the thread's CPU time,
bit-exactness checked against the reference op; ``--kernels DIR`` adds the same calls on the
kernels compiled from DIR (a copy of backends/cpu/kernels at an older commit), old and new
alternating in this one process (median of per-round ratios new / old).

Run:
    git -C /work/main archive REV edge_infer/engine/backends/cpu/kernels | tar -x -C /tmp/old
    .venv/bin/python bench/qgemm_kernel.py --kernels /tmp/old/edge_infer/engine/backends/cpu/kernels
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.steps_int8 import pack_qgemm
from edge_infer.engine.ops.quantize import qgemm

#: rows, outputs, inputs: MobileNetV2's and ResNet-50's classifiers at batch 1 and 8
SHAPES = [(1, 1000, 1280), (1, 1000, 2048), (8, 1000, 1280), (8, 1000, 2048)]


def _call(rows: int, n: int, k: int, kernels: Path | None) -> tuple[Any, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(rows * n + k)
    x = rng.integers(-128, 128, (rows, k), dtype=np.int8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    w_scale = rng.uniform(1e-4, 1e-3, n).astype(np.float32)
    bias = rng.integers(-9000, 9000, n).astype(np.int32)
    want = qgemm(x, w, w_scale, bias, x_scale=0.02, out_precision="fp32", out_scale=0.0)
    out = np.empty((rows, n), np.float32)
    wp, wsum = pack_qgemm(w)
    mult = 0.02 * w_scale.astype(np.float64)
    args = dict(x=x.ctypes.data, xrs=k, w=w.ctypes.data, k=k, n0=0, n1=n, bias=bias.ctypes.data,
                mult=mult.ctypes.data, rows=rows, out=out.ctypes.data, okind=0, ors=n,
                oscale=0.0, wp=wp.ctypes.data, wsum=wsum.ctypes.data, r0=0, r1=rows)  # fmt: skip
    keep = (x, w, wp, wsum, bias, mult, out)
    if kernels is None:
        return native.NativeCall("qgemm_packed_s8_f32", args, keep), out, want
    with native.kernels_from(kernels):
        call = native.NativeCall("qgemm_packed_s8_f32", args, keep)
    return call, out, want


def _cpu_us(call: Any, runs: int, flush: np.ndarray | None) -> float:
    times = []
    for _ in range(runs):
        if flush is not None:  # the weights from memory, as in a whole model
            flush += 1
        t0 = time.thread_time()
        call()
        times.append(time.thread_time() - t0)
    return statistics.median(times) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kernels", type=Path, help="kernels folder of the 'old' side")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--runs", type=int, default=20, help="calls per side and round (median)")
    p.add_argument("--cold", action="store_true", help="write 64 MB before each call")
    args = p.parse_args()
    flush = np.zeros(64 << 20, np.uint8) if args.cold else None
    for rows, n, k in SHAPES:
        sides = {"new": _call(rows, n, k, None)}
        if args.kernels:
            sides["old"] = _call(rows, n, k, args.kernels)
        for name, (call, out, want) in sides.items():
            call()
            assert np.array_equal(out, want), f"{name} kernels differ from the reference"
        times: dict[str, list[float]] = {s: [] for s in sides}
        for _ in range(args.rounds):
            for name, (call, _, _) in sides.items():
                times[name].append(_cpu_us(call, args.runs, flush))
        line = f"{rows} x {k} -> {n}: new {statistics.median(times['new']):.1f} us"
        if args.kernels:
            ratios = [a / b for a, b in zip(times["new"], times["old"], strict=True)]
            line += (
                f", old {statistics.median(times['old']):.1f} us; new/old "
                f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})"
            )
        print(line, flush=True)


if __name__ == "__main__":
    main()
