"""`edge-infer bench ENGINE [--batch N] [--iterations N] [--per-layer] [--json]
[--compare-onnxruntime MODEL.onnx]`: latency, throughput, per-layer profile, ratio."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from edge_infer.commands.device_option import add_device_argument, apply_device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure an engine's latency (optionally side by side with onnxruntime)",
        description="Warm-up-excluded median/p90/p99 latency and throughput, each side timed "
        "in fresh processes (alternating ours and onnxruntime), median of per-process medians.",
    )
    p.add_argument("engine", help="engine file")
    p.add_argument("--batch", type=int, help="batch size (default: the profile's opt batch)")
    p.add_argument("--iterations", type=int, default=50, help="timed runs per process")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    p.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="BLAS / onnxruntime intra-op threads (default: all cores)",
    )
    p.add_argument(
        "--processes",
        type=int,
        help="processes per side (default 3 with --compare-onnxruntime, else 1)",
    )
    p.add_argument("--per-layer", action="store_true", help="also profile each layer")
    p.add_argument(
        "--compare-onnxruntime",
        metavar="MODEL.onnx",
        help="time onnxruntime (ORT_ENABLE_ALL, same threads) on the same inputs",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--seed", type=int, default=0)
    add_device_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_infer.commands.infer import random_inputs
    from edge_infer.engine import Engine, compare_latency, configure_backend

    apply_device(args)
    engine = Engine.load(args.engine)
    batch = args.batch or engine.profile.opt_batch
    feeds = random_inputs(engine, batch, args.seed)
    if engine.backend_name == "cuda":  # in this process: GPU time from events, host time
        from edge_infer.cuda.bench import bench_engine, print_report

        report = bench_engine(engine, feeds, iterations=args.iterations, warmup=args.warmup)
        print(json.dumps(report, indent=2) if args.json else print_report(report))
        return 0
    processes = args.processes or (3 if args.compare_onnxruntime else 1)
    report = compare_latency(
        args.engine,
        args.compare_onnxruntime,
        feeds,
        batch=batch,
        threads=args.threads,
        iterations=args.iterations,
        warmup=args.warmup,
        processes=processes,
    )
    if args.per_layer:  # the backend's own per-layer profile, at the width of the run
        configure_backend(engine.backend_name, cores=args.threads)
        report["layers"] = engine.profile_layers(feeds, iterations=10)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _print(report, args)
    configure_backend(engine.backend_name, cores=args.threads)  # as the timed processes ran
    for note in engine.tuning_notes():
        print(
            f"  note: {note}; for figures at this setting, rebuild the engine with the "
            f"same setting (e.g. `edge-infer build --threads {args.threads}`)"
        )
    return 0


def _print(report: dict[str, Any], args: argparse.Namespace) -> None:
    libs = report["env"]["libraries"]
    blas = (
        ", ".join(
            f"{x.get('internal_api')} {x.get('version')} ({x.get('architecture')})" for x in libs
        )
        or "unknown"
    )
    print(
        f"batch {report['batch']}, {report['threads']} threads, {report['processes']} "
        f"process(es) × {report['iterations']} iterations; BLAS: {blas}"
    )
    for kind in ("edge_infer", "onnxruntime"):
        if kind not in report:
            continue
        s = report[kind]
        per = ", ".join(f"{m:.2f}" for m in s["per_process_medians_ms"])
        print(
            f"  {kind:<12} median {s['median_ms']:8.2f} ms  p90 {s['p90_ms']:8.2f}  "
            f"p99 {s['p99_ms']:8.2f}  {s['throughput']:8.1f} items/s  (per process: {per})"
        )
    for warning in report.get("warnings", []):
        print(f"  warning: {warning}")
    if "ratio" in report:
        print(f"  latency ratio edge_infer / onnxruntime: {report['ratio']:.2f}×")
        for name, diff in report["max_abs_diff"].items():
            print(
                f"  output {name}: max abs diff {diff:.3g} "
                f"(relative to output scale {report['max_rel_diff'][name]:.3g})"
            )
    if report.get("layers"):
        total = sum(entry["time_us"] for entry in report["layers"])
        print(f"  per layer (sum {total / 1e3:.2f} ms), slowest first:")
        for entry in report["layers"][:40]:
            members = " + ".join(entry["members"])
            tactic = f" [{entry['tactic']}]" if entry["tactic"] else ""
            print(f"    {entry['time_us'] / 1e3:7.3f} ms {entry['op']:<12} {members}{tactic}")
