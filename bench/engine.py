"""Engine benchmark: edge_infer vs onnxruntime (CPU), side by side, written to files.

For each model and batch size: build the engine (timed, auto-tuning included, then rebuilt
with the warm timing cache), then time ours and onnxruntime in alternating fresh processes
(``edge_infer.engine.benchmark.compare``) and record medians of per-process medians, the
ratio, and the max output difference. Results: ``bench/results/engine.json`` and
``bench/results/engine.md``.

Run (BLAS unthrottled; see BENCHMARKS.md):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/engine.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

import edge_infer
from edge_infer.engine.benchmark import compare
from edge_infer.zoo import build_model

CONFIGS = {
    "yolov8n-320-b1": ("yolov8n", {"imgsz": 320, "fold_bn": True}, "images", (3, 320, 320), 1),
    "yolov8n-640-b1": ("yolov8n", {"imgsz": 640, "fold_bn": True}, "images", (3, 640, 640), 1),
    "yolov8n-320-b8": ("yolov8n", {"imgsz": 320, "fold_bn": True}, "images", (3, 320, 320), 8),
    "resnet50-b1": ("resnet50", {}, "input", (3, 224, 224), 1),
    "resnet50-b8": ("resnet50", {}, "input", (3, 224, 224), 8),
    "mobilenetv2-b1": ("mobilenetv2", {}, "input", (3, 224, 224), 1),
    "mobilenetv2-b8": ("mobilenetv2", {}, "input", (3, 224, 224), 8),
    # the zoo's CRNN recognizer (dynamic width; 2 bidirectional LSTMs of 128) at two widths
    "crnn-w128-b1": ("crnn", {"width": None}, "image", (3, 32, 128), 1),
    "crnn-w128-b8": ("crnn", {"width": None}, "image", (3, 32, 128), 8),
    "crnn-w256-b1": ("crnn", {"width": None}, "image", (3, 32, 256), 1),
    "crnn-w256-b8": ("crnn", {"width": None}, "image", (3, 32, 256), 8),
}


def run_config(name: str, work: Path, args: argparse.Namespace) -> dict:
    family, kw, input_name, chw, batch = CONFIGS[name]
    model = build_model(family, batch=None, **kw)
    onnx_path = work / f"{name}.onnx"
    onnx.save(model, onnx_path)
    engine_path = work / f"{name}.engine"
    cache = work / f"{name}.timing.json"
    shapes = {input_name: (batch, *chw)}
    t0 = time.perf_counter()
    edge_infer.build(str(onnx_path), str(engine_path), shapes=shapes, timing_cache=str(cache))
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    edge_infer.build(str(onnx_path), str(engine_path), shapes=shapes, timing_cache=str(cache))
    rebuild_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    feeds = {input_name: rng.random((batch, *chw), dtype=np.float32)}
    report = compare(
        str(engine_path),
        str(onnx_path),
        feeds,
        batch=batch,
        threads=args.threads,
        iterations=args.iterations,
        warmup=5,
        processes=args.processes,
    )
    report["build_s"], report["rebuild_warm_cache_s"] = build_s, rebuild_s
    return report


def markdown(results: dict[str, dict]) -> str:
    lines = [
        "| config | edge_infer median ms | onnxruntime median ms | ratio (lower is "
        "better) | edge_infer items/s | ORT items/s | max rel diff | build s | "
        "rebuild s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        ours, ort = r["edge_infer"], r["onnxruntime"]
        diff = max(r["max_rel_diff"].values())
        lines.append(
            f"| {name} | {ours['median_ms']:.2f} | {ort['median_ms']:.2f} | "
            f"{r['ratio']:.2f}× | {ours['throughput']:.1f} | {ort['throughput']:.1f} | "
            f"{diff:.1e} | {r['build_s']:.1f} | {r['rebuild_warm_cache_s']:.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            print(f"== {name}", file=sys.stderr, flush=True)
            results[name] = run_config(name, Path(tmp), args)
            print(markdown({name: results[name]}).splitlines()[-1], flush=True)
    (out / "engine.json").write_text(json.dumps(results, indent=2))
    (out / "engine.md").write_text(markdown(results) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
