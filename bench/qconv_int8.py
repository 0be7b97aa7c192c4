"""Our INT8 engine against our FP32 engine, in one process, alternating (issue 18 item 3).

Both engines of a model are built here (INT8 calibrated on synthetic camera frames, as
``bench/engine_table.py`` does) and timed in turns: each round runs FP32 then INT8 (then
the other order) ``--runs`` times, and the ratio INT8 / FP32 of each round's medians is
kept; the median of those ratios is robust to other jobs loading the machine (report it
"under load"). ``--profile`` adds the INT8 engine's layers by time and the share of each op.

Run (2 threads, BLAS unthrottled):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/qconv_int8.py \
        --models yolov8n-320 mobilenetv2 --profile
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.engine_table import MODELS, _load_model, synth_frames


def _samples_ms(ctx, feeds: dict, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        ctx.execute(feeds)
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def bench_model(name: str, args: argparse.Namespace, work: Path) -> dict:
    import edge_infer
    from edge_infer.engine.backends import get_backend
    from edge_infer.engine.benchmark import set_threads
    from edge_infer.engine.calibration import calibrate
    from edge_infer.engine.options import BuildOptions
    from edge_infer.engine.runtime import Engine

    set_threads(args.threads)
    model = MODELS[name]
    fp32 = _load_model(model, work)
    shapes = {model.input_name: (args.batch, *model.chw)}
    cal = calibrate(
        str(fp32),
        synth_frames(args.calib_frames, model.chw, "calib"),
        calibrator="percentile",
        shapes={model.input_name: (1, *model.chw)},
    )
    engines = {}
    for prec in ("fp32", "int8"):
        extra = {"calibration": cal.cache} if prec == "int8" else {}
        path = work / f"{name}-{prec}.engine"
        opts = BuildOptions(
            shapes=shapes,
            timing_cache=str(work / "timing.json"),
            precision=prec,
            backend_options={"threads": args.threads},
            **extra,
        )
        edge_infer.build(str(fp32), str(path), options=opts)
        engines[prec] = Engine.load(str(path))
    get_backend("cpu").configure(cores=args.threads)
    frame = synth_frames(args.batch, model.chw, "val")
    feeds = {model.input_name: np.stack(frame)}
    ctxs = {p: e.create_context() for p, e in engines.items()}
    for ctx in ctxs.values():
        for _ in range(3):
            ctx.execute(feeds)
    rounds: dict[str, list[float]] = defaultdict(list)
    every: dict[str, list[float]] = defaultdict(list)
    for r in range(args.rounds):
        order = ("fp32", "int8") if r % 2 == 0 else ("int8", "fp32")
        for prec in order:
            samples = _samples_ms(ctxs[prec], feeds, args.runs)
            rounds[prec].append(statistics.median(samples))
            every[prec].extend(samples)
    ratios = [i / f for i, f in zip(rounds["int8"], rounds["fp32"], strict=True)]
    result = {
        "model": name,
        "batch": args.batch,
        "fp32_ms": statistics.median(rounds["fp32"]),
        "int8_ms": statistics.median(rounds["int8"]),
        "int8_over_fp32": statistics.median(ratios),
        "ratio_spread": (min(ratios), max(ratios)),
        # the least disturbed run of each side: the nearest to a quiet machine's times
        "fp32_min_ms": min(every["fp32"]),
        "int8_min_ms": min(every["int8"]),
    }
    if args.profile:
        graph = engines["int8"].graph(args.batch)
        tactics = {n.name: n.meta.get("tactic") for n in graph.nodes}
        layers = engines["int8"].profile_layers(feeds, iterations=args.runs)
        by_op: dict[str, float] = defaultdict(float)
        for layer in layers:
            key = f"{layer['op']}:{tactics.get(layer['name']) or '-'}"
            by_op[key] += layer["time_us"]
        result["int8_by_op_us"] = dict(sorted(by_op.items(), key=lambda kv: -kv[1]))
        fp32_ops: dict[str, float] = defaultdict(float)
        for layer in engines["fp32"].profile_layers(feeds, iterations=args.runs):
            fp32_ops[f"{layer['op']}:{layer['tactic'] or '-'}"] += layer["time_us"]
        result["fp32_by_op_us"] = dict(sorted(fp32_ops.items(), key=lambda kv: -kv[1]))
        result["int8_top_layers"] = [
            (layer["name"], layer["op"], layer["tactic"], round(layer["time_us"], 1))
            for layer in layers[: args.top]
        ]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["yolov8n-320", "mobilenetv2"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calib-frames", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=10, help="runs per round and side")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--work", default=None, help="folder for models, engines, timing cache")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in args.models:
            result = bench_model(name, args, work)
            print(
                f"{name} b{args.batch}: FP32 {result['fp32_ms']:.2f} ms, INT8 "
                f"{result['int8_ms']:.2f} ms, INT8/FP32 {result['int8_over_fp32']:.3f} "
                f"(rounds {result['ratio_spread'][0]:.3f}-{result['ratio_spread'][1]:.3f}); "
                f"fastest runs: FP32 {result['fp32_min_ms']:.2f} ms, INT8 "
                f"{result['int8_min_ms']:.2f} ms, ratio "
                f"{result['int8_min_ms'] / result['fp32_min_ms']:.3f}"
            )
            for key in ("int8_by_op_us", "fp32_by_op_us", "int8_top_layers"):
                if key in result:
                    print(f"  {key}: {result[key]}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
