"""The measuring steps: models and calibration caches, PyTorch's baseline, our engines'
builds and benchmarks, the short daemon run."""

from __future__ import annotations

import json
import shutil

from tools.gpucheck import bench
from tools.gpucheck.check import Check
from tools.gpucheck.models import MODELS
from tools.gpucheck.steps import FAILED, OK


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
        name = f"build {cfg.name}"
        blocked = check.blocked.get(cfg.model.name) or (
            check.blocked.get("int8") or check.blocked.get(f"int8:{cfg.model.name}")
            if cfg.precision == "int8"
            else None
        )
        if blocked:
            check.skip(name, blocked)
            continue
        if first_failure and not built_any:
            check.skip(name, f"the first CUDA build failed: {first_failure}")
            continue
        calib = check.work / f"{cfg.model.name}.calib" if cfg.precision == "int8" else None
        cmd = bench.build_command(
            check.py, cfg, check.work, check.args.device, calib, has_device_flag=has_device
        )
        if check.args.dry_run:
            check.skip(name, "dry run", command=cmd)
            continue
        # a cold timing cache: the build time is the tuning's (the target), not a cache hit's
        (check.work / f"{cfg.name}.timing").unlink(missing_ok=True)
        built = check.run(name, cmd, "build", min_s=20)
        if built.status != OK:
            first_failure = first_failure or built.reason
            continue
        built_any = True
        for batch in check.args.batches:
            bench_one(check, cfg, batch, built.seconds, has_device)


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


def daemon(check: Check) -> None:
    if "daemon" in check.args.skip:
        check.skip("daemon", "--skip daemon")
        return
    if not check.needs("daemon", "gpu", "core", "pipeline", "pycuda", "nvrtc"):
        return
    help_text = check.probe(
        "import runpy, sys; sys.argv = ['bench/daemon.py', '--help']; "
        "runpy.run_path('bench/daemon.py', run_name='__main__')"
    )
    if "--backend" not in help_text:
        check.skip("daemon", "bench/daemon.py has no --backend option yet (issue 15 adds it)")
        return
    if shutil.which("ffmpeg", path=check.env.get("PATH")) is None:
        check.skip(
            "daemon", "ffmpeg not installed (bench/daemon.py encodes its camera videos with it)"
        )
        return
    out = check.work / "daemon"
    cmd = [
        check.py,
        "bench/daemon.py",
        "--backend",
        "cuda",
        "--cameras",
        "30",
        "--seconds",
        f"{check.args.daemon_seconds:g}",
        "--warmup",
        "5",
        "--no-tune",
        "--results",
        str(out),
        "--cache",
        str(check.work / "daemon-cache"),
    ]
    if check.args.dry_run:
        check.skip("daemon", "dry run", command=cmd)
        return
    r = check.run("daemon", cmd, "daemon", min_s=60)
    summary = out / "daemon.md"
    check.results["daemon"] = summary.read_text() if summary.is_file() else r.stdout_tail
    check.save()
