"""One INT8 engine bound twice in ONE process, alternating: as the tree binds it ("ours") and
with module constants of the CPU backend changed while binding ("knob"), e.g. how a tactic
splits a layer between the threads. onnxruntime's quantized model alternates with them as
``bench/int8_vs_ort.py`` runs it (same build, rounds and per-round medians); the two
bindings' outputs must be equal. Also printed: each side's fastest run and 10th percentile
over all runs (on an oversubscribed host, the runs no other job interrupted), and with
``--threads 1 --cpu-time`` the thread's CPU time instead of the wall clock.

Run (2 threads, BLAS unthrottled):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.int8_knob_ab \
        --rows mobilenetv2-b1 --work /tmp/w \
        --set edge_infer.engine.backends.cpu.steps_int8:_QGEMM_SPLIT=200000
"""

from __future__ import annotations

import argparse
import ast
import importlib
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.int8_vs_ort import (
    _build,
    _ort,
    alternate,
    check_timing_arguments,
    row_arguments,
    timing_arguments,
    work_folder,
)


def _knobs(sets: list[str]) -> list[tuple[Any, str, Any]]:
    """``module:NAME=value`` strings as (module, name, value)."""
    out = []
    for item in sets:
        target, _, value = item.partition("=")
        module, _, name = target.partition(":")
        mod = importlib.import_module(module)
        if not hasattr(mod, name):
            raise SystemExit(f"{module} has no {name}")
        out.append((mod, name, ast.literal_eval(value)))
    return out


def _context(engine: Path, knobs: list[tuple[Any, str, Any]]) -> Any:
    from edge_infer.engine.runtime import Engine

    saved = [(m, n, getattr(m, n)) for m, n, _ in knobs]
    for m, n, v in knobs:
        setattr(m, n, v)
    try:
        return Engine.load(str(engine)).create_context()
    finally:
        for m, n, v in saved:
            setattr(m, n, v)


def bench_row(row: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from edge_infer.engine.backends import get_backend
    from edge_infer.engine.benchmark import set_threads

    set_threads(args.threads)
    get_backend("cpu").configure(cores=args.threads)
    engine, q_path, feeds = _build(row, work, args)
    session = _ort(q_path, args.threads)
    ours = _context(engine, [])
    knob = _context(engine, _knobs(args.set))
    sides = {
        "ort": lambda: session.run(None, feeds),
        "ours": lambda: ours.execute(feeds),
        "knob": lambda: knob.execute(feeds),
    }
    a, b = ours.execute(feeds), knob.execute(feeds)
    for k in a:
        if not (a[k] == b[k]).all():
            raise SystemExit(f"output {k} differs between the two bindings")
    for run in sides.values():
        for _ in range(3):
            run()
    medians, every = alternate(sides, args)
    result: dict[str, Any] = {"ms": {s: statistics.median(m) for s, m in medians.items()}}
    # the fastest runs of each side: those no other job interrupted (an oversubscribed host)
    result["min"] = {s: min(v) for s, v in every.items()}
    result["p10"] = {s: statistics.quantiles(v, n=10)[0] for s, v in every.items()}
    for num, den in (("ours", "ort"), ("knob", "ort"), ("knob", "ours")):
        ratios = [x / y for x, y in zip(medians[num], medians[den], strict=True)]
        result[f"{num}/{den}"] = (statistics.median(ratios), min(ratios), max(ratios))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    row_arguments(p, "mobilenetv2-b1")
    timing_arguments(p, rounds=10)
    p.add_argument("--set", action="append", default=[], help="module:NAME=value (repeatable)")
    args = p.parse_args(argv)
    check_timing_arguments(p, args)
    work = work_folder(args)
    for row in args.rows:
        r = bench_row(row, work, args)
        ms = ", ".join(f"{s} {v:.2f} ms" for s, v in r["ms"].items())
        ratios = ", ".join(
            f"{k} {v[0]:.3f} ({v[1]:.3f}-{v[2]:.3f})" for k, v in r.items() if "/" in k
        )
        print(f"{row} [{' '.join(args.set)}]: {ms}; {ratios}", flush=True)
        for stat in ("min", "p10"):
            v = r[stat]
            print(
                f"    {stat}: "
                + ", ".join(f"{s} {t:.2f} ms" for s, t in v.items())
                + f"; ours/ort {v['ours'] / v['ort']:.3f}, knob/ours {v['knob'] / v['ours']:.3f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
