"""Two engine files of one model (say its FP32 and INT8 engines) in ONE process, alternating.

Each round times every engine ``--runs`` times in turn (the order rotating round by round) and
keeps each one's median; reported: each engine's median of its per-round medians and the
median, min and max of the per-round ratios B / A. At one thread the runs are timed by the
calling thread's CPU time (the engine computes on it: robust to other jobs on the host); at
more, by the wall clock, each engine's runs of a round after 50 ms idle. Inputs:
uniform random at the engines' input shapes. Not run by the tests.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/engine_pair.py \\
        <w>/yolov8n-320-b1-fp32.engine <w>/yolov8n-320-b1-int8.engine --threads 1 --rounds 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", help="engine A (the ratio's denominator)")
    p.add_argument("b", help="engine B")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args(argv)

    from edge_infer.engine.backends import get_backend
    from edge_infer.engine.benchmark import set_threads
    from edge_infer.engine.runtime import Engine

    set_threads(args.threads)
    get_backend("cpu").configure(cores=args.threads)
    engines = {"A": Engine.load(args.a), "B": Engine.load(args.b)}
    rng = np.random.default_rng(0)
    feeds = {x.name: rng.random(tuple(x.shape), dtype=np.float32) for x in engines["A"].inputs}
    contexts = {k: e.create_context() for k, e in engines.items()}
    for c in contexts.values():
        for _ in range(3):
            c.execute(feeds)
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    medians: dict[str, list[float]] = {k: [] for k in contexts}
    names = list(contexts)
    for r in range(args.rounds):
        for k in names[r % 2 :] + names[: r % 2]:
            samples = []
            if args.threads > 1:
                time.sleep(0.05)
            for _ in range(args.runs):
                t0 = clock()
                contexts[k].execute(feeds)
                samples.append(clock() - t0)
            medians[k].append(statistics.median(samples))
    ratios = [b / a for a, b in zip(medians["A"], medians["B"], strict=True)]
    mode = "thread CPU time" if args.threads == 1 else "wall, runs after 50 ms idle"
    print(
        f"{args.threads} thread(s), {mode}: A {statistics.median(medians['A']) * 1e3:.2f} ms, "
        f"B {statistics.median(medians['B']) * 1e3:.2f} ms; B/A {statistics.median(ratios):.3f}"
        f" ({min(ratios):.3f}-{max(ratios):.3f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
