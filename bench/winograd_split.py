"""winograd_native's two ways of sharing a layer between threads, measured so that a loaded
host cannot blur them: each native call a layer makes is timed alone on one thread (the
minimum over rounds), and the calls are then handed out in order to whichever of
``--threads`` free cores is free first — the layer's critical path on that many idle cores.
"tiles16" is the split before issue 18 (blocks of 16 tiles only), "now" the tactic as it is.
ResNet-50's stride-1 3×3 layers at batch 1 and 8. Not run by the tests.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/winograd_split.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: (batch, channels, side)
LAYERS = [(1, 64, 56), (1, 128, 28), (1, 256, 14), (8, 64, 56), (8, 128, 28), (8, 256, 14)]
LAYERS += [(8, 512, 7)]


def recorded(tactic: Any, spec: Any, ins: list, pool: Any) -> list[Any]:
    """The native calls ``tactic`` binds for ``spec`` on a pool of ``pool.workers``."""
    from edge_infer.engine.backends.cpu import native
    from edge_infer.engine.backends.cpu.program import ScratchPool

    calls: list[Any] = []
    init = native.NativeCall.__init__

    def record(self: Any, *args: Any, **kw: Any) -> None:
        init(self, *args, **kw)
        calls.append(self)

    native.NativeCall.__init__ = record  # type: ignore[method-assign]
    try:
        tactic(spec).bind(ins, [np.zeros(spec.out_shape, np.float32)], ScratchPool(pool))
    finally:
        native.NativeCall.__init__ = init  # type: ignore[method-assign]
    return calls


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=9)
    args = p.parse_args()

    from edge_infer.engine.backends.cpu.parallel import WorkPool
    from edge_infer.engine.backends.cpu.tactics.cpu_winograd import WinogradNative
    from edge_infer.engine.tactics.base import ConvSpec

    before = type("Tiles16", (WinogradNative,), {"tb": 16, "shared_tiles": 0})
    rng = np.random.default_rng(0)
    pool = WorkPool(args.threads)
    print(f"critical path on {args.threads} idle cores (ms), per-call minimum of {args.rounds}")
    try:
        for n, c, side in LAYERS:
            xs = (n, c, side, side)
            x = rng.standard_normal(xs).astype(np.float32)
            w = (rng.standard_normal((c, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
            b = np.zeros(c, np.float32)
            spec = ConvSpec(xs, xs, w, b, (1, 1), (1, 1, 1, 1), (1, 1), 1, "relu")
            sides = {
                k: recorded(t, spec, [x, w, b], pool)
                for k, t in (("tiles16", before), ("now", WinogradNative))
            }
            best = {k: [np.inf] * len(v) for k, v in sides.items()}
            for _ in range(args.rounds):
                for k, calls in sides.items():
                    for i, call in enumerate(calls):
                        t = time.perf_counter()
                        call()
                        best[k][i] = min(best[k][i], time.perf_counter() - t)
            row = []
            for k, times in best.items():
                loads = [0.0] * args.threads
                for t in times:
                    loads[loads.index(min(loads))] += t
                row.append(f"{k} {max(loads) * 1e3:6.2f} ({len(times)} calls)")
            print(f"b{n} {c:3d}ch {side:2d}x{side:<2d}: " + "   ".join(row), flush=True)
    finally:
        pool.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
