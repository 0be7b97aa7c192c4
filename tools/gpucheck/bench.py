"""Our engine's benchmark on the GPU: the build and bench commands, and reading their output.

One engine per model and precision, its profile batch 1 / 4 / 8 (three tuned batch sizes, as
the build-time target states), benchmarked at batch 1 and 8 with ``edge-infer bench --json``.
Headline configurations first, so a short budget still measures what the targets need.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.gpucheck.models import MODELS, ModelSpec

#: order = priority: the targets need YOLOv8n-640 FP16 and INT8 first
DEFAULT_CONFIGS = (
    ("yolov8n-640", "fp16"),
    ("yolov8n-640", "int8"),
    ("demo-det", "fp16"),
    ("demo-det", "int8"),
    ("yolov8n-640", "fp32"),
    ("demo-det", "fp32"),
)
#: what the targets need, measured on the whole budget (the rest leave the daemon step time)
HEADLINE = frozenset(DEFAULT_CONFIGS[:2])
PRECISION_FLAGS = {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8", "--fp16"]}
PROFILE = (1, 4, 8)  # min / opt / max batch


@dataclass(frozen=True)
class Config:
    model: ModelSpec
    precision: str
    tune: bool

    @property
    def name(self) -> str:
        return f"{self.model.name}-{self.precision}"


def configs(models: list[str], precisions: list[str], tune: str) -> list[Config]:
    """The (model, precision) pairs asked for, in priority order; ``tune`` is ``all``,
    ``none`` or ``headline`` (YOLOv8n-640 FP16/INT8 tuned, the others with --no-tune)."""
    chosen = [(m, p) for m, p in DEFAULT_CONFIGS if m in models and p in precisions]
    extra = [(m, p) for m in models for p in precisions if (m, p) not in chosen]
    out = []
    for m, p in chosen + extra:
        tuned = tune == "all" or (tune == "headline" and m == "yolov8n-640" and p != "fp32")
        out.append(Config(MODELS[m], p, tuned))
    return out


def build_command(
    python: str, cfg: Config, work: Path, device: str, calib: Path | None, *, has_device_flag: bool
) -> list[str]:
    spec = cfg.model
    lo, opt, hi = PROFILE
    cmd = [
        python,
        "-m",
        "edge_infer",
        "build",
        str(spec.onnx(work)),
        "-o",
        str(work / f"{cfg.name}.engine"),
        "--backend",
        "cuda",
        "--min-shapes",
        spec.shape(lo),
        "--opt-shapes",
        spec.shape(opt),
        "--max-shapes",
        spec.shape(hi),
        "--timing-cache",
        str(work / f"{cfg.name}.timing"),
        "--quiet",
        *PRECISION_FLAGS[cfg.precision],
    ]
    if has_device_flag:
        cmd += ["--device", device]
    if cfg.precision == "int8" and calib is not None:
        cmd += ["--calib-cache", str(calib)]
    if not cfg.tune:
        cmd.append("--no-tune")
    return cmd


def bench_command(
    python: str,
    cfg: Config,
    work: Path,
    batch: int,
    device: str,
    iterations: int,
    *,
    has_device_flag: bool,
) -> list[str]:
    cmd = [
        python,
        "-m",
        "edge_infer",
        "bench",
        str(work / f"{cfg.name}.engine"),
        "--batch",
        str(batch),
        "--iterations",
        str(iterations),
        "--warmup",
        str(min(20, iterations)),
        "--json",
    ]
    if has_device_flag:
        cmd += ["--device", device]
    return cmd


def calibrate_command(python: str, spec: ModelSpec, work: Path, images: Path) -> list[str]:
    return [
        python,
        "-m",
        "edge_infer",
        "calibrate",
        str(spec.onnx(work)),
        "--data",
        str(images),
        "--frames",
        "16",
        "-o",
        str(work / f"{spec.name}.calib"),
        "--quiet",
        "--shapes",
        spec.shape(1),
        # the demo detector's calibrator: entropy clips its stride-8 box branch (-0.05
        # mAP@0.5 at 320x320; -0.35 at 416x256 before 9d07e7f), percentile loses <= 0.001
        # (models/edge_demo_det.md)
        "--calibrator",
        "percentile",
    ]


def flatten(report: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested report as ``a.b.c`` keys."""
    out: dict[str, float] = {}
    if isinstance(report, dict):
        for k, v in report.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(report, (int, float)) and not isinstance(report, bool):
        out[prefix.rstrip(".")] = float(report)
    return out


def pick(flat: dict[str, float], *patterns: str) -> tuple[str, float] | None:
    """The first key (in the patterns' order) matching a regular expression."""
    for pattern in patterns:
        for key, value in flat.items():
            if re.search(pattern, key):
                return key, value
    return None


def parse_bench(report: dict[str, Any], batch: int) -> dict[str, Any]:
    """The figures the summary shows, from ``edge-infer bench --json``: for a CUDA engine
    (``edge_infer.cuda.bench``) ``gpu`` (event) and ``host`` (wall) statistics and the median
    host overhead; other layouts are read by key name as far as they go. Where the report has
    no host-overhead figure it is derived (wall − GPU median), marked as derived."""
    flat = flatten(report)
    row: dict[str, Any] = {"batch": batch}
    wall = pick(flat, r"^host\.median_ms$", r"^edge_infer\.median_ms$", r"host.*median")
    gpu = pick(flat, r"^gpu\.median_ms$", r"gpu.*median", r"event.*median")
    p99 = pick(flat, r"^gpu\.p99_ms$", r"^edge_infer\.p99_ms$", r"p99")
    thr = pick(flat, r"^gpu\.throughput$", r"^edge_infer\.throughput$", r"throughput")
    over = pick(flat, r"overhead")
    for name, found in (
        ("host_median_ms", wall),
        ("gpu_median_ms", gpu),
        ("p99_ms", p99),
        ("throughput", thr),
    ):
        if found is not None:
            row[name], row[f"{name}_key"] = found[1], found[0]
    if over is not None:  # the CUDA bench states it in ms; the targets are in µs
        scale = 1e3 if over[0].endswith("_ms") else 1.0
        row["host_overhead_us"], row["host_overhead_us_key"] = over[1] * scale, over[0]
    elif wall is not None and gpu is not None:
        row["host_overhead_us"] = max(0.0, (wall[1] - gpu[1]) * 1e3)
        row["host_overhead_us_key"] = "derived: host median - GPU median"
    return row
