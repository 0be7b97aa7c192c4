"""The daemon benchmark's figures: decoding's share of the CPU, host CPU per frame, the
issue-15 targets, and the results files (``bench/daemon.py`` runs the modes)."""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

#: issue 15's targets for the GPU daemon: (key, what, comparison, bound)
TARGETS = (
    ("fps_ratio", "processed fps, GPU daemon / naive GPU loop", ">=", 2.0),
    ("p99_ratio", "p99 latency, GPU daemon / naive GPU loop", "<=", 1.0),
    ("fairness", "fairness (min/max per-camera fps), GPU daemon", ">=", 0.8),
    ("frames_lost_pct", "frames lost (%), GPU daemon, load below capacity", "<=", 1.0),
    ("host_cpu_ratio", "host CPU per processed frame, GPU daemon / CPU daemon", "<=", 0.4),
)
EMULATED = (
    "**EMULATED (--device emulator): every figure below is the CUDA backend's CPU emulator's, "
    "NOT a GPU's. A smoke run of the benchmark; never report these as GPU figures.**"
)


def decode_cores(files: list[Path], seconds: float, fps: float) -> float | None:
    """CPU cores that decoding the cameras alone uses (grab + BGR conversion of every frame,
    one real-time reader thread per camera, as ``bench/capacity.py`` measures it): the part
    of a mode's CPU that is not the pipeline's. None when ``seconds`` is 0."""
    if seconds <= 0:
        return None
    from bench.capacity import decode_cost

    cores, _ = decode_cost(files, seconds, fps, retrieve=True)
    return round(cores, 3)


def host_cpu_ms_per_frame(result: dict[str, Any], decode: float | None) -> float | None:
    """CPU milliseconds per processed frame, decoding excluded."""
    cpu, fps = result.get("cpu_cores"), result.get("fps_total") or 0.0
    if decode is None or cpu is None or not math.isfinite(cpu) or fps <= 0:
        return None
    return round(max(0.0, cpu - decode) * 1e3 / fps, 3)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def targets(by_mode: dict[str, dict[str, Any]], emulated: bool) -> list[dict[str, Any]]:
    """Issue 15's targets with the measured value (None where a mode did not run); on the
    emulator ``met`` is None: its figures say nothing about a GPU."""
    d, n, c = (by_mode.get(m, {}) for m in ("daemon-cuda", "naive-cuda", "daemon-cpu"))
    value = {
        "fps_ratio": _ratio(d.get("fps_total"), n.get("fps_total")),
        "p99_ratio": _ratio(d.get("latency_p99_ms"), n.get("latency_p99_ms")),
        "fairness": d.get("fairness"),
        "frames_lost_pct": d.get("frames_lost_pct"),
        "host_cpu_ratio": _ratio(d.get("host_cpu_ms_per_frame"), c.get("host_cpu_ms_per_frame")),
    }
    out = []
    for key, what, cmp, bound in TARGETS:
        v = value[key]
        met = None if v is None or emulated else (v <= bound if cmp == "<=" else v >= bound)
        out.append({"key": key, "what": what, "target": f"{cmp} {bound:g}", "value": v, "met": met})
    return out


def summarize(
    args: argparse.Namespace, model: Path, decode: float | None, results: list[dict[str, Any]]
) -> dict[str, Any]:
    """One run's record: settings, each mode's figures (host CPU per frame added), and with
    ``--backend cuda`` the comparison and targets."""
    for r in results:
        r["host_cpu_ms_per_frame"] = host_cpu_ms_per_frame(r, decode)
    emulated = args.backend == "cuda" and args.device == "emu"
    run: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cpus": os.cpu_count(),
        "backend": args.backend,
        "device": args.device if args.backend == "cuda" else None,
        "emulated": emulated,
        "quick": args.quick,
        "model": str(model),
        "cameras": args.cameras,
        "width": args.width,
        "height": args.height,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "decode_cores": decode,
        "results": results,
    }
    by_mode = {r["mode"]: r for r in results}
    if args.backend == "cuda":
        run["targets"] = targets(by_mode, emulated)
        run["fps_ratio"] = next(t["value"] for t in run["targets"] if t["key"] == "fps_ratio")
    elif "daemon" in by_mode and "naive" in by_mode:
        run["fps_ratio"] = _ratio(by_mode["daemon"]["fps_total"], by_mode["naive"]["fps_total"])
    return run


COLUMNS = (
    "mode",
    "fps_total",
    "fps_min",
    "fps_max",
    "fairness",
    "latency_p50_ms",
    "latency_p99_ms",
    "frames_lost_pct",
    "drop_rate",
    "cpu_cores",
    "host_cpu_ms_per_frame",
    "rss_mib_end",
    "rss_growth_pct",
)


def markdown(args: argparse.Namespace, run: dict[str, Any]) -> list[str]:
    where = "CPU" if args.backend == "cpu" else f"CUDA backend, device {args.device}"
    lines = [
        f"Daemon benchmark ({where}), {run['time']}, {args.cameras} cameras "
        f"{args.width}x{args.height} @ 15 fps, {args.seconds:.0f} s "
        f"(first {args.warmup:.0f} s ignored), {run['cpus']} CPUs, model "
        f"{Path(run['model']).name}",
        "",
    ]
    if run["emulated"]:
        lines += [EMULATED, ""]
    lines += [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(str(r.get(c, "")) for c in COLUMNS) + " |" for r in run["results"]),
        "",
        f"host CPU per frame: process CPU less decoding ({run['decode_cores']} cores for "
        "grab + BGR conversion of every offered frame, measured alone), per processed frame.",
    ]
    if run.get("fps_ratio") is not None:
        first, second = ("daemon", "naive") if args.backend == "cpu" else ("GPU daemon", "naive")
        lines += ["", f"processed fps, {first} / {second}: {run['fps_ratio']:.2f}x"]
    if "targets" in run:
        lines += ["", "| target (issue 15) | bound | measured | met |", "|---|---|---|---|"]
        for t in run["targets"]:
            met = {True: "yes", False: "**no**", None: "—"}[t["met"]]
            value = "—" if t["value"] is None else f"{t['value']:g}"
            lines.append(f"| {t['what']} | {t['target']} | {value} | {met} |")
    return lines


def write_results(out_dir: Path, args: argparse.Namespace, run: dict[str, Any]) -> list[str]:
    """Append the run to ``STEM.json`` and write ``STEM.md``; returns the markdown lines.
    STEM: ``daemon`` (CPU), ``daemon-cuda`` (a GPU), ``daemon-cuda-emulator``."""
    stem = "daemon"
    if args.backend == "cuda":
        stem = "daemon-cuda-emulator" if run["emulated"] else "daemon-cuda"
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / f"{stem}.json"
    history = json.loads(log.read_text()) if log.is_file() else []
    log.write_text(json.dumps([*history, run], indent=1))
    lines = markdown(args, run)
    (out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return lines
