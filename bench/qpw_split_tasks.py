"""qpointwise_native's two-thread split of a small map, positions against output channels:
each task's time on one thread, in ONE process, alternating.

On this shared 2-core host a second thread rarely gets a core, so a 2-thread layer time says
little; the slower of a layer's two tasks (each timed alone, one thread) bounds the layer on
an idle 2-core machine. The engine's QConv layers of fewer than ``--below`` positions that
qpointwise_native can run are bound for 2 workers (no pool: the tasks are collected), once
with CHANNEL_SPLIT 0 (positions: a 7x7 map as 32 + 17) and once as in the tactic (output
channels), both checked against the reference op bit for bit, then each task timed in
rounds of ``--runs`` calls alternating the sides; per layer the slower task of each side.

Run:
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/qpw_split_tasks.py \\
        --engine /tmp/int8-vs-ort/mobilenetv2-b1-int8.engine --rounds 6
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", required=True)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--runs", type=int, default=5, help="calls per round, task and side")
    p.add_argument("--below", type=int, default=64, help="layers of fewer positions")
    args = p.parse_args(argv)

    from bench.qconv_layer_ab import _specs, random_inputs
    from bench.qpw_layer_ab import _pointwise
    from edge_infer.engine.backends.cpu import native
    from edge_infer.engine.backends.cpu.program import ScratchPool
    from edge_infer.engine.backends.cpu.tactics import cpu_qpointwise as qp
    from edge_infer.engine.ops.quantize import qconv

    made: list[Any] = []
    call = native.NativeCall

    class Spy(call):  # type: ignore[misc, valid-type]
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            made.append(self)

    native.NativeCall = Spy  # type: ignore[misc]
    sides = {"positions": 0, "channels": qp.CHANNEL_SPLIT}
    rng = np.random.default_rng(0)
    seen: set[Any] = set()
    totals = dict.fromkeys(sides, 0.0)
    for spec in (s for s in _specs(args.engine) if _pointwise(s)):
        key = (spec.x_shape, spec.cout, spec.activation, spec.residual)
        if key in seen or spec.x_shape[2] * spec.x_shape[3] >= args.below:
            continue
        seen.add(key)
        inputs = random_inputs(spec, rng)
        want = qconv(*inputs, **spec.attrs())
        tasks: dict[str, list[Any]] = {}
        for side, below in sides.items():
            qp.CHANNEL_SPLIT = below
            scratch = ScratchPool(None)
            scratch.workers = 2
            out = np.zeros(spec.out_shape, want.dtype)
            made.clear()
            qp.QPointwiseNative(spec).bind(inputs, [out], scratch)()
            if not np.array_equal(out, want):
                raise SystemExit(f"{side}: {key} differs from the reference")
            tasks[side] = list(made)
        best = {(s, i): float("inf") for s in tasks for i in range(len(tasks[s]))}
        for r in range(args.rounds):
            for side in list(tasks)[:: 1 if r % 2 else -1]:
                for i, task in enumerate(tasks[side]):
                    for _ in range(args.runs):
                        t0 = time.perf_counter()
                        task()
                        best[side, i] = min(best[side, i], time.perf_counter() - t0)
        slow = {s: max(best[s, i] for i in range(len(tasks[s]))) for s in tasks}
        for side in totals:
            totals[side] += slow[side]
        each = "  ".join(
            f"{s} " + "/".join(f"{best[s, i] * 1e6:.1f}" for i in range(len(tasks[s])))
            for s in tasks
        )
        print(f"{key!s:56s} {each} us  {slow['channels'] / slow['positions']:.3f}", flush=True)
    if not seen:  # e.g. a 1-thread engine: no layer on qpointwise_native below --below
        print("no qpointwise_native layer of the engine qualifies (see --below)")
        return 1
    print(
        f"slower task, all layers: positions {totals['positions'] * 1e6:.1f} us, channels "
        f"{totals['channels'] * 1e6:.1f} us, {totals['channels'] / totals['positions']:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
