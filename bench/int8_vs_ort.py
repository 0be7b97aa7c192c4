"""Our INT8 engine against onnxruntime's quantized model, in ONE process, alternating.

Both sides are built as ``bench/engine_table.py`` builds them (our INT8 engine calibrated on
synthetic camera frames; onnxruntime's ``quantize_static`` QDQ per-channel model from the
same frames). Each round times every side ``--runs`` times, in a rotating order, and keeps
each side's median; the ratio ours / onnxruntime of each round's medians is robust to other
jobs loading the machine (report it "under load"). ``--old-kernels DIR`` adds a third side:
the same engine file run on the native kernels compiled from DIR (a copy of
``backends/cpu/kernels`` at an older commit), for a before/after in the same process.
``--profile`` adds our layers' times by op and tactic. ``--cpu-time`` (with ``--threads 1``:
both sides then compute on the calling thread) times each run by the thread's CPU time, not
the wall clock: what other jobs on a loaded host take from it is left out.

Run (2 threads, BLAS unthrottled):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/int8_vs_ort.py \
        --rows resnet50-b1 crnn-w128-b8 --work /tmp/int8-vs-ort
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.engine_table import (
    MODELS,
    FramesReader,
    _load_model,
    parse_row,
    quantize_ort,
    synth_frames,
)


def _build(row: str, work: Path, args: argparse.Namespace) -> tuple[Path, Path, Any]:
    import edge_infer
    from edge_infer.engine.calibration import calibrate
    from edge_infer.engine.options import BuildOptions

    name, batch = parse_row(row)
    model = MODELS[name]
    fp32 = _load_model(model, work)
    calib = synth_frames(args.calib_frames, model.chw, "calib")
    engine = work / f"{row}-int8.engine"
    if not engine.exists() or args.rebuild:
        cal = calibrate(
            str(fp32), calib, calibrator=args.calibrator, shapes={model.input_name: (1, *model.chw)}
        )
        opts = BuildOptions(
            shapes={model.input_name: (batch, *model.chw)},
            timing_cache=str(work / f"{name}.timing.json"),
            precision="int8",
            calibration=cal.cache,
            backend_options={"threads": args.threads},
        )
        edge_infer.build(str(fp32), str(engine), options=opts)
    q_path = work / f"{name}-ort-int8.onnx"
    if not q_path.exists():
        quantize_ort(fp32, q_path, FramesReader(model.input_name, calib), args.calibrator)
    feed = np.stack(synth_frames(batch, model.chw, "val"))
    return engine, q_path, {model.input_name: feed}


def _ours(engine: Path, kernels: Path | None, feeds: dict[str, np.ndarray]) -> Any:
    """A context of ``engine``; on the kernels compiled from ``kernels`` when given: run once
    inside the block, where it binds its native calls (a context binds at its first run;
    created there but first run after it, the "old" side ran this tree's kernels, and
    ours/old read 0.999-1.002 whatever changed)."""
    from edge_infer.engine.backends.cpu import native
    from edge_infer.engine.runtime import Engine

    if kernels is None:
        return Engine.load(str(engine)).create_context()
    with native.kernels_from(kernels):
        ctx = Engine.load(str(engine)).create_context()
        ctx.execute(feeds)
        return ctx


def _ort(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _check_same(new: dict[str, Any], old: dict[str, Any], rel: float = 1e-2) -> None:
    """The old kernels must compute what the new ones do on this engine's bound data: a
    kernel from before a change of a tactic's layout (e.g. 3865c7a, the paired-term order of
    qconv_native) reads the new layout wrongly and would be timed on garbage."""
    for name, want in new.items():
        a, b = np.asarray(old[name], np.float64), np.asarray(want, np.float64)
        err = float(np.max(np.abs(a - b), initial=0.0))
        if not err <= rel * float(np.max(np.abs(b), initial=0.0)) + 1e-6:
            raise SystemExit(
                f"--old-kernels: output {name!r} differs from the new kernels' by {err:.3g}: "
                f"those kernels do not read this engine's layouts (a tactic's packing changed "
                f"since); take kernels from after the change"
            )


def bench_row(row: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from edge_infer.engine.backends import get_backend
    from edge_infer.engine.benchmark import set_threads

    set_threads(args.threads)
    get_backend("cpu").configure(cores=args.threads)
    engine, q_path, feeds = _build(row, work, args)
    session = _ort(q_path, args.threads)
    sides: dict[str, Any] = {"ort": lambda: session.run(None, feeds)}
    ctx = _ours(engine, None, feeds)
    sides["ours"] = lambda: ctx.execute(feeds)
    if args.old_kernels:
        old = _ours(engine, Path(args.old_kernels), feeds)
        sides["old"] = lambda: old.execute(feeds)
    for run in sides.values():
        for _ in range(3):
            run()
    if args.old_kernels:
        _check_same(ctx.execute(feeds), old.execute(feeds))
    medians, _ = alternate(sides, args)
    names = list(sides)
    result: dict[str, Any] = {
        "row": row,
        "ms": {s: statistics.median(m) for s, m in medians.items()},
    }
    for side in names[1:]:
        ratios = [a / b for a, b in zip(medians[side], medians["ort"], strict=True)]
        result[f"{side}/ort"] = (statistics.median(ratios), min(ratios), max(ratios))
    if args.old_kernels:
        ratios = [a / b for a, b in zip(medians["ours"], medians["old"], strict=True)]
        result["ours/old"] = (statistics.median(ratios), min(ratios), max(ratios))
    if args.profile:
        from edge_infer.engine.runtime import Engine

        by_op: dict[str, float] = defaultdict(float)
        for layer in Engine.load(str(engine)).profile_layers(feeds, iterations=args.runs):
            by_op[f"{layer['op']}:{layer['tactic'] or '-'}"] += layer["time_us"]
        result["by_op_us"] = dict(sorted(by_op.items(), key=lambda kv: -kv[1]))
    return result


def alternate(
    sides: dict[str, Callable[[], Any]], args: argparse.Namespace
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """``args.rounds`` rounds, each running every side ``args.runs`` times in a rotating
    order (by the thread's CPU time with ``args.cpu_time``, else the wall clock): each
    side's per-round medians and all its runs, in ms."""
    medians: dict[str, list[float]] = defaultdict(list)
    every: dict[str, list[float]] = defaultdict(list)
    names = list(sides)
    clock = time.thread_time if getattr(args, "cpu_time", False) else time.perf_counter
    for r in range(args.rounds):
        for side in names[r % len(names) :] + names[: r % len(names)]:
            samples = []
            for _ in range(args.runs):
                t0 = clock()
                sides[side]()
                samples.append((clock() - t0) * 1e3)
            medians[side].append(statistics.median(samples))
            every[side].extend(samples)
            time.sleep(0.05)  # onnxruntime's threads stop spinning before the next side
    return medians, every


def timing_arguments(p: argparse.ArgumentParser, rounds: int) -> None:
    """--rounds, --runs and --cpu-time, as :func:`alternate` reads them."""
    p.add_argument("--rounds", type=int, default=rounds)
    p.add_argument("--runs", type=int, default=10, help="runs per round and side")
    p.add_argument(
        "--cpu-time", action="store_true", help="the thread's CPU time (needs --threads 1)"
    )


def check_timing_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.cpu_time and args.threads != 1:
        p.error("--cpu-time needs --threads 1 (the other threads' work is not counted)")


def row_arguments(p: argparse.ArgumentParser, rows: str) -> None:
    """The arguments :func:`_build` reads (and the rows to run, ``rows`` by default): shared
    by the INT8 benches that build their engines and models as this one does."""
    p.add_argument("--rows", nargs="+", default=[rows])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calib-frames", type=int, default=32)
    p.add_argument("--calibrator", choices=["minmax", "entropy"], default="minmax")
    p.add_argument("--rebuild", action="store_true", help="rebuild our engine")
    p.add_argument("--work", required=True, help="folder for models, engines, timing caches")


def work_folder(args: argparse.Namespace) -> Path:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    return work


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    row_arguments(p, "resnet50-b1")
    timing_arguments(p, rounds=10)
    p.add_argument("--old-kernels", default=None, help="kernels folder of the 'old' side")
    p.add_argument("--profile", action="store_true")
    args = p.parse_args(argv)
    check_timing_arguments(p, args)
    work = work_folder(args)
    for row in args.rows:
        r = bench_row(row, work, args)
        ms = ", ".join(f"{s} {v:.2f} ms" for s, v in r["ms"].items())
        ratios = ", ".join(
            f"{k} {v[0]:.3f} ({v[1]:.3f}-{v[2]:.3f})" for k, v in r.items() if "/" in k
        )
        print(f"{row}: {ms}; {ratios}", flush=True)
        for op, us in list(r.get("by_op_us", {}).items())[:8]:
            print(f"    {op:40s} {us:8.0f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
