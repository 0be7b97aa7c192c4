"""Daemon benchmark: the edge_infer daemon vs a naive per-camera baseline, written to files.

Both run on the same synthetic cameras (640x360, 15 fps, looped in real time) and publish
the same detections payload over ZeroMQ; one subscriber in this process measures both:

* **daemon** -- ``edge-infer run`` (deadline batching across cameras, N execution contexts);
* **naive** -- what people write first (``bench/daemon_naive.py``): one thread per camera
  that reads a frame, letterboxes it, runs the model on that one frame, decodes + NMS, and
  publishes. A live camera does not wait for a slow reader, so the naive reader skips to
  the frame that is due now.

``--backend cpu`` (the default): the daemon on the CPU backend against onnxruntime at batch
1. ``--backend cuda [--device N|emulator]``: the daemon on the CUDA backend (frames letterboxed
on the device, decode + NMS there) against a naive per-camera GPU loop on the same device --
our engine at batch 1, an execution context (device arena and stream) per camera thread --
and the CPU daemon on the same cameras, for the host-CPU comparison.

Reported per mode: processed fps (total, per camera min/max, fairness min/max), capture →
publish latency p50/p99 (from ``latency_ms.total``), frames lost (offered at 15 fps per
camera minus processed), drop rate, CPU use and RSS (sampled from /proc; RSS growth after
the warm-up), and host CPU per processed frame: the process's CPU time less what decoding
the cameras costs (measured here first, as ``bench/capacity.py`` does), per frame. With
``--backend cuda`` also the issue-15 targets. Results: ``bench/results/daemon.json`` and
``daemon.md`` (CPU), ``daemon-cuda.json`` / ``.md`` (a GPU), ``daemon-cuda-emulator.*``
(the emulator: **not GPU figures**, a smoke run of the benchmark; never quote them as a
GPU's). JSON files are appended per run.

    .venv/bin/python bench/daemon.py --cameras 30 --seconds 600          # the CPU target
    .venv/bin/python bench/daemon.py --backend cuda --device 0 --cameras 30 --seconds 300
    .venv/bin/python bench/daemon.py --backend cuda --device emulator --quick \\
        --model tiny.onnx --results /tmp/quick                           # seconds, no GPU
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: the engine input a model with dynamic height/width is built for (640x360 -> 416x234)
CAMERA_INPUT = "416x256"
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
FPS = 15.0
#: what --quick sets, unless given: a few cameras for a few seconds (a smoke run)
QUICK = {
    "cameras": 2,
    "seconds": 6.0,
    "warmup": 2.0,
    "width": 320,
    "height": 180,
    "max_batch": 2,
    "workers": 1,
    "decode_seconds": 1.0,
    "codec": "mjpeg",
    "video_seconds": 2.0,
}
DEFAULTS = {
    "cameras": 30,
    "seconds": 600.0,
    "warmup": 60.0,
    "width": 640,
    "height": 360,
    "max_batch": 8,
    "workers": 2,
    "decode_seconds": 10.0,
    "codec": "h264",
    "video_seconds": 10.0,
}


def proc_sample(pid: int) -> tuple[float, float]:
    """(CPU seconds used, RSS MiB) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    rss = (
        next(
            int(line.split()[1])
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
        / 1024
    )
    return cpu, rss


def prepare(args: argparse.Namespace) -> tuple[Path, Path, list[Path]]:
    """Camera files and the ONNX model (cached under --cache)."""
    from edge_infer.synth.video import write_videos

    cache = Path(args.cache)
    suffix = "" if args.codec == "h264" else f"-{args.codec}"  # h264: earlier runs' folder
    cams = cache / f"cameras-{args.width}x{args.height}{suffix}"
    manifest = cams / "manifest.json"
    if not manifest.is_file() or len(json.loads(manifest.read_text())["cameras"]) < args.cameras:
        write_videos(
            cams,
            args.cameras,
            seconds=args.video_seconds,
            fps=FPS,
            width=args.width,
            height=args.height,
            codec=args.codec,
            seed=1,
            workers=min(os.cpu_count() or 2, 16),
            progress=not args.quick,
        )
    ext = "mp4" if args.codec == "h264" else "avi"
    files = [cams / f"cam{k:02d}.{ext}" for k in range(args.cameras)]
    model = Path(args.model) if args.model else ROOT / "models" / "edge_demo_det.onnx"
    if not model.is_file():
        import onnx

        from edge_infer.zoo import build_model

        model = cache / "yolov8n-320.onnx"
        if not model.is_file():
            onnx.save(build_model("yolov8n", imgsz=320, nc=6, batch=None, fold_bn=True), str(model))
        print(f"note: using an untrained yolov8n ({model}); speed is what is measured")
    return cache, model, files


def daemon_config(
    args: argparse.Namespace,
    cache: Path,
    model: Path,
    files: list[Path],
    endpoint: str,
    backend: str,
) -> Path:
    """The daemon's YAML config for ``backend`` (cpu, or cuda on ``--device``)."""
    import yaml

    inference: dict = {"workers": args.workers}
    engine = cache / "bench.engine"
    build: dict = {
        "min_batch": 1,
        "opt_batch": min(8, args.max_batch),
        "max_batch": args.max_batch,
        "tune": args.tune,
    }
    from edge_infer.synth.detect_eval import dynamic_hw

    if dynamic_hw(model):  # the demo detector (dynamic H/W): built for 16:9 cameras
        build["input_size"] = CAMERA_INPUT
    if backend == "cuda":
        inference.update(backend="cuda", device=args.device)
        engine = cache / f"bench-cuda-{args.device}.engine"
        if args.precision:
            build["precision"] = args.precision
    cfg = {
        "device_id": "bench",
        "engine": {
            "path": str(engine),
            "onnx": str(model),
            "rebuild_on_mismatch": True,
            "build": build,
        },
        "cameras": [
            {
                "type": "file",
                "id": f"cam{k:02d}",
                "path": str(f),
                "decode_threads": args.decode_threads,
            }
            for k, f in enumerate(files)
        ],
        "batching": {
            "latency_budget_ms": args.budget_ms,
            **({"max_batch": args.batch_cap} if args.batch_cap else {}),
        },
        "inference": inference,
        "publisher": {"endpoints": [endpoint], "status_interval_s": args.sample_s},
        "logging": {"level": "WARNING"},
    }
    path = cache / f"bench-daemon-{backend}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def measure(cmd: list[str], endpoint: str, args: argparse.Namespace, label: str) -> dict:
    """Run one mode for --seconds after its first message; subscriber-side statistics."""
    from edge_infer.pipeline.subscriber import Subscriber

    proc = subprocess.Popen(cmd, cwd=ROOT)
    counts: dict[str, int] = {}
    lat: list[float] = []
    samples: list[tuple[float, float, float]] = []
    status: dict = {}
    first = None
    try:
        with Subscriber(endpoint, ["det/", "status/"]) as sub:
            deadline = time.monotonic() + args.start_timeout  # engine build on first start
            next_sample = 0.0
            while proc.poll() is None and time.monotonic() < deadline:
                now = time.monotonic()
                if first is not None and now - first >= args.seconds:
                    samples.append((now - first, *proc_sample(proc.pid)))
                    break
                if first is not None and now >= next_sample:
                    samples.append((now - first, *proc_sample(proc.pid)))
                    next_sample = now + args.sample_s
                m = sub.recv(0.2)
                if m is None:
                    continue
                if m.kind == "status":
                    status = m.payload
                    continue
                if first is None:
                    first = time.monotonic()
                    deadline = first + args.seconds + 60
                    next_sample = first + args.warmup
                if time.monotonic() - first < args.warmup:
                    continue
                counts[m.payload["camera_id"]] = counts.get(m.payload["camera_id"], 0) + 1
                lat.append(m.payload["latency_ms"]["total"])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    if first is None:
        raise SystemExit(f"{label}: nothing was published (exit status {proc.returncode})")
    span = max(1e-9, args.seconds - args.warmup)
    per_cam = [counts.get(f"cam{k:02d}", 0) / span for k in range(args.cameras)]
    warm = [s for s in samples if s[0] >= args.warmup]
    cpu = (warm[-1][1] - warm[0][1]) / (warm[-1][0] - warm[0][0]) if len(warm) >= 2 else None
    processed = sum(counts.values())
    offered = args.cameras * FPS * span
    res = {
        "mode": label,
        "cameras": args.cameras,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "frames_processed": processed,
        "frames_offered": round(offered),
        "frames_lost_pct": round(max(0.0, 100 * (1 - processed / offered)), 2),
        "fps_total": round(sum(per_cam), 2),
        "fps_min": round(min(per_cam), 2),
        "fps_max": round(max(per_cam), 2),
        "fairness": round(min(per_cam) / max(per_cam), 3) if max(per_cam) > 0 else 0.0,
        "latency_p50_ms": round(float(np.percentile(lat, 50)), 1) if lat else None,
        "latency_p99_ms": round(float(np.percentile(lat, 99)), 1) if lat else None,
        "cpu_cores": None if cpu is None else round(cpu, 3),
        "rss_mib_start": round(warm[0][2], 1) if warm else None,
        "rss_mib_end": round(warm[-1][2], 1) if warm else None,
    }
    if warm:
        res["rss_growth_pct"] = round(100 * (warm[-1][2] / warm[0][2] - 1), 2)
    cams = status.get("cameras", {})
    if cams:
        frames = sum(c["frames"] for c in cams.values())
        res["drop_rate"] = round(sum(c["dropped"] for c in cams.values()) / max(1, frames), 3)
        res["batch_sizes"] = status.get("batch_sizes")
        res["engine_ms"] = status.get("engine_ms")
    print(json.dumps(res))
    return res


def naive_command(args: argparse.Namespace, backend: str, config: Path, model: Path, ep: str):
    return [
        sys.executable,
        str(ROOT / "bench" / "daemon_naive.py"),
        "--backend",
        backend,
        "--config",
        str(config),
        "--model",
        str(model),
        "--endpoint",
        ep,
    ]


def run_modes(args: argparse.Namespace, cache: Path, model: Path, files: list[Path]) -> list:
    """Each mode asked for, one after the other, measured the same way."""
    from edge_infer.pipeline.rtsp_loopback import free_port

    run = [sys.executable, "-m", "edge_infer", "run", "--config"]
    results = []
    for mode in args.modes:
        ep = f"tcp://127.0.0.1:{free_port()}"
        if mode in ("daemon", "daemon-cpu"):
            cfg = daemon_config(args, cache, model, files, ep, "cpu")
            cmd = [*run, str(cfg)]
        elif mode == "daemon-cuda":
            cfg = daemon_config(args, cache, model, files, ep, "cuda")
            cmd = [*run, str(cfg)]
        else:  # naive (onnxruntime) or naive-cuda (our engine at batch 1 on the device)
            backend = "cuda" if mode == "naive-cuda" else "cpu"
            cfg = daemon_config(args, cache, model, files, ep, backend)
            cmd = naive_command(args, backend, cfg, model, ep)
        results.append(measure(cmd, ep, args, mode))
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("cpu", "cuda"), default="cpu", help="daemon's backend")
    p.add_argument(
        "--device",
        default="0",
        metavar="N|emulator",
        help="--backend cuda: a GPU index, or 'emulator' (alias 'emu': the CPU emulator of the "
        "CUDA backend; its figures are not a GPU's)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run in seconds: "
        + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in QUICK.items())
        + " (options given explicitly win)",
    )
    p.add_argument("--cameras", type=int)
    p.add_argument("--seconds", type=float, help="measured run per mode (default 600)")
    p.add_argument("--warmup", type=float, help="seconds ignored at the start (default 60)")
    p.add_argument(
        "--mode",
        choices=("both", "all", "daemon", "naive", "cpu-daemon"),
        default=None,
        help="both: daemon and naive (the default on the CPU); all (the default with "
        "--backend cuda): both and the CPU daemon, for the host-CPU comparison",
    )
    p.add_argument("--model", help="ONNX detector (default: models/edge_demo_det.onnx)")
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--codec", choices=("h264", "mjpeg"), help="camera files (default h264)")
    p.add_argument("--video-seconds", type=float, help="length of the looped camera files")
    p.add_argument("--workers", type=int)
    p.add_argument("--max-batch", type=int)
    p.add_argument(
        "--precision",
        choices=("fp32", "fp16", "int8"),
        help="--backend cuda engine precision (default: the daemon's, FP16 on a GPU)",
    )
    p.add_argument(
        "--batch-cap",
        type=int,
        default=None,
        help="batching.max_batch (default: the engine profile's max)",
    )
    p.add_argument("--budget-ms", type=float, default=250.0)
    p.add_argument(
        "--decode-threads",
        type=int,
        default=1,
        help="daemon cameras' FFmpeg decoder threads (0: FFmpeg's choice)",
    )
    p.add_argument(
        "--decode-seconds",
        type=float,
        help="how long decoding alone is measured (the part of host CPU excluded; 0: not)",
    )
    p.add_argument(
        "--no-tune",
        dest="tune",
        action="store_false",
        help="skip tactic tuning (faster first build, slower engine)",
    )
    p.add_argument(
        "--start-timeout",
        type=float,
        default=900.0,
        help="seconds a mode may take to publish its first message (engine build)",
    )
    p.add_argument(
        "--results",
        default=str(RESULTS),
        metavar="DIR",
        help="where the results go (default bench/results; point experiments "
        "elsewhere so the recorded runs stay)",
    )
    p.add_argument("--cache", default=str(ROOT / "build" / "bench-daemon"))
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick:
        args.tune = False
    if args.device == "emulator":
        args.device = "emu"
    if args.device != "emu" and not args.device.isdigit():
        p.error(f"--device: a GPU index or 'emulator', got {args.device!r}")
    if args.backend == "cpu" and args.precision:
        p.error("--precision is for --backend cuda (the CPU daemon builds FP32)")
    mode = args.mode or ("all" if args.backend == "cuda" else "both")
    if args.backend == "cpu":
        modes = {"both": ["daemon", "naive"], "all": ["daemon", "naive"]}.get(mode, [mode])
        args.modes = ["daemon" if m == "cpu-daemon" else m for m in modes]
    else:
        named = {"daemon": ["daemon-cuda"], "naive": ["naive-cuda"], "cpu-daemon": ["daemon-cpu"]}
        both = ["daemon-cuda", "naive-cuda"]
        args.modes = {"both": both, "all": [*both, "daemon-cpu"]}.get(mode) or named[mode]
    args.warmup = min(args.warmup, args.seconds / 2)
    args.sample_s = min(5.0, max(0.25, (args.seconds - args.warmup) / 4))
    return args


def main(argv: list[str] | None = None) -> int:
    from bench.daemon_report import decode_cores, summarize, write_results

    args = parse_args(argv)
    cache, model, files = prepare(args)
    decode = decode_cores(files, args.decode_seconds, FPS)
    results = run_modes(args, cache, model, files)
    run = summarize(args, model, decode, results)
    lines = write_results(Path(args.results), args, run)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
