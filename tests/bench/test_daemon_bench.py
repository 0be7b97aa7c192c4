"""``bench/daemon.py --backend cuda``: the GPU daemon benchmark, run end to end on the CUDA
backend's emulator in its ``--quick`` mode (two cameras, seconds, the tiny detector), and its
arguments and figures checked without running anything. The emulator's figures are not a
GPU's: the test checks the run's structure and sanity, and that they are labelled so."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from bench import daemon, daemon_report
from edge_infer.engine.serialize import read_engine
from tests.pipeline.helpers import tiny_detector

ROOT = Path(__file__).resolve().parents[2]
MODES = ["daemon-cuda", "naive-cuda", "daemon-cpu"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from edge_infer.cuda import library
    from tests.cuda.conftest import prebuild

    # the emulator's objects compiled side by side here: the bench's own build compiles them
    # one after another (then it only links)
    prebuild("plain", library.sources())
    tmp = tmp_path_factory.mktemp("bench-daemon-cuda")
    model = tmp / "tiny.onnx"
    onnx.save(tiny_detector(), str(model))
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "daemon.py"),
        "--backend",
        "cuda",
        "--device",
        "emulator",
        "--quick",
        # shorter than --quick's 6 s + 2 s warm-up a mode: this checks the run's structure
        "--seconds",
        "3",
        "--warmup",
        "1",
        "--model",
        str(model),
        "--results",
        str(tmp / "results"),
        "--cache",
        str(tmp / "cache"),
        "--start-timeout",
        "240",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=420, cwd=ROOT)
    return {"res": res, "results": tmp / "results", "cache": tmp / "cache"}


def test_quick_cuda_bench_on_the_emulator_writes_labelled_results(quick_run: dict) -> None:
    res = quick_run["res"]
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out: Path = quick_run["results"]
    # the emulator's figures go to their own files, never to the GPU's or the CPU bench's
    assert sorted(p.name for p in out.iterdir()) == [
        "daemon-cuda-emulator.json",
        "daemon-cuda-emulator.md",
    ]
    md = (out / "daemon-cuda-emulator.md").read_text()
    assert "NOT a GPU's" in md and "| target (issue 15) |" in md
    runs = json.loads((out / "daemon-cuda-emulator.json").read_text())
    assert len(runs) == 1
    run = runs[0]
    assert (run["backend"], run["device"], run["emulated"], run["quick"]) == (
        "cuda",
        "emu",
        True,
        True,
    )
    assert [r["mode"] for r in run["results"]] == MODES
    span = run["seconds"] - run["warmup"]
    for r in run["results"]:
        assert r["frames_processed"] > 0 and r["fps_total"] > 0, r
        assert r["fps_total"] == pytest.approx(r["frames_processed"] / span, abs=0.02)
        assert r["frames_processed"] <= r["frames_offered"] * 1.1, r  # 2 cameras at 15 fps
        # min/max per camera; a busy machine may starve the emulator's slowest camera
        assert 0 <= r["fairness"] <= 1 and 0 <= r["fps_min"] <= r["fps_max"]
        assert r["fairness"] == pytest.approx(r["fps_min"] / r["fps_max"], abs=2e-3)
        assert 0 < r["latency_p50_ms"] <= r["latency_p99_ms"]
        assert r["cpu_cores"] is not None and r["cpu_cores"] > 0
        assert r["host_cpu_ms_per_frame"] is not None and r["host_cpu_ms_per_frame"] >= 0
    by = {r["mode"]: r for r in run["results"]}
    assert by["daemon-cuda"]["batch_sizes"] and by["daemon-cpu"]["batch_sizes"]
    assert run["fps_ratio"] == pytest.approx(
        by["daemon-cuda"]["fps_total"] / by["naive-cuda"]["fps_total"], abs=1e-3
    )
    targets = {t["key"]: t for t in run["targets"]}
    assert set(targets) == {t[0] for t in daemon_report.TARGETS}
    assert all(t["value"] is not None and t["met"] is None for t in targets.values())
    assert targets["host_cpu_ratio"]["value"] == pytest.approx(
        by["daemon-cuda"]["host_cpu_ms_per_frame"] / by["daemon-cpu"]["host_cpu_ms_per_frame"],
        rel=1e-2,
    )
    # the GPU modes ran the CUDA backend's engine, built for the emulator
    engine = read_engine(quick_run["cache"] / "bench-cuda-emu.engine")
    assert engine.header["build"]["backend"] == "cuda"


# -- arguments and figures, nothing run ----------------------------------------------------------
def test_quick_fills_what_was_not_given_and_modes_per_backend() -> None:
    args = daemon.parse_args(["--backend", "cuda", "--device", "emulator", "--quick"])
    assert (args.cameras, args.seconds, args.codec, args.device) == (2, 6.0, "mjpeg", "emu")
    assert args.tune is False and args.modes == MODES
    args = daemon.parse_args(["--backend", "cuda", "--quick", "--cameras", "3", "--mode", "both"])
    assert args.cameras == 3 and args.modes == ["daemon-cuda", "naive-cuda"]
    args = daemon.parse_args([])  # the CPU bench as before: 30 cameras, daemon vs naive
    assert (args.cameras, args.seconds, args.width, args.height) == (30, 600.0, 640, 360)
    assert args.modes == ["daemon", "naive"] and args.backend == "cpu" and args.tune
    assert daemon.parse_args(["--backend", "cuda"]).device == "0"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backend", "cuda", "--device", "gpu0"], "--device: a GPU index or 'emulator'"),
        (["--precision", "fp16"], "--precision is for --backend cuda"),
    ],
)
def test_bad_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        daemon.parse_args(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def _mode(mode: str, fps: float, p99: float, cpu: float, fairness: float = 0.9) -> dict:
    return {
        "mode": mode,
        "fps_total": fps,
        "latency_p99_ms": p99,
        "cpu_cores": cpu,
        "fairness": fairness,
        "frames_lost_pct": 0.2,
    }


def test_host_cpu_per_frame_excludes_decoding() -> None:
    assert daemon_report.host_cpu_ms_per_frame(_mode("x", 100.0, 1.0, 2.5), 0.5) == 20.0
    assert daemon_report.host_cpu_ms_per_frame(_mode("x", 100.0, 1.0, 0.2), 0.5) == 0.0
    assert daemon_report.host_cpu_ms_per_frame(_mode("x", 0.0, 1.0, 2.5), 0.5) is None
    assert daemon_report.host_cpu_ms_per_frame(_mode("x", 10.0, 1.0, math.nan), 0.5) is None
    assert daemon_report.host_cpu_ms_per_frame(_mode("x", 10.0, 1.0, 1.0), None) is None


def test_targets_on_a_gpu_are_judged_and_on_the_emulator_are_not() -> None:
    modes = [
        _mode("daemon-cuda", 450.0, 80.0, 1.3),
        _mode("naive-cuda", 200.0, 120.0, 4.0),
        _mode("daemon-cpu", 75.0, 350.0, 1.9),
    ]
    args = daemon.parse_args(["--backend", "cuda", "--device", "0"])
    run = daemon_report.summarize(args, Path("m.onnx"), 0.4, modes)
    t = {x["key"]: x for x in run["targets"]}
    assert t["fps_ratio"]["value"] == 2.25 and t["fps_ratio"]["met"] is True
    assert t["p99_ratio"]["value"] == pytest.approx(0.667) and t["p99_ratio"]["met"] is True
    # (1.3 - 0.4) / 450 vs (1.9 - 0.4) / 75 per frame: 0.1
    assert t["host_cpu_ratio"]["value"] == pytest.approx(0.1) and t["host_cpu_ratio"]["met"]
    assert t["fairness"]["met"] is True and t["frames_lost_pct"]["met"] is True
    slow = daemon_report.summarize(
        args, Path("m.onnx"), 0.4, [_mode("daemon-cuda", 300.0, 130.0, 1.3), modes[1]]
    )
    t = {x["key"]: x for x in slow["targets"]}
    assert t["fps_ratio"]["met"] is False and t["p99_ratio"]["met"] is False
    assert t["host_cpu_ratio"]["value"] is None and t["host_cpu_ratio"]["met"] is None
    emu = daemon.parse_args(["--backend", "cuda", "--device", "emu"])
    run = daemon_report.summarize(emu, Path("m.onnx"), 0.4, [dict(m) for m in modes])
    assert run["emulated"] and all(x["met"] is None for x in run["targets"])
    assert daemon_report.EMULATED in daemon_report.markdown(emu, run)
    assert daemon_report.EMULATED not in daemon_report.markdown(args, run | {"emulated": False})
