"""Huge pages or not (backends/cpu/hugemem.py), whole engine, one process: the engine file loaded
twice, one program's state bound as contexts bind it (``new_state``: a hugemem region, its
arena, scratch and tactic constants on 2 MB pages) and the other's without a region (numpy's
4 KB pages), whole inferences alternating round by round. Prints both medians and the median
per-round ratio huge / plain; ``--threads 1`` times thread CPU time (steadier on a shared
host), more threads wall time. Not run by the tests.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/hugemem_ab.py \\
        --engine /tmp/int8-vs-ort/resnet50-b1-int8.engine --threads 1 --rounds 100
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _state(path: str, huge: bool) -> tuple[Any, Any, dict[str, np.ndarray]]:
    """(program, state, feeds) of a fresh load of ``path``, bound in a region or not."""
    from edge_infer.engine.runtime import Engine

    engine = Engine.load(path)
    feeds = engine.random_feeds()
    prog = engine.program(engine.plan_batch_for(next(iter(feeds.values())).shape[0]))
    return prog, prog.new_state() if huge else prog._new_state(), feeds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=100)
    args = p.parse_args(argv)

    from edge_infer.engine.backends import get_backend

    get_backend("cpu").configure(cores=args.threads)
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    sides = {"plain": _state(args.engine, False), "huge": _state(args.engine, True)}
    times: dict[str, list[float]] = {k: [] for k in sides}
    for r in range(args.rounds + 2):  # the first 2 rounds warm up
        for k in list(sides)[:: 1 if r % 2 else -1]:
            prog, state, feeds = sides[k]
            prog._copy_inputs(state, feeds)
            t0 = clock()
            for run in state.runs:
                run()
            if r >= 2:
                times[k].append(clock() - t0)
    plain, huge = (np.array(times[k]) for k in ("plain", "huge"))
    print(
        f"{Path(args.engine).name} {args.threads} thread(s), {args.rounds} rounds"
        f" ({'cpu' if args.threads == 1 else 'wall'}): plain {np.median(plain) * 1e3:.2f} ms"
        f" huge {np.median(huge) * 1e3:.2f} ms huge/plain {np.median(huge / plain):.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
