"""The GPU check's daemon step (issue 15 §6): the ``bench/daemon.py --backend cuda`` command it
runs (accepted by the benchmark's own parser), the time the engine stage leaves it, how its
figures are recorded, and its dry run through ``tools/gpu_check.sh`` without a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import daemon as bench_daemon
from tools.gpucheck import bench, bench_steps, cli, report
from tools.gpucheck.check import TIMEOUTS, Check
from tools.gpucheck.steps import FAILED, OK, SKIPPED, Runner, StepResult

ROOT = Path(__file__).resolve().parents[2]


def _check(tmp_path: Path, *argv: str) -> Check:
    args = cli.parse_args(["--out", str(tmp_path / "out"), "--work", str(tmp_path / "w"), *argv])
    args.out.mkdir(parents=True)
    return Check(args, log=lambda _: None)


def test_gpu_command_is_a_short_30_camera_run_the_benchmark_accepts(tmp_path: Path) -> None:
    check = _check(tmp_path, "--device", "1", "--daemon-seconds", "25")
    cmd = bench_steps.daemon_command(check, tmp_path / "res", "h264")
    assert cmd[:2] == [check.py, "bench/daemon.py"]
    args = bench_daemon.parse_args(cmd[2:])  # what bench/daemon.py makes of it
    assert (args.backend, args.device, args.cameras, args.seconds) == ("cuda", "1", 30, 25.0)
    assert (args.width, args.height, args.codec, args.quick) == (640, 360, "h264", False)
    assert args.modes == ["daemon-cuda", "naive-cuda", "daemon-cpu"] and not args.tune
    assert args.results == str(tmp_path / "res") and args.warmup == 5.0
    # three modes of 25 s, their start-ups, the cameras and decoding inside the step's time
    assert 3 * (args.seconds + 20) + args.decode_seconds + 2 <= TIMEOUTS["daemon"]
    emu = _check(tmp_path / "e", "--device", "emu")
    args = bench_daemon.parse_args(bench_steps.daemon_command(emu, tmp_path, "mjpeg")[2:])
    assert args.quick and args.device == "emu" and args.cameras == 2
    assert args.model == str(emu.work / "daemon-tiny.onnx")


def test_engine_stage_leaves_the_daemon_step_its_time(tmp_path: Path) -> None:
    check = _check(tmp_path)
    assert bench_steps.daemon_reserve(check) == TIMEOUTS["daemon"]
    check.blocked["pipeline"] = "python packages missing: zmq"
    assert bench_steps.daemon_reserve(check) == 0
    skipped = _check(tmp_path / "s", "--skip", "daemon")
    assert bench_steps.daemon_reserve(skipped) == 0
    assert ("yolov8n-640", "fp16") in bench.HEADLINE and ("demo-det", "fp32") not in (
        bench.HEADLINE
    )


def test_holding_cuts_timeouts_and_says_why_a_step_is_skipped() -> None:
    now = [0.0]
    runner = Runner(300, reserve_s=10, log=lambda _: None, clock=lambda: now[0])
    with runner.holding(180):
        assert runner.left() == 110 and runner.timeout_for(200) == 110
        now[0] = 100.0
        r = runner.run("late", ["true"], timeout_s=60, min_s=20)
    assert r.status == SKIPPED and "180 s more kept for later steps" in r.reason
    assert runner.left() == 190 and runner.held_s == 0  # released after the block


def _write_run(out: Path, stem: str, fps_ratio: float) -> None:
    out.mkdir(parents=True)
    run = {
        "backend": "cuda",
        "results": [{"mode": "daemon-cuda", "fps_total": 450.0}],
        "targets": [
            {
                "key": "fps_ratio",
                "what": "processed fps, GPU daemon / naive GPU loop",
                "target": ">= 2",
                "value": fps_ratio,
                "met": fps_ratio >= 2,
            }
        ],
    }
    (out / f"{stem}.json").write_text(json.dumps([{"old": True}, run]))
    (out / f"{stem}.md").write_text(f"Daemon benchmark (CUDA backend, device 0)\n{fps_ratio}x\n")


def test_the_runs_figures_are_recorded_and_reported(tmp_path: Path) -> None:
    check = _check(tmp_path)
    out = tmp_path / "res"
    _write_run(out, "daemon-cuda", 2.4)
    step = StepResult("daemon", OK)
    bench_steps.record_daemon(check, step, out, "h264")
    run = check.results["daemon_run"]
    assert run["codec"] == "h264" and run["targets"][0]["value"] == 2.4  # the latest run
    saved = json.loads((check.args.out / report.RESULTS_JSON).read_text())
    assert saved["daemon_run"]["targets"][0]["met"] is True
    assert "## Daemon (short run)" in (check.args.out / report.SUMMARY_MD).read_text()
    # an emulated check reads the emulator's file, and a run that wrote none failed
    emu = _check(tmp_path / "e", "--device", "emu")
    step = StepResult("daemon", OK)
    bench_steps.record_daemon(emu, step, out, "mjpeg")
    assert step.status == FAILED and "wrote no daemon-cuda-emulator.json" in step.reason
    assert "daemon_run" not in emu.results


def test_dry_run_on_the_emulator_plans_the_daemon_step(tmp_path: Path) -> None:
    """``tools/gpu_check.sh --device emu --dry-run``: no GPU needed; the daemon step is
    planned (its command recorded) rather than skipped for a missing GPU."""
    pytest.importorskip("cv2")
    pytest.importorskip("zmq")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    res = subprocess.run(
        [
            "bash",
            str(ROOT / "tools" / "gpu_check.sh"),
            "--python",
            sys.executable,
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
            "--device",
            "emu",
            "--dry-run",
            "--budget",
            "120",
            "--skip",
            "tests",
            "--skip",
            "torch",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=tmp_path,
    )
    results = json.loads((out / report.RESULTS_JSON).read_text())
    steps = {s["name"]: s for s in results["steps"]}
    daemon = steps["daemon"]
    assert daemon["status"] == SKIPPED and daemon["reason"] == "dry run", res.stdout
    cmd = daemon["data"]["command"]
    assert cmd[1:6] == ["bench/daemon.py", "--backend", "cuda", "--device", "emu"]
    assert "--quick" in cmd
