"""The GPU check's arguments and its order of steps: ``python -m tools.gpucheck --out DIR``
(``tools/gpu_check.sh`` is the usual way in). Exit status: 0 every step ran and passed; 1 a
step failed or timed out; 2 bad arguments; 3 nothing failed but steps were skipped (no GPU,
no pycuda, no torch, ...).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tools.gpucheck import bench, bench_steps, pycuda_install, report, setup_steps
from tools.gpucheck.check import Check, exit_status
from tools.gpucheck.models import MODELS

STEPS = ("install", "tests", "bench", "torch", "daemon")
PRECISIONS = ("fp32", "fp16", "int8")
#: the run, in order; each stage records its steps (or why it skipped them) as it goes
STAGES = (
    setup_steps.environment_report,  # GPU, SM, driver, CUDA, Jetson: gates every GPU step
    setup_steps.wheels,  # extra wheels carried to a bare machine (--wheels), offline
    setup_steps.prerequisites,  # which Python packages are missing, and for what
    setup_steps.pycuda,  # importable, or built from vendor/pycuda and installed offline
    setup_steps.nvrtc,  # the kernels' compiler and headers, as edge_infer finds them
    setup_steps.gpu_tests,  # pytest -m gpu: kernels and engines on the device
    bench_steps.prepare_models,  # YOLOv8n-640's ONNX, calibration images and caches
    bench_steps.pytorch,  # the baseline: the same graphs in PyTorch FP16 channels-last
    bench_steps.engines,  # our engines: build (timed) and bench at each batch size
    bench_steps.daemon,  # a short bench/daemon.py --backend cuda run (time kept by engines)
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tools/gpu_check.sh",
        description=(
            "Check edge_infer on this machine's NVIDIA GPU, offline, within the budget: pycuda "
            "from vendor/pycuda, the gpu-marked tests, engine benchmarks against PyTorch, a short "
            "daemon run. Results: OUT/gpu_check.json and OUT/gpu_check.md."
        ),
    )
    p.add_argument("--out", type=Path, required=True, help="results folder")
    p.add_argument(
        "--work", type=Path, help="engines, models, builds (default: a new temporary folder)"
    )
    p.add_argument(
        "--budget",
        type=float,
        default=460.0,
        help="seconds for the whole run (default 460: inside 8 minutes)",
    )
    p.add_argument(
        "--device",
        default="0",
        help="GPU index (default 0); 'emu': the engine steps on the emulator, a smoke run of "
        "the commands without a GPU (its times are the emulator's, not a GPU's)",
    )
    p.add_argument(
        "--vendor",
        type=Path,
        default=pycuda_install.VENDOR,
        help="pycuda's sdist and wheels (default vendor/pycuda)",
    )
    p.add_argument(
        "--wheels", type=Path, help="a folder of extra wheels to install offline first (--no-index)"
    )
    p.add_argument(
        "--skip", action="append", default=[], choices=STEPS, help="leave a step out (repeatable)"
    )
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated model names")
    p.add_argument("--precisions", default="fp16,int8,fp32")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--iterations", type=int, default=200, help="timed runs per benchmark")
    p.add_argument(
        "--tune",
        choices=("headline", "all", "none"),
        default="headline",
        help="headline: YOLOv8n-640 FP16/INT8 tuned, the rest --no-tune",
    )
    p.add_argument(
        "--daemon-seconds",
        type=float,
        default=20.0,
        help="the daemon step: seconds measured per mode (GPU daemon, naive GPU loop, CPU "
        "daemon; 30 cameras; bench/daemon.py --backend cuda); on --device emu its --quick run",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="probe and plan every step, run none of the GPU work"
    )
    args = p.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.precisions = [m for m in args.precisions.split(",") if m]
    bad = [m for m in args.models if m not in MODELS]
    if bad or not args.models:
        p.error(f"--models: unknown {', '.join(bad) or '(none given)'}; known: {', '.join(MODELS)}")
    bad = [m for m in args.precisions if m not in PRECISIONS]
    if bad or not args.precisions:
        p.error(
            f"--precisions: unknown {', '.join(bad) or '(none given)'}; known: "
            f"{', '.join(PRECISIONS)}"
        )
    try:
        args.batches = [int(b) for b in args.batches.split(",") if b]
    except ValueError:
        p.error(f"--batches: integers expected, got {args.batches!r}")
    if not args.batches or not all(1 <= b <= bench.PROFILE[-1] for b in args.batches):
        p.error(f"--batches: each between 1 and {bench.PROFILE[-1]} (the engines' profile)")
    if args.budget < 30 or args.iterations < 1 or args.daemon_seconds <= 0:
        p.error("--budget must be >= 30 s, --iterations >= 1, --daemon-seconds > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    log_file = args.out / "gpu_check.log"

    def log(line: str) -> None:
        print(line, flush=True)
        with log_file.open("a") as f:
            f.write(line + "\n")

    check = Check(args, log)
    check.work.mkdir(parents=True, exist_ok=True)
    log(f"GPU check: results in {args.out}, work files in {check.work}, budget {args.budget:.0f} s")
    for stage in STAGES:
        stage(check)
    status = exit_status(check.runner.results)
    check.results["exit_status"] = status
    check.save()
    log(f"done: exit {status} ({report.SUMMARY_MD} and {report.RESULTS_JSON} in {args.out})")
    return status
