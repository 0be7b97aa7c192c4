"""`edge-infer demo`: synthetic cameras → the daemon → a subscriber, in about half a minute.

Steps: render synthetic camera files (cached), serve a couple of them over loopback RTSP when
``rtsp-server-perl`` is installed, write a daemon config, run ``edge-infer run`` as a child
process (it builds the engine once into the cache folder), subscribe for a while, print
what arrives per camera, and write a mosaic of the cameras' previews with boxes drawn.
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

from edge_infer.errors import EdgeInferError

DEMO_MODEL = Path("models/edge_demo_det.onnx")
#: engine input for the demo's 16:9 cameras (640x360 letterboxes to 416x234): what a model with
#: dynamic height/width (the demo detector) is built for
CAMERA_INPUT = "416x256"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the daemon on synthetic cameras and show the output",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--out", default="demo-out", help="output and cache folder (default demo-out)")
    p.add_argument("--cameras", type=int, default=8, help="number of cameras (default 8)")
    p.add_argument(
        "--rtsp",
        type=int,
        default=2,
        help="cameras served over loopback RTSP when available (default 2)",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="how long to subscribe")
    p.add_argument("--model", default=None, help="ONNX detector (default: the demo detector)")
    p.add_argument("--port", type=int, default=0, help="publisher TCP port (default: free)")
    p.set_defaults(func=run)


def _videos(out: Path, cameras: int) -> dict:
    from edge_infer.synth.video import write_videos

    manifest = out / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        if len(m["cameras"]) >= cameras and all("h264" in c["files"] for c in m["cameras"]):
            return m
    t0 = time.monotonic()
    write_videos(
        out,
        cameras,
        seconds=5.0,
        fps=15.0,
        width=640,
        height=360,
        codec="h264",
        seed=0,
        workers=min(2, os.cpu_count() or 1),
        progress=False,
    )
    print(f"rendered {cameras} synthetic cameras in {time.monotonic() - t0:.1f} s")
    return json.loads(manifest.read_text())


def _model(arg: str | None, cache: Path) -> tuple[Path, list[str]]:
    if arg:
        return Path(arg).resolve(), []
    if DEMO_MODEL.is_file():
        return DEMO_MODEL.resolve(), []
    fallback = cache / "yolov8n-untrained.onnx"
    if not fallback.is_file():
        import onnx

        from edge_infer.zoo import build_model

        onnx.save(build_model("yolov8n", imgsz=320, nc=6, batch=None, fold_bn=True), str(fallback))
    return fallback, [
        f"{DEMO_MODEL} not found: using an untrained yolov8n (the boxes will be meaningless)"
    ]


def _dynamic_hw(model: Path) -> bool:
    """Whether the model's first input has a dynamic height or width (False if it is not
    there yet: the daemon's config check names a missing model)."""
    import onnx

    if not model.is_file():
        return False
    dims = onnx.load(str(model), load_external_data=False).graph.input[0].type.tensor_type.shape
    return any(not d.HasField("dim_value") for d in list(dims.dim)[2:4])


def write_config(
    path: Path, cams: list[dict], model: Path, engine: Path, endpoint: str, classes: list[str]
) -> None:
    """The demo's daemon config (also a readable example of the format)."""
    import yaml

    cfg = {
        "device_id": "demo",
        "engine": {
            "path": str(engine),
            "onnx": str(model),
            "rebuild_on_mismatch": True,
            "build": {
                "min_batch": 1,
                "opt_batch": 4,
                "max_batch": 4,
                **({"input_size": CAMERA_INPUT} if _dynamic_hw(model) else {}),
                "tune": True,
            },
        },
        "cameras": cams,
        "batching": {"latency_budget_ms": 400},
        "inference": {"workers": 2},
        "postprocess": {"class_names": classes, "score_threshold": 0.3},
        "publisher": {
            "endpoints": [endpoint],
            "status_interval_s": 2.0,
            "preview": {"enabled": True, "interval_s": 1.0, "max_width": 320},
        },
        "health": {"shutdown_timeout_s": 10},
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def summary_table(per_cam: dict[str, tuple[int, int]], took: float, status: dict | None) -> str:
    """The demo's result as a table: one row per camera, then latency and batch sizes."""
    rows = [
        ("camera", "frames", "fps", "boxes", "state"),
        ("-" * 8, "-" * 6, "-" * 5, "-" * 5, "-" * 9),
    ]
    cams = (status or {}).get("cameras", {})
    for cam in sorted(per_cam):
        n, boxes = per_cam[cam]
        rows.append(
            (cam, str(n), f"{n / took:.1f}", str(boxes), cams.get(cam, {}).get("state", "?"))
        )
    lines = [f"{r[0]:<10} {r[1]:>7} {r[2]:>6} {r[3]:>6}  {r[4]}" for r in rows]
    if status:
        lines.append("")
        lines.append(f"{'latency ms':<10} {'p50':>7} {'p90':>6} {'p99':>6}")
        for stage in ("total", "queue", "inference"):
            p = status.get("latency_ms", {}).get(stage)
            if p:
                lines.append(f"{stage:<10} {p['p50']:>7.1f} {p['p90']:>6.1f} {p['p99']:>6.1f}")
        sizes = status.get("batch_sizes") or {}
        if sizes:
            lines.append("")
            lines.append(f"{'batch size':<10} " + " ".join(f"{k:>5}" for k in sizes))
            lines.append(f"{'batches':<10} " + " ".join(f"{v:>5}" for v in sizes.values()))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from edge_infer.pipeline import rtsp_loopback
    from edge_infer.pipeline.subscriber import SequenceTracker, Subscriber

    out = Path(args.out).resolve()
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    manifest = _videos(out / "cameras", args.cameras)
    model, notes = _model(args.model, cache)
    for note in notes:
        print(f"note: {note}")
    server = None
    n_rtsp = args.rtsp if rtsp_loopback.available() else 0
    if args.rtsp and not n_rtsp:
        print("note: rtsp-server-perl not installed: every camera reads its file")
    cams = []
    if n_rtsp:
        server = rtsp_loopback.LoopbackRtspServer().start()
    try:
        for i, entry in enumerate(manifest["cameras"][: args.cameras]):
            file = out / "cameras" / entry["files"]["h264"]
            cid = f"cam{i:02d}"
            if i < n_rtsp and server is not None:
                server.feed(cid, file)
                cams.append({"type": "rtsp", "id": cid, "url": server.url(cid), "transport": "udp"})
            else:
                cams.append({"type": "file", "id": cid, "path": str(file)})
        port = args.port or rtsp_loopback.free_port()
        endpoint = f"tcp://127.0.0.1:{port}"
        cfg_path = out / "demo.yaml"
        write_config(
            cfg_path,
            cams,
            model,
            cache / f"{model.stem}.engine",
            endpoint,
            list(manifest.get("classes", [])),
        )
        print(f"config: {cfg_path}; {len(cams)} cameras ({n_rtsp} over RTSP)")
        return _run_daemon(cfg_path, endpoint, args.seconds, out, SequenceTracker, Subscriber)
    finally:
        if server is not None:
            server.stop()


def _run_daemon(
    cfg_path: Path,
    endpoint: str,
    seconds: float,
    out: Path,
    tracker_cls: type,
    subscriber_cls: type,
) -> int:
    from edge_infer.pipeline.preview import mosaic

    log_path = out / "daemon.log"
    engine = cfg_path.parent / "cache"
    if not any(engine.glob("*.engine")):
        print(
            "starting the daemon; its first start builds and tunes the engine for this "
            "device (a minute or more; cached afterwards)"
        )
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_infer", "run", "--config", str(cfg_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    tracker = tracker_cls()
    per_cam: dict[str, list[int]] = {}
    previews: dict[str, bytes] = {}
    status = None
    t_start = time.monotonic()
    first = None
    with subscriber_cls(endpoint, ["det/", "status/", "preview/"]) as sub:
        # the daemon builds the engine on its first start; then subscribe for `seconds`
        while proc.poll() is None:
            now = time.monotonic()
            if first is not None and now - first > seconds:
                break
            if first is None and now - t_start > 120:
                break
            msg = sub.recv(0.5)
            if msg is None:
                continue
            if msg.kind == "det":
                first = first or now
                tracker.observe(msg.payload)
                row = per_cam.setdefault(msg.payload["camera_id"], [0, 0])
                row[0] += 1
                row[1] += len(msg.payload["detections"])
                if tracker.received % 25 == 1:
                    p = msg.payload
                    dets = p["detections"]
                    labels = ", ".join(f"{d['label']} {d['score']:.2f}" for d in dets[:5])
                    labels += f" (+{len(dets) - 5} more)" if len(dets) > 5 else ""
                    print(
                        f"  {p['camera_id']} seq {p['seq']:>4} "
                        f"{p['latency_ms']['total']:6.1f} ms: {labels or '-'}"
                    )
            elif msg.kind == "preview" and msg.jpeg:
                previews[msg.payload["camera_id"]] = msg.jpeg
            elif msg.kind == "status":
                status = msg.payload
    took = time.monotonic() - first if first is not None else 0.0
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    if first is None:
        tail = log_path.read_text()[-2000:]
        raise EdgeInferError(f"the daemon published nothing (exit {code}); log {log_path}:\n{tail}")
    took = max(took, 1e-3)
    print(
        f"\nreceived {tracker.received} messages in {took:.1f} s, {tracker.gaps} lost, "
        f"{tracker.restarts} restarts; daemon exit code {code}"
    )
    print(summary_table(per_cam, took, status))
    path = out / "mosaic.jpg"
    if mosaic(previews, path):
        print(f"mosaic of {len(previews)} cameras: {path}")
    print(f"daemon log: {log_path}")
    return 0 if code == 0 else 1
