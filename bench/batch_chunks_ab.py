"""A batch's 1x1 INT8 layers in chunks across its images or not (qconv_chunks.BATCH_CHUNK_PATHS
emptied for the "image" side), one process, alternating. Two measures of one engine file:

* each distinct qconv_native 1x1 stride-1 layer on a map of at most BATCH_CHUNK_MAX_POSITIONS
  positions, bound twice on random int8 inputs (the outputs compared bit for bit), timed in
  rounds of 5 calls a side: the minimum per side and their ratio;
* ``--whole``: the engine's program bound twice, whole inferences alternating round by round:
  the medians of each round's fastest of 5 and their ratio.

``--threads 1`` times thread CPU time (steadier on a shared host), more threads wall time.
Not run by the tests.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/batch_chunks_ab.py \\
        --engine /tmp/int8-vs-ort/mobilenetv2-b8-int8.engine --threads 1 [--whole]
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

_DTYPES = {"fp32": np.float32, "fp16": np.float16, "int8": np.int8}


def _sides(make: Callable[[], Any]) -> dict[str, Any]:
    """``make()`` with batch chunks off ("image") and as the code stands ("batch")."""
    from edge_infer.engine.backends.cpu.tactics import qconv_chunks

    paths = set(qconv_chunks.BATCH_CHUNK_PATHS)
    sides: dict[str, Any] = {}
    for name, on in (("image", set()), ("batch", paths)):
        qconv_chunks.BATCH_CHUNK_PATHS = on
        try:
            sides[name] = make()
        finally:
            qconv_chunks.BATCH_CHUNK_PATHS = paths
    return sides


def _rounds(runs: dict[str, Callable[[], Any]], rounds: int, clock: Any) -> dict[str, list]:
    """Each side's fastest of 5 calls a round, the sides' order alternating."""
    best: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(rounds):
        for k in list(runs)[:: 1 if r % 2 else -1]:
            b = float("inf")
            for _ in range(5):
                t0 = clock()
                runs[k]()
                b = min(b, clock() - t0)
            best[k].append(b)
    return best


def layers(engine: str, pool: Any, rounds: int, clock: Any) -> None:
    from bench.qconv_layer_ab import _specs, random_inputs
    from edge_infer.engine.backends.cpu import hugemem
    from edge_infer.engine.backends.cpu.program import ScratchPool
    from edge_infer.engine.backends.cpu.tactics.cpu_qconv import QConvNative
    from edge_infer.engine.backends.cpu.tactics.qconv_chunks import BATCH_CHUNK_MAX_POSITIONS

    seen: set[Any] = set()
    total = {"image": 0.0, "batch": 0.0}
    for s in _specs(engine):
        n, c, h, w = s.x_shape
        key = (s.x_shape, s.cout, s.residual, s.out_precision)
        if s.kernel != (1, 1) or s.strides != (1, 1) or h * w > BATCH_CHUNK_MAX_POSITIONS:
            continue
        if key in seen:
            continue
        seen.add(key)
        inputs = random_inputs(s, np.random.default_rng(0), lo=int(s.x_range[0]))
        outs: list[np.ndarray] = []

        def make(s: Any = s, inputs: list = inputs, outs: list = outs) -> Any:
            out = np.zeros(s.out_shape, _DTYPES[s.out_precision])
            with hugemem.region():
                run = QConvNative(s).bind(inputs, [out], ScratchPool(pool))
            run()
            outs.append(out)
            return run

        runs = _sides(make)
        same = np.array_equal(outs[0], outs[1])
        best = {k: min(v) for k, v in _rounds(runs, rounds, clock).items()}
        for k in total:
            total[k] += best[k]
        print(
            f"{c:5d}->{s.cout:5d} {h}x{w} b{n} {s.residual:4s} {s.out_precision}:"
            f" image {best['image'] * 1e6:8.1f} us batch {best['batch'] * 1e6:8.1f} us"
            f" batch/image {best['batch'] / best['image']:.3f}"
            f"{'' if same else '  OUTPUTS DIFFER'}",
            flush=True,
        )
    if total["image"]:
        print(f"sum: batch/image {total['batch'] / total['image']:.3f}")


def whole(engine: str, rounds: int, clock: Any) -> None:
    from edge_infer.engine.runtime import Engine

    eng = Engine.load(engine)
    feeds = eng.random_feeds()
    ctxs = _sides(eng.create_context)
    outs = [c.execute(feeds) for c in ctxs.values()]
    same = all(np.array_equal(outs[0][k], outs[1][k]) for k in outs[0])
    runs = {k: (lambda c=c: c.execute(feeds)) for k, c in ctxs.items()}
    best = _rounds(runs, rounds, clock)
    image, batch = (statistics.median(best[k]) for k in ("image", "batch"))
    print(
        f"{Path(engine).name}: image {image * 1e3:.2f} ms batch {batch * 1e3:.2f} ms"
        f" batch/image {batch / image:.3f}{'' if same else '  OUTPUTS DIFFER'}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--whole", action="store_true", help="whole inferences, not layers")
    args = p.parse_args(argv)

    from edge_infer.engine.backends import get_backend
    from edge_infer.engine.backends.cpu.parallel import WorkPool

    get_backend("cpu").configure(cores=args.threads)
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    label = "cpu" if args.threads == 1 else "wall"
    print(f"{Path(args.engine).name}, {args.threads} thread(s), {args.rounds} rounds ({label})")
    if args.whole:
        whole(args.engine, args.rounds, clock)
        return 0
    pool = WorkPool(args.threads) if args.threads > 1 else None
    try:
        layers(args.engine, pool, args.rounds, clock)
    finally:
        if pool is not None:
            pool.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
