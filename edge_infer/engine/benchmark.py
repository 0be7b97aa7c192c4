"""Latency measurement for engines and for onnxruntime, the reference system.

Two engines timed in one process disturb each other (onnxruntime's threads keep spinning
after a run), and at 2 threads each process settles into a fast or a slow mode, so
:func:`compare` runs each side in several fresh processes, alternating ours and theirs, and
reports the median of per-process medians. A worker process is this module run as a script:
``python -m edge_infer.engine.benchmark WORKER.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Stats:
    """Latency statistics of one series of timed runs (milliseconds)."""

    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    iterations: int
    batch: int
    throughput: float  # items per second at the median latency
    per_process_medians_ms: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, seconds: list[float], batch: int) -> Stats:
        ms = np.asarray(seconds) * 1e3
        median = float(np.median(ms))
        return cls(
            median,
            float(np.percentile(ms, 90)),
            float(np.percentile(ms, 99)),
            float(ms.mean()),
            len(ms),
            batch,
            batch / median * 1e3,
        )


def set_threads(threads: int) -> dict[str, Any]:
    """Limit BLAS/OpenMP threads; returns what runs (BLAS kernel included) for the record."""
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(limits=threads)
    info = [
        {
            k: v
            for k, v in lib.items()
            if k in ("internal_api", "version", "num_threads", "architecture", "threading_layer")
        }
        for lib in threadpool_info()
    ]
    return {
        "threads": threads,
        "libraries": info,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
    }


def time_callable(fn: Callable[[], Any], *, iterations: int, warmup: int, batch: int) -> Stats:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return Stats.of(samples, batch)


def _load_feeds(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _worker(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Run in a fresh process: time one side, return stats and outputs' location."""
    env = set_threads(int(spec["threads"]))
    feeds = _load_feeds(spec["inputs"])
    batch = int(spec["batch"])
    if spec["kind"] == "edge_infer":
        from edge_infer.engine.backends import get_backend
        from edge_infer.engine.runtime import Engine

        engine = Engine.load(spec["path"])
        # the backend shares the cores (the CPU's pool does the threading; BLAS gets 1)
        get_backend(engine.backend_name).configure(cores=int(spec["threads"]))
        ctx = engine.create_context()
        run = lambda: ctx.execute(feeds)  # noqa: E731
    else:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = int(spec["threads"])
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(spec["path"], options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        run = lambda: dict(zip(names, session.run(None, feeds), strict=True))  # noqa: E731
    outputs = run()
    stats = time_callable(
        run, iterations=int(spec["iterations"]), warmup=int(spec["warmup"]), batch=batch
    )
    np.savez(spec["outputs"], **outputs)
    return {"stats": asdict(stats), "env": env}


def run_in_subprocess(spec: dict[str, Any]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
        path = f.name
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "edge_infer.engine.benchmark", path],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark worker failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        os.unlink(path)


#: per-process medians spread beyond this (max / min - 1) make a figure suspect
SPREAD_WARNING = 0.30


def compare(
    engine_path: str,
    onnx_path: str | None,
    feeds: Mapping[str, np.ndarray],
    *,
    batch: int,
    threads: int,
    iterations: int,
    warmup: int,
    processes: int,
) -> dict[str, Any]:
    """Time our engine (and onnxruntime) in ``processes`` alternating fresh processes each;
    the inputs and outputs go to a temporary folder that is removed however it ends."""
    with tempfile.TemporaryDirectory(prefix="edge-infer-bench-") as tmp:
        work = Path(tmp)
        np.savez(work / "inputs.npz", **feeds)
        sides = [("edge_infer", engine_path)] + ([("onnxruntime", onnx_path)] if onnx_path else [])
        results: dict[str, list[dict[str, Any]]] = {k: [] for k, _ in sides}
        for p in range(processes):
            for kind, path in sides:
                spec = {
                    "kind": kind,
                    "path": str(path),
                    "inputs": str(work / "inputs.npz"),
                    "outputs": str(work / f"{kind}-{p}.npz"),
                    "threads": threads,
                    "batch": batch,
                    "iterations": iterations,
                    "warmup": warmup,
                }
                results[kind].append(run_in_subprocess(spec))
        report: dict[str, Any] = {
            "batch": batch,
            "threads": threads,
            "processes": processes,
            "iterations": iterations,
            "env": results["edge_infer"][0]["env"],
        }
        for kind, runs in results.items():
            medians = [r["stats"]["median_ms"] for r in runs]
            merged = dict(runs[int(np.argsort(medians)[len(medians) // 2])]["stats"])
            merged["median_ms"] = statistics.median(medians)
            merged["throughput"] = batch / merged["median_ms"] * 1e3
            merged["per_process_medians_ms"] = medians
            report[kind] = merged
            spread = max(medians) / min(medians) - 1.0 if min(medians) > 0 else 0.0
            if spread > SPREAD_WARNING:
                report.setdefault("warnings", []).append(
                    f"{kind}: per-process medians spread {spread:.0%} (over "
                    f"{SPREAD_WARNING:.0%}): the machine was busy or its clock changed; "
                    "rerun on a quiet machine with more --processes"
                )
        if onnx_path:
            ours = _load_feeds(str(work / "edge_infer-0.npz"))
            theirs = _load_feeds(str(work / "onnxruntime-0.npz"))
            report["ratio"] = report["edge_infer"]["median_ms"] / report["onnxruntime"]["median_ms"]
            report["max_abs_diff"] = {
                k: float(np.max(np.abs(ours[k].astype(np.float64) - theirs[k])))
                for k in ours
                if k in theirs
            }
            report["max_rel_diff"] = {
                k: report["max_abs_diff"][k] / max(float(np.max(np.abs(theirs[k]))), 1e-12)
                for k in report["max_abs_diff"]
            }
        return report


if __name__ == "__main__":
    spec = json.loads(Path(sys.argv[1]).read_text())
    print(json.dumps(_worker(spec)))
