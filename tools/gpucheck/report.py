"""The results: one JSON file (everything, rewritten after every step) and a markdown summary
laid out as BENCHMARKS.md's GPU section, so a run's figures paste straight in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge_infer.atomic import write_text_atomic

RESULTS_JSON, SUMMARY_MD = "gpu_check.json", "gpu_check.md"

#: issue 14's targets: (key, what, comparison, bound)
TARGETS = (
    ("fp16_b1_latency_vs_torch", "FP16 YOLOv8n-640 batch 1 GPU latency / PyTorch's", "<=", 1.0),
    ("fp16_b8_throughput_vs_torch", "FP16 YOLOv8n-640 batch 8 throughput / PyTorch's", ">=", 1.0),
    ("int8_b8_throughput_vs_fp16", "INT8 YOLOv8n-640 batch 8 throughput / our FP16's", ">=", 1.3),
    ("host_overhead_us", "host overhead per inference with graph replay (µs)", "<=", 30.0),
    ("build_s", "YOLOv8n-640 FP16 build with tuning, 3 profile batch sizes (s)", "<=", 60.0),
)


def _row(
    engine: list[dict[str, Any]], model: str, precision: str, batch: int
) -> dict[str, Any] | None:
    for r in engine:
        if r.get("model") == model and r.get("precision") == precision and r.get("batch") == batch:
            return r
    return None


def _torch(torch: dict[str, Any], model: str, batch: int) -> dict[str, Any] | None:
    for r in torch.get("rows", []):
        if r.get("model") == model and r.get("batch") == batch and "eager" in r:
            return r["eager"]
    return None


def measure_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its measured value, or why it has none."""
    engine, torch = results.get("engine", []), results.get("torch", {})
    y = "yolov8n-640"
    f1, f8, i8 = _row(engine, y, "fp16", 1), _row(engine, y, "fp16", 8), _row(engine, y, "int8", 8)
    t1, t8 = _torch(torch, y, 1), _torch(torch, y, 8)
    value: dict[str, float | None] = dict.fromkeys(t[0] for t in TARGETS)
    why: dict[str, str] = {}
    if f1 and t1 and f1.get("gpu_median_ms"):
        value["fp16_b1_latency_vs_torch"] = f1["gpu_median_ms"] / t1["gpu_median_ms"]
    if f8 and t8 and f8.get("throughput"):
        value["fp16_b8_throughput_vs_torch"] = f8["throughput"] / (8e3 / t8["gpu_median_ms"])
    if f8 and i8 and f8.get("throughput") and i8.get("throughput"):
        value["int8_b8_throughput_vs_fp16"] = i8["throughput"] / f8["throughput"]
    if f1 and f1.get("host_overhead_us") is not None:
        value["host_overhead_us"] = f1["host_overhead_us"]
    if f1 and f1.get("build_s") is not None and f1.get("tuned"):
        value["build_s"] = f1["build_s"]
    if not (t1 or t8):
        why["fp16_b1_latency_vs_torch"] = why["fp16_b8_throughput_vs_torch"] = (
            torch.get("reason") or "no PyTorch figures"
        )
    out = []
    for key, what, cmp, bound in TARGETS:
        v = value[key]
        met = None if v is None else (v <= bound if cmp == "<=" else v >= bound)
        out.append(
            {
                "key": key,
                "what": what,
                "target": f"{cmp} {bound:g}",
                "value": v,
                "met": met,
                "why_none": None
                if v is not None
                else why.get(key, "not measured in this run (see the steps)"),
            }
        )
    return out


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def markdown(results: dict[str, Any]) -> str:
    env = results.get("environment", {})
    lines = [
        "# GPU check results",
        "",
        f"Run {results.get('started', '?')} – {results.get('finished', '?')} "
        f"(`{results.get('command', 'tools/gpu_check.sh')}`).",
        "",
        f"GPU: **{env.get('gpu') or 'none'}** ({env.get('sm') or '?'}), driver "
        f"{env.get('driver') or '?'} (CUDA {env.get('cuda_driver_api') or '?'}), toolkit "
        f"{env.get('nvcc') or '?'} at {env.get('cuda_root') or '?'}; Jetson: "
        f"{(env.get('jetson') or {}).get('l4t') or 'no'}; Python {env.get('python', '?')} on "
        f"{env.get('machine', '?')}, {env.get('nproc', '?')} cores.",
        "",
        *(
            [
                "**Emulated (`--device emu`): every time below is the CPU emulator's, not a "
                "GPU's. Do not report these as GPU figures.**",
                "",
            ]
            if results.get("args", {}).get("device") == "emu"
            else []
        ),
        "## Steps",
        "",
        "| step | status | s | reason |",
        "|---|---|---|---|",
    ]
    for s in results.get("steps", []):
        reason = (s.get("reason") or "").replace("|", "\\|")
        lines.append(f"| {s['name']} | {s['status']} | {s.get('seconds', 0):.1f} | {reason} |")
    tests = results.get("tests")
    if tests:
        lines += [
            "",
            f"`pytest -m gpu`: {tests.get('passed', 0)} passed, "
            f"{tests.get('failed', 0)} failed, {tests.get('errors', 0)} errors, "
            f"{tests.get('skipped', 0)} skipped.",
        ]
    lines += [
        "",
        "## Engine (our CUDA backend) and PyTorch",
        "",
        "| model | precision | tuned | build s | batch | GPU median ms | host median ms "
        "| p99 ms | items/s | host overhead µs | PyTorch FP16 GPU ms | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    torch = results.get("torch", {})
    for r in results.get("engine", []):
        t = _torch(torch, r["model"], r["batch"]) if r.get("precision") == "fp16" else None
        ratio = r["gpu_median_ms"] / t["gpu_median_ms"] if t and r.get("gpu_median_ms") else None
        lines.append(
            f"| {r['model']} | {r['precision']} | {'yes' if r.get('tuned') else 'no'} | "
            f"{_fmt(r.get('build_s'))} | {r['batch']} | {_fmt(r.get('gpu_median_ms'))} | "
            f"{_fmt(r.get('host_median_ms'))} | {_fmt(r.get('p99_ms'))} | "
            f"{_fmt(r.get('throughput'))} | {_fmt(r.get('host_overhead_us'))} | "
            f"{_fmt(t['gpu_median_ms']) if t else '—'} | {_fmt(ratio)} |"
        )
    if torch.get("env"):
        e = torch["env"]
        lines += [
            "",
            f"PyTorch {e.get('torch')} (CUDA {e.get('cuda')}, cuDNN {e.get('cudnn')}), "
            "FP16, channels-last, cudnn.benchmark, eager; CUDA-graph figures in "
            f"{RESULTS_JSON}.",
        ]
    elif torch.get("reason"):
        lines += ["", f"PyTorch: skipped: {torch['reason']}."]
    lines += [
        "",
        "## Targets (issue 14)",
        "",
        "| target | bound | measured | met |",
        "|---|---|---|---|",
    ]
    for t in results.get("targets", []):
        met = {True: "yes", False: "**no**", None: "—"}[t["met"]]
        measured = _fmt(t["value"]) if t["value"] is not None else f"— ({t['why_none']})"
        lines.append(f"| {t['what']} | {t['target']} | {measured} | {met} |")
    if results.get("daemon"):
        lines += ["", "## Daemon (short run)", "", "```", results["daemon"].strip()[-2500:], "```"]
    return "\n".join(lines) + "\n"


def write(out: Path, results: dict[str, Any]) -> None:
    """Both files, atomically (a run killed half-way leaves the last complete ones)."""
    results["targets"] = measure_targets(results)
    write_text_atomic(out / RESULTS_JSON, json.dumps(results, indent=1, default=str) + "\n")
    write_text_atomic(out / SUMMARY_MD, markdown(results))
