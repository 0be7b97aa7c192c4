"""Daemon benchmark: the edge_infer daemon vs a naive per-camera baseline, written to files.

Both run on the same synthetic cameras (640x360, 15 fps, looped in real time) and publish
the same detections payload over ZeroMQ; one subscriber in this process measures both:

* **daemon** -- ``edge-infer run`` (deadline batching across cameras, N execution contexts);
* **naive** -- what people write first: one thread per camera that reads a frame, letterboxes
  it, runs onnxruntime on that one frame, decodes + NMS, and publishes. A live camera does
  not wait for a slow reader, so the naive reader skips to the frame that is due now.

Reported per mode: processed fps (total, per camera min/max, fairness min/max), capture →
publish latency p50/p99 (from ``latency_ms.total``), drop rate, CPU use and RSS (sampled
from /proc every 5 s; RSS growth after the warm-up). Results: ``bench/results/daemon.json``
(appended per run) and ``bench/results/daemon.md``. Not run by the tests.

    .venv/bin/python bench/daemon.py --cameras 30 --seconds 600          # the issue's target
    .venv/bin/python bench/daemon.py --cameras 8 --seconds 60 --mode daemon \
        --results /tmp/quick                                              # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")


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
    cams = cache / f"cameras-{args.width}x{args.height}"
    manifest = cams / "manifest.json"
    if not manifest.is_file() or len(json.loads(manifest.read_text())["cameras"]) < args.cameras:
        write_videos(
            cams,
            args.cameras,
            seconds=10.0,
            fps=15.0,
            width=args.width,
            height=args.height,
            codec="h264",
            seed=1,
            workers=2,
            progress=True,
        )
    files = [cams / f"cam{k:02d}.mp4" for k in range(args.cameras)]
    model = Path(args.model) if args.model else ROOT / "models" / "edge_demo_det.onnx"
    if not model.is_file():
        import onnx

        from edge_infer.zoo import build_model

        model = cache / "yolov8n-320.onnx"
        if not model.is_file():
            onnx.save(build_model("yolov8n", imgsz=320, nc=6, batch=None, fold_bn=True), str(model))
        print(f"note: using an untrained yolov8n ({model}); speed is what is measured")
    return cache, model, files


def daemon_command(
    args: argparse.Namespace, cache: Path, model: Path, files: list[Path], endpoint: str
) -> list[str]:
    import yaml

    cfg = {
        "device_id": "bench",
        "engine": {
            "path": str(cache / "bench.engine"),
            "onnx": str(model),
            "rebuild_on_mismatch": True,
            "build": {
                "min_batch": 1,
                "opt_batch": min(8, args.max_batch),
                "max_batch": args.max_batch,
                "tune": args.tune,
            },
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
        "inference": {"workers": args.workers},
        "publisher": {"endpoints": [endpoint], "status_interval_s": 5.0},
        "logging": {"level": "WARNING"},
    }
    path = cache / "bench-daemon.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return [sys.executable, "-m", "edge_infer", "run", "--config", str(path)]


def naive_main(args: argparse.Namespace) -> int:
    """The baseline process: one thread per camera, onnxruntime per frame."""
    import cv2
    import onnxruntime as ort
    import zmq

    from edge_infer.pipeline.postprocess import decode
    from edge_infer.pipeline.preprocess import preprocess

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    session = ort.InferenceSession(args.naive_model, so, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.bind(args.naive_endpoint)
    lock = threading.Lock()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def camera(cid: str, path: str) -> None:
        cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
        fps = cap.get(cv2.CAP_PROP_FPS) or 15.0
        t0, index, seq = time.monotonic(), 0, 0
        while not stop.is_set():  # checked again before publishing, see below
            due = int((time.monotonic() - t0) * fps)  # a live camera: frames keep coming
            while index < due:  # skip what we were too slow for
                if not cap.grab():
                    cap.release()
                    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
                index += 1
            ok, frame = cap.read()
            if not ok:
                cap.release()
                cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
                continue
            index += 1
            capture = time.monotonic()
            wait = t0 + index / fps - capture
            x, lb = preprocess(frame, (320, 320))
            out = session.run(None, {name: x[None]})[0]
            dets = decode(out, [lb])[0]
            payload = {
                "camera_id": cid,
                "seq": seq,
                "detections": len(dets),
                "latency_ms": {"total": (time.monotonic() - capture) * 1e3},
            }
            with lock:
                if stop.is_set():
                    break
                sock.send_multipart([f"det/naive/{cid}".encode(), json.dumps(payload).encode()])
            seq += 1
            if wait > 0:
                stop.wait(wait)

    threads = [
        threading.Thread(target=camera, args=(f"cam{k:02d}", p), daemon=True)
        for k, p in enumerate(args.naive_files)
    ]
    for t in threads:
        t.start()
    while not stop.wait(0.5):
        pass
    for t in threads:  # a thread inside session.run finishes its frame first
        t.join(30)
    sock.close(0)
    ctx.term()
    return 0


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
            deadline = time.monotonic() + 900  # engine build on first start
            next_sample = 0.0
            while proc.poll() is None and time.monotonic() < deadline:
                now = time.monotonic()
                if first is not None and now - first >= args.seconds:
                    break
                if first is not None and now >= next_sample:
                    samples.append((now - first, *proc_sample(proc.pid)))
                    next_sample = now + 5.0
                m = sub.recv(0.2)
                if m is None:
                    continue
                if m.kind == "status":
                    status = m.payload
                    continue
                if first is None:
                    first = time.monotonic()
                    deadline = first + args.seconds + 60
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
        raise SystemExit(f"{label}: nothing was published")
    span = max(1e-9, args.seconds - args.warmup)
    per_cam = [counts.get(f"cam{k:02d}", 0) / span for k in range(args.cameras)]
    warm = [s for s in samples if s[0] >= args.warmup]
    cpu = (
        (warm[-1][1] - warm[0][1]) / (warm[-1][0] - warm[0][0]) if len(warm) >= 2 else float("nan")
    )
    res = {
        "mode": label,
        "cameras": args.cameras,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "fps_total": round(sum(per_cam), 2),
        "fps_min": round(min(per_cam), 2),
        "fps_max": round(max(per_cam), 2),
        "fairness": round(min(per_cam) / max(per_cam), 3) if max(per_cam) > 0 else 0.0,
        "latency_p50_ms": round(float(np.percentile(lat, 50)), 1) if lat else None,
        "latency_p99_ms": round(float(np.percentile(lat, 99)), 1) if lat else None,
        "cpu_cores": round(cpu, 2),
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cameras", type=int, default=30)
    p.add_argument("--seconds", type=float, default=600.0, help="measured run per mode")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds ignored at the start")
    p.add_argument("--mode", choices=("both", "daemon", "naive"), default="both")
    p.add_argument("--model", help="ONNX detector (default: models/edge_demo_det.onnx)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-batch", type=int, default=8)
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
        "--no-tune",
        dest="tune",
        action="store_false",
        help="skip tactic tuning (faster first build, slower engine)",
    )
    p.add_argument(
        "--results",
        default=str(RESULTS),
        metavar="DIR",
        help="where the results go (default bench/results; point experiments "
        "elsewhere so the recorded runs stay)",
    )
    p.add_argument("--cache", default=str(ROOT / "build" / "bench-daemon"))
    p.add_argument("--naive-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--naive-model", help=argparse.SUPPRESS)
    p.add_argument("--naive-endpoint", help=argparse.SUPPRESS)
    p.add_argument("--naive-files", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.naive_worker:
        return naive_main(args)
    args.warmup = min(args.warmup, args.seconds / 2)
    cache, model, files = prepare(args)
    from edge_infer.pipeline.rtsp_loopback import free_port

    results = []
    if args.mode in ("both", "daemon"):
        ep = f"tcp://127.0.0.1:{free_port()}"
        results.append(measure(daemon_command(args, cache, model, files, ep), ep, args, "daemon"))
    if args.mode in ("both", "naive"):
        ep = f"tcp://127.0.0.1:{free_port()}"
        cmd = [
            sys.executable,
            __file__,
            "--naive-worker",
            "--naive-model",
            str(model),
            "--naive-endpoint",
            ep,
            "--naive-files",
            *map(str, files),
        ]
        results.append(measure(cmd, ep, args, "naive"))
    out_dir = Path(args.results)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cpus": os.cpu_count(),
        "model": str(model),
        "results": results,
    }
    log = out_dir / "daemon.json"
    history = json.loads(log.read_text()) if log.is_file() else []
    log.write_text(json.dumps([*history, run], indent=1))
    cols = [
        "mode",
        "fps_total",
        "fps_min",
        "fps_max",
        "fairness",
        "latency_p50_ms",
        "latency_p99_ms",
        "drop_rate",
        "cpu_cores",
        "rss_mib_end",
        "rss_growth_pct",
    ]
    lines = [
        f"Daemon benchmark, {run['time']}, {args.cameras} cameras "
        f"{args.width}x{args.height} @ 15 fps, {args.seconds:.0f} s "
        f"(first {args.warmup:.0f} s ignored), {os.cpu_count()} CPUs, model {model.name}",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in results]
    if len(results) == 2 and results[1]["fps_total"]:
        lines += [
            "",
            f"processed fps, daemon / naive: "
            f"{results[0]['fps_total'] / results[1]['fps_total']:.2f}x",
        ]
    (out_dir / "daemon.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
