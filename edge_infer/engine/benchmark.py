"""Latency measurement for engines and for onnxruntime, the reference system.

Two engines timed in one process disturb each other (onnxruntime's threads keep spinning
after a run), and at 2 threads each process settles into a fast or a slow mode, so
:func:`compare` runs each side in several fresh processes, alternating ours and theirs, and
reports the median of per-process medians. A worker process is this module run as a script:
``python -m edge_infer.engine.benchmark WORKER.json``.

Those modes are phases of the shared host (tens of seconds; every layer of ours slower
alike, onnxruntime's processes too), so a process's mode is where it fell in time.
:func:`compare_paired` keeps a resident process a side (``--serve``; a few pairs of them one
after another) and has them take turns of a few runs: both sides' figures then come from the
same phases, and the per-round ratio cancels the phase.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
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


def _side(spec: Mapping[str, Any]) -> tuple[Callable[[], dict[str, Any]], dict[str, Any]]:
    """One side's inference on the spec's inputs (our engine or onnxruntime), loaded in this
    process, and what runs it (threads, BLAS)."""
    env = set_threads(int(spec["threads"]))
    feeds = _load_feeds(spec["inputs"])
    if spec["kind"] == "edge_infer":
        from edge_infer.engine.backends import get_backend
        from edge_infer.engine.runtime import Engine

        engine = Engine.load(spec["path"])
        # the backend shares the cores (the CPU's pool does the threading; BLAS gets 1)
        get_backend(engine.backend_name).configure(cores=int(spec["threads"]))
        ctx = engine.create_context()
        return (lambda: ctx.execute(feeds)), env
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = int(spec["threads"])
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(spec["path"], options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return (lambda: dict(zip(names, session.run(None, feeds), strict=True))), env


def _worker(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Run in a fresh process: time one side, return stats and outputs' location."""
    run, env = _side(spec)
    outputs = run()
    iterations, warmup = int(spec["iterations"]), int(spec["warmup"])
    stats = time_callable(run, iterations=iterations, warmup=warmup, batch=int(spec["batch"]))
    np.savez(spec["outputs"], **outputs)
    return {"stats": asdict(stats), "env": env}


def _serve(spec: Mapping[str, Any]) -> None:
    """Run in a resident process for :func:`compare_paired`: load the side and warm it up,
    print ``{"ready": ...}``; then per line on stdin ``run N`` times N inferences and prints
    their seconds as a JSON list, ``quit`` saves the outputs and ends."""
    run, env = _side(spec)
    outputs = run()
    for _ in range(int(spec["warmup"])):
        run()
    print(json.dumps({"ready": True, "env": env}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["run"]:
            samples = []
            for _ in range(int(words[1])):
                t0 = time.perf_counter()
                run()
                samples.append(time.perf_counter() - t0)
            print(json.dumps(samples), flush=True)
        elif words[:1] == ["quit"]:
            break
    np.savez(spec["outputs"], **outputs)


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
                spec = _spec(
                    kind, path, work, f"{kind}-{p}.npz", threads, warmup,
                    batch=batch, iterations=iterations,
                )  # fmt: skip
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
            report["ratio"] = report["edge_infer"]["median_ms"] / report["onnxruntime"]["median_ms"]
            report.update(_output_diffs(work / "edge_infer-0.npz", work / "onnxruntime-0.npz"))
        return report


def _spec(
    kind: str, path: str, work: Path, outputs: str, threads: int, warmup: int, **more: Any
) -> dict[str, Any]:
    """A worker's spec: what to run (kind, path) on the work folder's inputs, where its outputs
    go, its threads and warm-up runs, and any more fields (``more``)."""
    return {
        "kind": kind,
        "path": str(path),
        "inputs": str(work / "inputs.npz"),
        "outputs": str(work / outputs),
        "threads": threads,
        "warmup": warmup,
        **more,
    }


def _output_diffs(ours_path: Path, theirs_path: Path) -> dict[str, dict[str, float]]:
    """Each output both sides have: the largest absolute difference, and it over the largest
    magnitude of onnxruntime's."""
    ours, theirs = _load_feeds(str(ours_path)), _load_feeds(str(theirs_path))
    diffs = {
        k: float(np.max(np.abs(ours[k].astype(np.float64) - theirs[k])))
        for k in ours
        if k in theirs
    }
    rel = {k: d / max(float(np.max(np.abs(theirs[k]))), 1e-12) for k, d in diffs.items()}
    return {"max_abs_diff": diffs, "max_rel_diff": rel}


#: seconds to wait after each side's turn in :func:`compare_paired`: onnxruntime's pool spins
#: a while after a run, and its threads would take our cores (MobileNetV2 b8, 2 threads: 40 ms
#: of its CPU time within 50 ms of its turn's end, none in the 500 ms after)
PAIRED_PAUSE_S = 0.1

#: a round of :func:`compare_paired` is "quiet" where neither side's turn took more than this
#: many times its own 10th-percentile turn: the 2-vCPU hosts' slow phases (on the Zen 4 VM the
#: two vCPUs then share one core's vector units for seconds, our two threads running at half
#: speed and onnxruntime's at two thirds) push both sides' turns well past it
QUIET_TURN = 1.2


def quiet_rounds(first: Sequence[float], second: Sequence[float]) -> list[int]:
    """The rounds (indices) in which neither side's turn median exceeded QUIET_TURN times
    its own 10th percentile over all rounds."""
    lim = [QUIET_TURN * float(np.percentile(turns, 10)) for turns in (first, second)]
    return [
        k for k, (a, b) in enumerate(zip(first, second, strict=True)) if a <= lim[0] and b <= lim[1]
    ]


class _Resident:
    """One side's resident worker process (this module with ``--serve``); its stderr goes to
    a file in the work folder, shown when it fails."""

    def __init__(self, spec: dict[str, Any], work: Path) -> None:
        path = work / f"{spec['role']}-serve.json"
        path.write_text(json.dumps(spec))
        self._err = (work / f"{spec['role']}.stderr").open("w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_infer.engine.benchmark", "--serve", str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
        )
        self.env = self._reply()["env"]

    def _reply(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self._err.seek(0)
            raise RuntimeError(f"benchmark worker failed:\n{self._err.read()[-3000:]}")
        return json.loads(line)

    def run(self, n: int) -> list[float]:
        """Seconds of each of ``n`` inferences, timed in the worker."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"run {n}\n")
        self.proc.stdin.flush()
        return [float(t) for t in self._reply()]

    def close(self) -> None:
        """``quit`` (the worker saves its outputs) and wait; kill one that does not end."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=60)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._err.close()


#: what a side of :func:`compare_paired` runs: (kind, path), kind "edge_infer" (an engine
#: file) or "onnxruntime" (an ONNX model)
Side = tuple[str, str]


def compare_paired(
    first: Side,
    second: Side,
    feeds: Mapping[str, np.ndarray],
    *,
    batch: int,
    threads: int,
    rounds: int,
    runs: int,
    warmup: int,
    pairs: int = 1,
) -> dict[str, Any]:
    """Two sides (our engine against onnxruntime, or two engines of ours) in resident
    processes, taking turns: per round each runs ``runs`` inferences (the order alternating
    round by round, a pause after each turn), so both see the same phases of a shared host.
    ``pairs`` pairs of processes one after another share the rounds (a process can hold a
    slow mode of its own for its life). Reports each side's statistics over all its runs
    (``first``, ``second``, with their kind and path), the median (10th, 90th percentile) of
    the per-round ratios of the sides' medians, first / second, and each pair's median: the
    host's slow phases of seconds, which can put a whole fresh process of :func:`compare` in a
    mode 1.5x slower, then cancel out in the ratio where they slow both sides alike. Where
    they do not, ``quiet_ratio`` is the median over the rounds in which neither side was
    slowed (:func:`quiet_rounds`; ``quiet_rounds`` counts them), beside the ratio over all."""
    if rounds < 1 or runs < 1:
        raise ValueError(
            f"compare_paired: rounds and runs must be at least 1 (got {rounds}, {runs})"
        )
    pairs = max(1, min(pairs, rounds))  # every pair takes at least one round
    with tempfile.TemporaryDirectory(prefix="edge-infer-bench-") as tmp:
        work = Path(tmp)
        np.savez(work / "inputs.npz", **feeds)
        samples: dict[str, list[float]] = {"first": [], "second": []}
        ratios: list[float] = []
        pair_ratios = []
        turns: dict[str, list[float]] = {"first": [], "second": []}  # each round's medians
        env: dict[str, Any] = {}
        for pair in range(pairs):
            share = [k for k in range(rounds) if k % pairs == pair]
            sides: dict[str, _Resident] = {}
            try:
                for role, (kind, path) in (("first", first), ("second", second)):
                    outputs = f"{role}.npz"
                    sides[role] = _Resident(
                        _spec(kind, path, work, outputs, threads, warmup, role=role), work
                    )
                env = sides["first"].env
                mine = []
                for r in share:
                    order = list(sides) if r % 2 == 0 else list(sides)[::-1]
                    medians = {}
                    for role in order:
                        seconds = sides[role].run(runs)
                        samples[role] += seconds
                        medians[role] = statistics.median(seconds)
                        time.sleep(PAIRED_PAUSE_S)
                    mine.append(medians["first"] / medians["second"])
                    for role in turns:
                        turns[role].append(medians[role])
            finally:
                for side in sides.values():
                    side.close()
            ratios += mine
            if mine:
                pair_ratios.append(statistics.median(mine))
        p10, p90 = np.percentile(ratios, [10, 90])
        quiet = quiet_rounds(turns["first"], turns["second"])
        report: dict[str, Any] = {
            "batch": batch,
            "threads": threads,
            "rounds": rounds,
            "runs": runs,
            "pairs": pairs,
            "env": env,
            "ratio": statistics.median(ratios),
            "ratio_p10": float(p10),
            "ratio_p90": float(p90),
            "round_ratios": ratios,
            "pair_ratios": pair_ratios,
            "round_medians_ms": {role: [t * 1e3 for t in v] for role, v in turns.items()},
            "quiet_rounds": len(quiet),
            "quiet_ratio": statistics.median(ratios[k] for k in quiet) if quiet else None,
        }
        for role, (kind, path) in (("first", first), ("second", second)):
            report[role] = {
                "kind": kind,
                "path": str(path),
                **asdict(Stats.of(samples[role], batch)),
            }
        report.update(_output_diffs(work / "first.npz", work / "second.npz"))
        return report


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        _serve(json.loads(Path(sys.argv[2]).read_text()))
    else:
        print(json.dumps(_worker(json.loads(Path(sys.argv[1]).read_text()))))
