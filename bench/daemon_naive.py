"""The daemon benchmark's naive baseline: one thread per camera, one frame at a time.

What people write first, and what ``bench/daemon.py`` compares the daemon with: each camera
thread reads a frame, letterboxes it on the CPU, runs the model on that one frame, decodes +
NMS-filters on the CPU and publishes the same detections payload as the daemon, over
ZeroMQ. A live camera does not wait for a slow reader, so the reader skips (grabs without
converting) to the frame that is due now. Two backends:

* ``cpu`` -- onnxruntime, one intra-op thread, one session shared by the threads;
* ``cuda`` -- our engine (the daemon's own engine file, loaded through the daemon's config,
  so the same backend, device and precision) at batch 1, one execution context (its own
  device arena and stream) per camera thread; inputs copied to the device and outputs back
  on every frame, as a per-camera PyTorch loop would.

Started by ``bench/daemon.py`` as a child process; stops on SIGTERM (a thread inside an
inference finishes its frame first)::

    python bench/daemon_naive.py --backend cuda --config bench-daemon-cuda.yaml \\
        --endpoint tcp://127.0.0.1:5999
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: one frame's inference: (letterboxed float32 [3, h, w]) -> raw detector output [1, ...]
InferFn = Callable[[np.ndarray], np.ndarray]


def camera_loop(
    cid: str,
    path: str,
    make_infer: Callable[[], InferFn],
    input_size: tuple[int, int],
    post: dict[str, Any],
    publish: Callable[[str, dict[str, Any]], bool],
    stop: threading.Event,
) -> None:
    """One camera's thread: read what is due, infer, decode, publish; until ``stop``."""
    import cv2

    from edge_infer.pipeline.postprocess import decode
    from edge_infer.pipeline.preprocess import preprocess

    infer = make_infer()  # per thread: the GPU loop's own context and stream
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    fps = cap.get(cv2.CAP_PROP_FPS) or 15.0
    t0, index, seq = time.monotonic(), 0, 0
    while not stop.is_set():
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
        x, lb = preprocess(frame, input_size)
        out = np.asarray(infer(x), np.float32)
        dets = decode(out, [lb], **post)[0]
        payload = {
            "camera_id": cid,
            "seq": seq,
            "detections": len(dets),
            "latency_ms": {"total": (time.monotonic() - capture) * 1e3},
        }
        if not publish(cid, payload):
            break
        seq += 1
        if wait > 0:
            stop.wait(wait)


def cpu_model(
    model: str, config: str
) -> tuple[Callable[[], InferFn], tuple[int, int], dict[str, Any]]:
    """onnxruntime on one thread, one session shared by every camera thread; a model with
    dynamic height/width runs at the config's ``engine.build.input_size`` (the daemon's)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    if all(isinstance(d, int) for d in inp.shape[2:4]):
        h, w = (int(d) for d in inp.shape[2:4])
    else:
        from edge_infer.pipeline.config import load_config

        size = load_config(config).engine.build.input_size_wh()
        if size is None:
            raise SystemExit(f"{model}: dynamic height/width; set engine.build.input_size")
        w, h = size

    def make() -> InferFn:
        return lambda x: session.run(None, {inp.name: x[None]})[0]

    return make, (w, h), {}


def cuda_model(config: str) -> tuple[Callable[[], InferFn], tuple[int, int], dict[str, Any]]:
    """The daemon's engine (as its config resolves it), an execution context per thread."""
    from edge_infer.pipeline.config import load_config
    from edge_infer.pipeline.engine_setup import engine_for

    cfg = load_config(config)
    _, engine = engine_for(cfg)  # selects the device; builds the engine if it is missing
    inp = engine.inputs[0]
    out_name = cfg.engine.output_name or engine.outputs[0].name
    h, w = (int(d) for d in inp.shape[2:4])
    dtype = np.dtype(inp.dtype)
    p = cfg.postprocess
    post = {
        "layout": p.layout,
        "score_threshold": p.score_threshold,
        "iou_threshold": p.iou_threshold,
        "max_detections": p.max_detections,
        "scores": p.scores,
    }

    def make() -> InferFn:
        ctx = engine.create_context()  # its own device arena and stream

        def infer(x: np.ndarray) -> np.ndarray:
            return ctx.execute({inp.name: x[None].astype(dtype, copy=False)})[out_name]

        return infer

    return make, (w, h), post


def camera_files(config: str) -> list[tuple[str, str]]:
    """(id, path) of the config's file cameras."""
    import yaml

    cams = yaml.safe_load(Path(config).read_text())["cameras"]
    return [(c["id"], c["path"]) for c in cams]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("cpu", "cuda"), required=True)
    p.add_argument("--config", required=True, help="the benchmark's daemon config (cameras)")
    p.add_argument("--model", help="ONNX model (backend cpu)")
    p.add_argument("--endpoint", required=True, help="ZeroMQ endpoint to bind")
    args = p.parse_args(argv)
    import zmq

    if args.backend == "cpu":
        if not args.model:
            p.error("--backend cpu needs --model")
        make, size, post = cpu_model(args.model, args.config)
    else:
        make, size, post = cuda_model(args.config)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.bind(args.endpoint)
    lock = threading.Lock()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def publish(cid: str, payload: dict[str, Any]) -> bool:
        with lock:
            if stop.is_set():
                return False
            sock.send_multipart([f"det/naive/{cid}".encode(), json.dumps(payload).encode()])
            return True

    threads = [
        threading.Thread(
            target=camera_loop, args=(cid, path, make, size, post, publish, stop), daemon=True
        )
        for cid, path in camera_files(args.config)
    ]
    for t in threads:
        t.start()
    while not stop.wait(0.5):
        if not any(t.is_alive() for t in threads):  # every camera thread died: say so
            print("naive baseline: every camera thread stopped", file=sys.stderr)
            return 1
    for t in threads:
        t.join(30)
    sock.close(0)
    ctx.term()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
