"""A/B latency of two source trees of edge_infer (e.g. before/after a pass), CPU, one venv.

Each tree builds its own engine from the same ONNX file in its own process
(``PYTHONPATH=TREE``); the "after" tree starts from a copy of the "before" tree's timing
cache, so layers both trees share get the same tactic and only what changed is tuned anew.
Then each tree's engine is timed by that tree's own benchmark worker
(``python -m edge_infer.engine.benchmark``) in alternating fresh processes, ``--rounds``
each, and the medians of per-process medians and their ratio are reported with the load
average and the BLAS libraries in use.

Run (BLAS unthrottled):
    git worktree add /tmp/ab_before a038913
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/ab_trees.py \
        --before /tmp/ab_before --after . --models yolov8n-320 demo-det
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

#: name -> (how to get the ONNX file, input name, input shape)
MODELS: dict[str, tuple[str, str, tuple[int, ...]]] = {
    "yolov8n-320": ("zoo:yolov8n:320", "images", (1, 3, 320, 320)),
    "yolov8n-640": ("zoo:yolov8n:640", "images", (1, 3, 640, 640)),
    # dynamic H/W: built at 416x256 (W x H), the cameras' input
    "demo-det": (str(ROOT / "models" / "edge_demo_det.onnx"), "images", (1, 3, 256, 416)),
}

_BUILD = """
import sys, edge_infer
onnx_path, engine_path, cache, name, shape = sys.argv[1:6]
edge_infer.build(onnx_path, engine_path, shapes={name: tuple(int(s) for s in shape.split(","))},
                 timing_cache=cache)
print(edge_infer.__file__)
"""


def _tree_env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    return env


def _onnx_file(source: str, work: Path) -> Path:
    if not source.startswith("zoo:"):
        return Path(source)
    import onnx

    from edge_infer.zoo import build_model

    _, family, size = source.split(":")
    path = work / f"{family}-{size}.onnx"
    onnx.save(build_model(family, batch=None, imgsz=int(size), fold_bn=True), path)
    return path


def _build(tree: Path, onnx_path: Path, engine: Path, cache: Path, name: str, shape: tuple) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", _BUILD, str(onnx_path), str(engine), str(cache), name,
         ",".join(map(str, shape))],
        env=_tree_env(tree), cwd=tree, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"build in {tree} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


def _time(tree: Path, spec: dict[str, Any], work: Path) -> dict[str, Any]:
    path = work / "spec.json"
    path.write_text(json.dumps(spec))
    proc = subprocess.run(
        [sys.executable, "-m", "edge_infer.engine.benchmark", str(path)],
        env=_tree_env(tree), cwd=tree, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"timing in {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ab_model(name: str, trees: dict[str, Path], work: Path, args: argparse.Namespace) -> dict:
    source, input_name, shape = MODELS[name]
    onnx_path = _onnx_file(source, work)
    rng = np.random.default_rng(0)
    inputs = work / f"{name}-inputs.npz"
    np.savez(inputs, **{input_name: rng.random(shape, dtype=np.float32)})
    engines, imported, cache = {}, {}, work / f"{name}.timing.json"
    for side, tree in trees.items():  # "before" first: "after" reuses its timing cache
        engines[side] = work / f"{name}-{side}.engine"
        side_cache = work / f"{name}-{side}.timing.json"
        if cache.exists():
            shutil.copy(cache, side_cache)
        imported[side] = _build(tree, onnx_path, engines[side], side_cache, input_name, shape)
        shutil.copy(side_cache, cache)
    runs: dict[str, list[float]] = {side: [] for side in trees}
    outputs: dict[str, Path] = {}
    env: dict[str, Any] = {}
    for r in range(args.rounds):
        for side, tree in trees.items():
            outputs[side] = work / f"{name}-{side}-out.npz"
            spec = {
                "kind": "edge_infer",
                "path": str(engines[side]),
                "inputs": str(inputs),
                "outputs": str(outputs[side]),
                "threads": args.threads,
                "batch": shape[0],
                "iterations": args.iterations,
                "warmup": args.warmup,
            }
            result = _time(tree, spec, work)
            runs[side].append(result["stats"]["median_ms"])
            env = result["env"]
        print(f"  {name} round {r}: " + ", ".join(f"{s} {v[-1]:.2f} ms" for s, v in runs.items()),
              file=sys.stderr, flush=True)  # fmt: skip
    with np.load(outputs["before"]) as a, np.load(outputs["after"]) as b:
        diff = {k: float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a.files}
    medians = {side: statistics.median(v) for side, v in runs.items()}
    return {
        "per_process_medians_ms": runs,
        "median_ms": medians,
        "ratio_after_over_before": medians["after"] / medians["before"],
        "imported_from": imported,
        "max_abs_diff_outputs": diff,
        "env": env,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="source tree (e.g. a git worktree)")
    p.add_argument("--after", default=str(ROOT), help="source tree (default: this one)")
    p.add_argument("--models", nargs="+", default=["yolov8n-320", "demo-det"], choices=MODELS)
    p.add_argument("--rounds", type=int, default=10, help="processes per tree")
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", help="JSON results file")
    args = p.parse_args()
    trees = {"before": Path(args.before).resolve(), "after": Path(args.after).resolve()}
    results: dict[str, Any] = {"load_average_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="ab-trees-") as tmp:
        for name in args.models:
            results[name] = ab_model(name, trees, Path(tmp), args)
            m = results[name]["median_ms"]
            print(f"{name}: before {m['before']:.2f} ms, after {m['after']:.2f} ms, "
                  f"ratio {results[name]['ratio_after_over_before']:.3f}, "
                  f"load {os.getloadavg()}", flush=True)  # fmt: skip
    results["load_average_end"] = os.getloadavg()
    text = json.dumps(results, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
