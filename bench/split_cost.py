"""What splitting each layer between threads costs: an engine built for N threads against one
built for 1 thread (the same model), in one process, by the calling thread's CPU time.

For every layer of the N-thread engine its pool calls are taken apart and their chunks run
one after another on this thread (each timed alone), the other steps as they are; the
1-thread engine's layers run as they are. Reported per layer and in total: the 1-thread
engine's time ("one"), the N-thread engine's chunks added up ("serial": what the split costs
in work, tactics and chunking together) and the N-thread schedule's bound ("ideal": each pool
call's slowest share, as kernels/pool.c deals them: thread t first takes tasks
[t n / N, (t + 1) n / N), rounded up for the caller), against the perfect split one / N.
Wall-clock effects (a helper that comes late, cores slowing each other) are not in it: CPU
time makes it robust to a loaded host. An engine whose plan runs branch lanes (schedule
"parallel": its layers are not split) is refused with a message; before the schedule choice
timed in paired rounds, a build on a loaded host could pick it for YOLOv8n, and every layer
then read "ideal == serial" here. Not run by the tests.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/split_cost.py \\
        /tmp/w2/mobilenetv2-b1-int8.engine /tmp/w1/mobilenetv2-b1-int8.engine --threads 2
(engines from ``bench/int8_vs_ort.py --work /tmp/w2`` and ``--threads 1 --work /tmp/w1``)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

Run = Callable[[], None]


def parts(run: Run) -> list[tuple[Run, list[Run] | None]]:
    """A layer's run as its steps: (run, its chunks) for a native pool call
    (parallel.WorkPool.bind keeps them), (run, None) for anything else; sequences
    (parallel.sequence) are opened."""
    keep = getattr(run, "keep", None)
    if isinstance(keep, tuple) and len(keep) == 2 and isinstance(keep[1], list):
        return [(run, keep[1])]
    code = getattr(run, "__code__", None)
    if code is not None and code.co_freevars == ("runs",) and run.__closure__:
        return [p for r in run.__closure__[0].cell_contents for p in parts(r)]
    return [(run, None)]


def shares(n: int, threads: int) -> list[tuple[int, int]]:
    """The task ranges the pool's threads take first (pool.c share_end)."""
    ends = [((t + 1) * n + threads - 1) // threads for t in range(threads)]
    return list(zip([0, *ends[:-1]], ends, strict=True))


def _state(path: str, threads: int) -> tuple[Any, Any, Any]:
    from edge_infer.engine.backends import get_backend
    from edge_infer.engine.benchmark import set_threads
    from edge_infer.engine.runtime import Engine

    set_threads(threads)
    get_backend("cpu").configure(cores=threads)
    engine = Engine.load(path)
    program = engine.program(engine.plan_batch_for(engine.batch_sizes[0]))
    return engine, program, program.new_state()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("engine_n", help="the engine built for --threads threads")
    p.add_argument("engine_1", help="the same model's engine built for 1 thread")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iterations", type=int, default=15, help="median of this many")
    p.add_argument("--rows", type=int, default=25, help="layers listed (most lost first)")
    args = p.parse_args()
    engine, prog_n, state_n = _state(args.engine_n, args.threads)
    if state_n.runner is not None:  # layers in branch lanes, none split: nothing to take apart
        sys.exit(
            f"{args.engine_n}: its plan runs branch lanes (schedule 'parallel'), whose layers "
            "are not split between threads; this bench measures split layers (an engine with "
            "the sequential schedule)"
        )
    _, prog_1, state_1 = _state(args.engine_1, 1)
    rng = np.random.default_rng(0)
    feeds = {b.name: rng.random(tuple(b.shape), dtype=np.float32) for b in engine.inputs}
    for _ in range(3):
        prog_n.run(state_n, feeds)
        prog_1.run(state_1, feeds)
    steps = [parts(r) for r in state_n.runs]
    clock = time.thread_time
    one: dict[str, list[float]] = {n: [] for n in state_1.names}
    serial: dict[str, list[float]] = {n: [] for n in state_n.names}
    ideal: dict[str, list[float]] = {n: [] for n in state_n.names}
    for _ in range(args.iterations):
        prog_1._copy_inputs(state_1, feeds)
        for name, run in zip(state_1.names, state_1.runs, strict=True):
            t0 = clock()
            run()
            one[name].append(clock() - t0)
        prog_n._copy_inputs(state_n, feeds)
        for name, layer in zip(state_n.names, steps, strict=True):
            work = bound = 0.0
            for run, chunks in layer:
                if chunks is None:
                    t0 = clock()
                    run()
                    t = clock() - t0
                    work, bound = work + t, bound + t
                    continue
                times = []
                for chunk in chunks:
                    t0 = clock()
                    chunk()
                    times.append(clock() - t0)
                work += sum(times)
                bound += max(sum(times[a:b]) for a, b in shares(len(times), args.threads))
            serial[name].append(work)
            ideal[name].append(bound)

    def us(v: list[float]) -> float:
        return statistics.median(v) * 1e6 if v else 0.0

    rows = [(n, us(one.get(n, [])), us(serial[n]), us(ideal[n])) for n in state_n.names]
    t_one = sum(us(v) for v in one.values())
    t_ser, t_ideal = sum(r[2] for r in rows), sum(r[3] for r in rows)
    print(
        f"1-thread engine {t_one:.0f} us; {args.threads}-thread engine's chunks {t_ser:.0f} us "
        f"({t_ser / t_one - 1:+.1%}); its ideal schedule {t_ideal:.0f} us against the perfect "
        f"split {t_one / args.threads:.0f} ({t_ideal / (t_one / args.threads) - 1:+.1%}); "
        f"uneven shares {t_ideal - t_ser / args.threads:.0f} us"
    )
    print("(a layer named as a chain's first node covers the chain in one engine only)")
    rows.sort(key=lambda r: -(r[3] - r[1] / args.threads))
    for name, o, s, i in rows[: args.rows]:
        lost = i - o / args.threads
        print(f"{lost:8.1f} us lost: one {o:8.1f} serial {s:8.1f} ideal {i:8.1f}  {name}")


if __name__ == "__main__":
    main()
