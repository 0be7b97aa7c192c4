"""A whole INT8 engine on the working tree's kernels against older kernels folders, in ONE
process, alternating, by the calling thread's CPU time (1 thread).

Each old side's context is created AND first run inside ``native.kernels_from(folder)``: a
context fuses its native calls into one program at its first run, and the fused tasks
(``NativeCall.task``) look their kernels up then, in whatever library is current, so a
context only created under the old kernels (as ``bench/int8_vs_ort.py --old-kernels`` does)
runs the new ones when timed: an A/A. The outputs of every side must equal the new one's.
Per old side: the medians, the median of the per-round ratios new / old and its 10th-90th
percentiles; with two old sides also old0 / old1 (give one of them a copy of the working
tree's kernels for an A/A); ``--ort``: onnxruntime's quantized model as one more side (one
intra-op thread; by the calling thread's CPU time too). Engines and models as
``bench/int8_vs_ort.py`` builds them in ``--work``.

Run:
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.qpw_whole_ab \\
        --work /tmp/int8-vs-ort --old <kernels at HEAD> <a copy of these> --rounds 100
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
    p.add_argument("--row", default="mobilenetv2-b1")
    p.add_argument("--work", required=True, help="bench/int8_vs_ort.py's folder")
    p.add_argument("--old", nargs="+", required=True, help="kernels folders")
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--runs", type=int, default=3, help="runs per round and side (fastest)")
    p.add_argument("--ort", action="store_true", help="an onnxruntime-q side too (1 thread)")
    args = p.parse_args(argv)

    from bench.int8_vs_ort import _build, _ort
    from edge_infer.engine.backends import get_backend
    from edge_infer.engine.backends.cpu import native
    from edge_infer.engine.benchmark import set_threads
    from edge_infer.engine.runtime import Engine

    set_threads(1)
    get_backend("cpu").configure(cores=1)
    build = argparse.Namespace(calib_frames=32, calibrator="minmax", rebuild=False, threads=1)
    engine, q_path, feeds = _build(args.row, Path(args.work), build)
    ctxs = {"new": Engine.load(str(engine)).create_context()}
    for _ in range(3):
        ctxs["new"].execute(feeds)
    for k, folder in enumerate(args.old):
        with native.kernels_from(Path(folder)):
            ctx = Engine.load(str(engine)).create_context()
            for _ in range(3):
                ctx.execute(feeds)
        ctxs[f"old{k}"] = ctx
    want = ctxs["new"].execute(feeds)
    for name, ctx in ctxs.items():
        for key, got in ctx.execute(feeds).items():
            if not np.array_equal(np.asarray(got), np.asarray(want[key])):
                raise SystemExit(f"{name}: output {key!r} differs from the new kernels'")
    runs = {name: (lambda ctx=ctx: ctx.execute(feeds)) for name, ctx in ctxs.items()}
    if args.ort:
        session = _ort(q_path, 1)
        runs["ort"] = lambda: session.run(None, feeds)
        for _ in range(3):
            runs["ort"]()
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(args.rounds):
        for name in names[:: 1 if r % 2 else -1]:
            best = float("inf")
            for _ in range(args.runs):
                t0 = time.thread_time()
                runs[name]()
                best = min(best, time.thread_time() - t0)
            times[name].append(best)

    def line(a: str, b: str) -> str:
        ratios = [x / y for x, y in zip(times[a], times[b], strict=True)]
        lo, hi = np.percentile(ratios, [10, 90])
        return (
            f"{a} {statistics.median(times[a]) * 1e3:.3f} ms, {b} "
            f"{statistics.median(times[b]) * 1e3:.3f} ms: {a}/{b} median "
            f"{statistics.median(ratios):.3f} (10-90 % {lo:.3f}-{hi:.3f})"
        )

    olds = [name for name in names if name.startswith("old")]
    for name in [*olds, *(["ort"] if args.ort else [])]:
        print(f"{args.row}: {line('new', name)}")
    if len(olds) > 1:
        print(f"{args.row}: {line('old0', 'old1')}")
    if args.ort:
        for name in olds:
            print(f"{args.row}: {line(name, 'ort')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
