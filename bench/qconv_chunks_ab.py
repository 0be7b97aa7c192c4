"""qconv_native's 1x1 position chunks and grid strips on the AVX-512 VNNI path: multiples of 16
positions (``qconv_chunks.VECTOR_POSITIONS``, this tree) against whole 64-position tiles (the
path taken out of VECTOR_POSITIONS while the "old" states bind), in ONE process.

One INT8 engine (e.g. one ``bench/int8_layer_profile.py`` built in its ``--work`` folder at
the thread count it is timed at) gives three states of its program: "new", and "old" / "old2"
bound with whole tiles; whole inferences in rotating order round by round (wall time, the
threads' balance is the point), each state's outputs checked equal. Reported: the median
per-round ratios new/old, new/old2 and old2/old (the noise), then each layer whose fastest
run of ``--layer-runs`` differs by more than ``--show-us`` between new and old.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/qconv_chunks_ab.py \\
        --engine /tmp/int8-t2/resnet50-b1-int8.engine --threads 2 --rounds 20
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
    p.add_argument("--engine", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--runs", type=int, default=7, help="inferences per state and round")
    p.add_argument("--layer-runs", type=int, default=60, help="0: no per-layer table")
    p.add_argument("--show-us", type=float, default=2.0)
    args = p.parse_args(argv)

    from edge_infer.engine.backends import get_backend
    from edge_infer.engine.backends.cpu.parallel import active
    from edge_infer.engine.backends.cpu.tactics import qconv_chunks
    from edge_infer.engine.runtime import Engine

    if qconv_chunks._int8_path() != qconv_chunks.VNNI512_PATH:
        raise SystemExit("this CPU does not take the AVX-512 VNNI path")
    get_backend("cpu").configure(cores=args.threads)
    engine = Engine.load(args.engine)
    feeds = engine.random_feeds()
    batch = next(iter(feeds.values())).shape[0]
    prog = engine.program(engine.plan_batch_for(batch))
    states = {"new": prog.new_state()}
    vector = qconv_chunks.VECTOR_POSITIONS.pop(qconv_chunks.VNNI512_PATH)
    try:
        states["old"], states["old2"] = prog.new_state(), prog.new_state()
    finally:
        qconv_chunks.VECTOR_POSITIONS[qconv_chunks.VNNI512_PATH] = vector
    order = ["old", "new", "old2"]
    times: dict[str, list[float]] = {k: [] for k in states}
    outs: dict[str, dict[str, np.ndarray]] = {}
    for r in range(args.rounds + 1):  # the first round warms up
        for k in order[r % 3 :] + order[: r % 3]:
            runs = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                outs[k] = prog.run(states[k], feeds)
                runs.append(time.perf_counter() - t0)
            if r:
                times[k].append(statistics.median(runs))
    for name, want in outs["old"].items():
        if not np.array_equal(outs["new"][name], want):
            raise SystemExit(f"output {name}: new and old differ")

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))

    print(
        f"{Path(args.engine).name} {args.threads} threads {args.rounds} rounds: old "
        f"{statistics.median(times['old']) * 1e3:.2f} ms new "
        f"{statistics.median(times['new']) * 1e3:.2f} ms new/old {ratio('new', 'old'):.3f} "
        f"new/old2 {ratio('new', 'old2'):.3f} old2/old {ratio('old2', 'old'):.3f}"
    )
    if not args.layer_runs:
        return 0
    layer: dict[str, dict[str, list[float]]] = {k: {} for k in ("old", "new")}
    for _ in range(args.layer_runs):
        for k in ("old", "new"):
            s = states[k]
            with active(s.scratch.pool):
                prog._copy_inputs(s, feeds)
                for name, run in zip(s.names, s.runs, strict=True):
                    t0 = time.perf_counter()
                    run()
                    layer[k].setdefault(name, []).append(time.perf_counter() - t0)
    for name in states["new"].names:
        old, new = min(layer["old"][name]), min(layer["new"][name])
        if abs(new - old) * 1e6 > args.show_us:
            print(f"  {name:44s} old {old * 1e6:6.0f} us new {new * 1e6:6.0f} us {new / old:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
