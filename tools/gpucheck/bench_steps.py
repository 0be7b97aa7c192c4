"""The measuring steps: models and calibration caches, PyTorch's baseline, our engines'
builds and benchmarks, the short daemon run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tools.gpucheck import bench
from tools.gpucheck.check import TIMEOUTS, Check
from tools.gpucheck.models import MODELS
from tools.gpucheck.steps import FAILED, OK, StepResult


def prepare_models(check: Check) -> None:
    if not check.needs("models", *check.gpu_needs()):
        return
    if check.args.dry_run:
        check.skip("models", "dry run")
        return
    if "yolov8n-640" in check.args.models:
        r = check.run(
            "models",
            [check.py, "-m", "tools.gpucheck.models", "--work", str(check.work)],
            "models",
        )
        if r.status != OK:
            check.blocked["yolov8n-640"] = f"its ONNX was not written: {r.reason}"
    if "int8" not in check.args.precisions:
        return
    if "int8" in check.blocked:
        check.skip("calibration images", check.blocked["int8"])
        return
    images = check.work / "calib"
    r = check.run(
        "calibration images",
        [
            check.py,
            "-m",
            "edge_infer",
            "synth",
            "images",
            "--out",
            str(images),
            "--split",
            "calib",
            "--count",
            "16",
            "--seed",
            "3",
            "--size",
            "320",
        ],
        "images",
    )
    if r.status != OK:
        check.blocked["int8"] = f"no calibration images: {r.reason}"
        return
    for name in check.args.models:
        if name in check.blocked:
            continue
        spec = MODELS[name]
        r = check.run(
            f"calibrate {name}",
            bench.calibrate_command(check.py, spec, check.work, images / "calib"),
            "calibrate",
        )
        if r.status != OK:
            check.blocked[f"int8:{name}"] = f"no calibration cache: {r.reason}"


def pytorch(check: Check) -> None:
    if "torch" in check.args.skip:
        check.results["torch"] = {"reason": "--skip torch"}
        check.skip("pytorch", "--skip torch")
        return
    if not check.needs("pytorch", "gpu", "core"):
        check.results["torch"] = {"reason": check.runner.results[-1].reason}
        return
    have = check.probe("import torch; print(torch.__version__, torch.cuda.is_available())")
    if not have:
        check.results["torch"] = {"reason": "torch is not importable"}
        check.skip("pytorch", "torch is not importable")
        return
    if have.split()[-1] != "True":
        reason = f"torch {have.split()[0]} sees no CUDA device"
        check.results["torch"] = {"reason": reason}
        check.skip("pytorch", reason)
        return
    models = [
        f"{n}={MODELS[n].onnx(check.work)}" for n in check.args.models if n not in check.blocked
    ]
    cmd = [
        check.py,
        "-m",
        "tools.gpucheck.torch_baseline",
        "--iterations",
        str(check.args.iterations),
        "--batch",
        *map(str, check.args.batches),
    ]
    for m in models:
        cmd += ["--model", m]
    for n in check.args.models:  # the size each model is built at (dynamic H/W: the demo's)
        if n not in check.blocked:
            cmd += ["--input-size", f"{n}={MODELS[n].width}x{MODELS[n].height}"]
    if check.args.dry_run:
        check.results["torch"] = {"reason": "dry run"}
        check.skip("pytorch", "dry run", command=cmd)
        return
    r = check.run("pytorch", cmd, "torch", min_s=20)
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    check.results["torch"] = {
        "env": next((x["env"] for x in rows if "env" in x), None),
        "rows": [x for x in rows if "model" in x],
        "reason": None if r.status == OK else r.reason,
    }
    check.save()


def engines(check: Check) -> None:
    if "bench" in check.args.skip:
        check.skip("engine benchmarks", "--skip bench")
        return
    needs = check.gpu_needs() if check.args.device == "emu" else check.gpu_needs("pycuda", "nvrtc")
    if not check.needs("engine benchmarks", *needs):
        return
    help_text = check.probe(
        "import sys; sys.argv = ['edge-infer', 'build', '--help']"
        "; from edge_infer.cli import main; main()"
    )
    has_device = "--device" in help_text
    built_any, first_failure = False, ""
    for cfg in bench.configs(check.args.models, check.args.precisions, check.args.tune):
        # the headline configurations first, on the whole budget; the others leave the daemon
        # step (after this stage) its time
        held = 0.0 if (cfg.model.name, cfg.precision) in bench.HEADLINE else daemon_reserve(check)
        with check.runner.holding(held):
            built_any, first_failure = _build_and_bench(
                check, cfg, has_device, built_any, first_failure
            )


def _build_and_bench(
    check: Check, cfg: bench.Config, has_device: bool, built_any: bool, first_failure: str
) -> tuple[bool, str]:
    """One configuration's build and benchmarks; (any build succeeded, first failure)."""
    name = f"build {cfg.name}"
    blocked = check.blocked.get(cfg.model.name) or (
        check.blocked.get("int8") or check.blocked.get(f"int8:{cfg.model.name}")
        if cfg.precision == "int8"
        else None
    )
    if blocked:
        check.skip(name, blocked)
        return built_any, first_failure
    if first_failure and not built_any:
        check.skip(name, f"the first CUDA build failed: {first_failure}")
        return built_any, first_failure
    calib = check.work / f"{cfg.model.name}.calib" if cfg.precision == "int8" else None
    cmd = bench.build_command(
        check.py, cfg, check.work, check.args.device, calib, has_device_flag=has_device
    )
    if check.args.dry_run:
        check.skip(name, "dry run", command=cmd)
        return built_any, first_failure
    # a cold timing cache: the build time is the tuning's (the target), not a cache hit's
    (check.work / f"{cfg.name}.timing").unlink(missing_ok=True)
    built = check.run(name, cmd, "build", min_s=20)
    if built.status != OK:
        return built_any, first_failure or built.reason
    for batch in check.args.batches:
        bench_one(check, cfg, batch, built.seconds, has_device)
    return True, first_failure


def bench_one(
    check: Check, cfg: bench.Config, batch: int, build_s: float, has_device: bool
) -> None:
    cmd = bench.bench_command(
        check.py,
        cfg,
        check.work,
        batch,
        check.args.device,
        check.args.iterations,
        has_device_flag=has_device,
    )
    r = check.run(f"bench {cfg.name} b{batch}", cmd, "bench")
    if r.status != OK:
        return
    try:
        raw = json.loads(r.stdout[r.stdout.index("{") :])
    except ValueError as exc:
        r.status, r.reason = FAILED, f"bench printed no JSON report: {exc}"
        check.save()
        return
    row = {
        "model": cfg.model.name,
        "precision": cfg.precision,
        "tuned": cfg.tune,
        "build_s": build_s,
        **bench.parse_bench(raw, batch),
        "raw": raw,
    }
    check.results["engine"].append(row)
    check.save()


def daemon_needs(check: Check) -> tuple[str, ...]:
    """What the daemon step needs: on a GPU pycuda and NVRTC too; on the emulator
    (``--device emu``: a smoke run, ``--quick``) only the Python packages."""
    if check.args.device == "emu":
        return check.gpu_needs("pipeline")
    return check.gpu_needs("pipeline", "pycuda", "nvrtc")


def daemon_reserve(check: Check) -> float:
    """Seconds the engine stage leaves for the daemon step (0 when it will not run)."""
    if "daemon" in check.args.skip or any(c in check.blocked for c in daemon_needs(check)):
        return 0.0
    return float(TIMEOUTS["daemon"])


def daemon_command(check: Check, out: Path, codec: str) -> list[str]:
    """``bench/daemon.py --backend cuda``, short: 30 cameras for ``--daemon-seconds`` per
    mode (GPU daemon, naive GPU loop, CPU daemon); on the emulator its ``--quick`` run."""
    cmd = [
        check.py,
        "bench/daemon.py",
        "--backend",
        "cuda",
        "--device",
        check.args.device,
        "--results",
        str(out),
        "--cache",
        str(check.work / "daemon-cache"),
        "--start-timeout",
        "90",
    ]
    if check.args.device == "emu":
        return [*cmd, "--quick", "--model", str(check.work / "daemon-tiny.onnx")]
    return [
        *cmd,
        "--cameras",
        "30",
        "--seconds",
        f"{check.args.daemon_seconds:g}",
        "--warmup",
        f"{min(5.0, check.args.daemon_seconds / 4):g}",
        "--video-seconds",
        "4",
        "--decode-seconds",
        "3",
        "--codec",
        codec,
        "--no-tune",
    ]


def daemon(check: Check) -> None:
    if "daemon" in check.args.skip:
        check.skip("daemon", "--skip daemon")
        return
    if not check.needs("daemon", *daemon_needs(check)):
        return
    help_text = check.probe(
        "import runpy, sys; sys.argv = ['bench/daemon.py', '--help']; "
        "runpy.run_path('bench/daemon.py', run_name='__main__')"
    )
    if "--backend" not in help_text:
        check.skip("daemon", "bench/daemon.py has no --backend option (issue 15 adds it)")
        return
    # H.264 camera files need the ffmpeg program; without it MJPEG files stand in (decoding
    # differs, and is excluded from the host-CPU figure anyway)
    codec = "h264" if shutil.which("ffmpeg", path=check.env.get("PATH")) else "mjpeg"
    out = check.work / "daemon"
    cmd = daemon_command(check, out, codec)
    if check.args.dry_run:
        check.skip("daemon", "dry run", command=cmd)
        return
    if check.args.device == "emu":
        write_tiny_detector(check.work / "daemon-tiny.onnx")
    r = check.run("daemon", cmd, "daemon", min_s=60)
    record_daemon(check, r, out, codec)


def record_daemon(check: Check, r: StepResult, out: Path, codec: str) -> None:
    """The daemon run's figures into the results: its summary table and its JSON record
    (every mode, the issue-15 targets); a run that wrote none is a failure."""
    stem = "daemon-cuda-emulator" if check.args.device == "emu" else "daemon-cuda"
    summary, record = out / f"{stem}.md", out / f"{stem}.json"
    check.results["daemon"] = summary.read_text() if summary.is_file() else r.stdout_tail
    if record.is_file():
        run = json.loads(record.read_text())[-1]
        check.results["daemon_run"] = {**run, "codec": codec}
        note = " (the emulator's: not a GPU figure)" if run.get("emulated") else ""
        for t in run.get("targets", []):
            met = {True: "met", False: "NOT met", None: "not judged"}[t.get("met")]
            check.runner.log(
                f"  daemon target: {t['what']} {t['target']}: {t['value']}, {met}{note}"
            )
    elif r.status == OK:
        r.status, r.reason = FAILED, f"bench/daemon.py wrote no {record.name}"
    check.save()


def write_tiny_detector(path: Path) -> None:
    """A small detector for the emulator's smoke run (the demo detector takes minutes
    there): one 1x1 convolution after a pooling, YOLOv8 layout, 64x64 input."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k, c = 4, 6
    nodes = [
        helper.make_node(
            "AveragePool", ["images"], ["pooled"], kernel_shape=[32, 32], strides=[32, 32]
        ),
        helper.make_node("Conv", ["pooled", "w", "b"], ["conv"]),
        helper.make_node("Reshape", ["conv", "shape"], ["output0"]),
    ]
    inits = [
        numpy_helper.from_array(np.full((4 + c, 3, 1, 1), 0.5, np.float32), "w"),
        numpy_helper.from_array(np.zeros(4 + c, np.float32), "b"),
        numpy_helper.from_array(np.array([0, 4 + c, k], np.int64), "shape"),
    ]
    graph = helper.make_graph(
        nodes,
        "gpu_check_tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 4 + c, k])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
