"""Detections out over ZeroMQ PUB.

Messages are multipart ``[topic, payload]``: ``det/<device>/<camera>`` with a JSON payload
following ``schemas/detections-v1.json`` (published for every processed frame, also with
no detections), ``status/<device>`` every few seconds, and optionally
``preview/<device>/<camera>`` as ``[topic, JSON meta, JPEG]``. The socket belongs to one
thread, fed by a bounded queue; PUB never blocks (messages beyond the send high-water mark
are dropped by ZeroMQ for that subscriber only), so a slow subscriber cannot slow the
pipeline. Optional CURVE encryption authenticates clients against a keys folder.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import zmq

from edge_infer.errors import ConfigError
from edge_infer.pipeline.config import PublisherConfig
from edge_infer.pipeline.curve import CLIENTS, server_keys
from edge_infer.pipeline.endpoints import ipc_path_problem
from edge_infer.pipeline.preview import draw_detections, label_of
from edge_infer.pipeline.workers import BatchResult, FrameResult

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


def load_schema(name: str = "detections-v1") -> dict[str, Any]:
    """The JSON Schema of a payload (``detections-v1`` or ``status-v1``)."""
    return json.loads((SCHEMA_DIR / f"{name}.json").read_text())


@dataclass(frozen=True)
class ModelInfo:
    """The model fields published with every detections message."""

    name: str
    sha256: str
    precision: str

    @staticmethod
    def from_engine(engine: Any, name: str | None = None) -> ModelInfo:
        rec = engine.build_record
        opts = rec.get("options") or {}
        # the ONNX file's name says more than its graph name (often "main_graph")
        path = rec.get("model_path")
        default = Path(str(path)).stem if path else rec.get("model_name") or "model"
        return ModelInfo(
            name or str(default),
            str(rec.get("model_sha256") or ""),
            str(opts.get("precision") or "fp32"),
        )


def detection_payload(
    r: FrameResult,
    batch: BatchResult,
    *,
    device_id: str,
    boot_id: str,
    seq: int,
    global_seq: int,
    model: ModelInfo,
    class_names: list[str],
    publish_wall: float,
    publish_ts: float,
) -> dict[str, Any]:
    """The version-1 detections message of one frame (see ``schemas/detections-v1.json``)."""
    f, d = r.frame, r.detections
    h, w = f.image.shape[:2]
    dets = [
        {
            "class_id": int(c),
            "label": label_of(int(c), class_names),
            "score": round(float(s), 4),
            "box": [round(float(v), 1) for v in box],
        }
        for box, s, c in zip(d.boxes, d.scores, d.classes)
    ]
    return {
        "schema": "edge_infer.detections",
        "schema_version": SCHEMA_VERSION,
        "device_id": device_id,
        "camera_id": f.camera_id,
        "boot_id": boot_id,
        "seq": seq,
        "global_seq": global_seq,
        "frame_index": f.index,
        "source": {
            "pts_ms": None if f.source_pts_ms is None else round(f.source_pts_ms, 3),
            "frame": f.source_frame,
        },
        "timestamps": {
            "capture": f.capture_wall,
            "inference_start": batch.infer_start_wall,
            "inference_end": batch.infer_end_wall,
            "publish": publish_wall,
        },
        "latency_ms": {
            "queue": round(max(0.0, batch.infer_start_ts - f.capture_ts) * 1e3, 3),
            "inference": round(max(0.0, batch.infer_end_ts - batch.infer_start_ts) * 1e3, 3),
            "total": round(max(0.0, publish_ts - f.capture_ts) * 1e3, 3),
        },
        "image": {"width": int(w), "height": int(h)},
        "model": {"name": model.name, "sha256": model.sha256, "precision": model.precision},
        "detections": dets,
    }


def setup_curve_server(ctx: zmq.Context, sock: zmq.Socket, keys_dir: Path) -> Any:
    """CURVE server keys from ``keys_dir/server.key_secret``; clients must be listed in
    ``keys_dir/authorized_clients/*.key``. Returns the running authenticator."""
    from zmq.auth.thread import ThreadAuthenticator

    public, private = server_keys(keys_dir)
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(keys_dir / CLIENTS))
    sock.curve_secretkey = private
    sock.curve_publickey = public
    sock.curve_server = True
    return auth


class Publisher:
    """The PUB socket and the thread that owns it."""

    def __init__(
        self,
        cfg: PublisherConfig,
        device_id: str,
        boot_id: str,
        model: ModelInfo,
        class_names: list[str],
        status_fn: Callable[[], dict[str, Any]],
        on_published: Callable[[FrameResult, BatchResult, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.device_id = device_id
        self.boot_id = boot_id
        self.model = model
        self.class_names = class_names
        self.status_fn = status_fn
        self.on_published = on_published
        self.clock = clock
        self.global_seq = 0
        self.seq: dict[str, int] = {}
        self.dropped = 0  # results the queue had no room for
        self.stale_dropped = 0  # results older than cfg.max_age_ms when their turn came
        self.sent = 0
        self._queue: queue.Queue[BatchResult | None] = queue.Queue(maxsize=cfg.queue_size)
        self._last_preview: dict[str, float] = {}
        self._ctx: zmq.Context | None = None
        self._sock: zmq.Socket | None = None
        self._auth: Any = None
        self._thread = threading.Thread(target=self._loop, name="publisher", daemon=True)

    def bind(self) -> list[str]:
        """Create the socket and bind every endpoint; returns the bound endpoints."""
        self._ctx = zmq.Context()
        sock = self._ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.SNDHWM, self.cfg.send_hwm)
        sock.setsockopt(zmq.LINGER, 500)
        if self.cfg.curve.enabled and self.cfg.curve.keys_dir is not None:
            self._auth = setup_curve_server(self._ctx, sock, self.cfg.curve.keys_dir)
        bound = []
        for ep in self.cfg.endpoints:
            # checked again here: the file may have appeared since the config was read
            problem = ipc_path_problem(Path(ep[6:]), ep) if ep.startswith("ipc://") else None
            if problem is not None:
                sock.close(0)
                raise ConfigError(f"publisher.endpoints: {problem}")
            try:
                sock.bind(ep)
            except zmq.ZMQError as exc:
                sock.close(0)
                raise ConfigError(f"publisher.endpoints: cannot bind {ep}: {exc}") from None
            bound.append(sock.getsockopt_string(zmq.LAST_ENDPOINT))
        self._sock = sock
        return bound

    def start(self) -> None:
        if self._sock is None:
            self.bind()
        self._thread.start()

    def submit(self, result: BatchResult) -> bool:
        """Queue a finished batch; False (counted) if the queue is full."""
        try:
            self._queue.put_nowait(result)
            return True
        except queue.Full:
            self.dropped += len(result.frames)
            return False

    def close(self, timeout: float = 5.0) -> bool:
        """Publish what is queued and a last status, then close; False if that timed out."""
        if self._thread.is_alive():
            try:
                self._queue.put(None, timeout=max(0.0, timeout))
            except queue.Full:
                log.warning("publisher queue full at shutdown")
            self._thread.join(timeout)
        if self._thread.is_alive():
            # still sending: the thread closes its socket when it finishes; terminating the
            # context now would block until then
            log.warning(
                "publisher did not finish within %.1f s; %d result(s) unsent",
                timeout,
                self._queue.qsize(),
            )
            return False
        if self._sock is not None:  # never started
            self._sock.close(linger=0)
            self._sock = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        return True

    def _send(self, parts: list[bytes]) -> None:
        if self._sock is None:
            return
        try:
            self._sock.send_multipart(parts, flags=zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:  # only when every peer is at its HWM; PUB drops otherwise anyway
            self.dropped += 1

    def publish_batch(self, batch: BatchResult) -> None:
        max_age = self.cfg.max_age_ms / 1e3
        for r in batch.frames:
            cam = r.frame.camera_id
            seq = self.seq.get(cam, 0)
            now_ts, now_wall = self.clock(), time.time()
            if max_age > 0 and now_ts - r.frame.capture_ts > max_age:
                # skipping the seq makes the loss visible to subscribers as a gap
                self.seq[cam] = seq + 1
                self.stale_dropped += 1
                continue
            payload = detection_payload(
                r,
                batch,
                device_id=self.device_id,
                boot_id=self.boot_id,
                seq=seq,
                global_seq=self.global_seq,
                model=self.model,
                class_names=self.class_names,
                publish_wall=now_wall,
                publish_ts=now_ts,
            )
            self._send(
                [
                    f"det/{self.device_id}/{cam}".encode(),
                    json.dumps(payload, separators=(",", ":")).encode(),
                ]
            )
            self.seq[cam] = seq + 1
            self.global_seq += 1
            if self.on_published is not None:
                self.on_published(r, batch, now_ts)
            if self.cfg.preview.enabled:
                self._maybe_preview(r, payload, now_ts)

    def _maybe_preview(self, r: FrameResult, payload: dict[str, Any], now: float) -> None:
        cam = r.frame.camera_id
        last = self._last_preview.get(cam)
        if last is not None and now - last < self.cfg.preview.interval_s:
            return
        self._last_preview[cam] = now
        p = self.cfg.preview
        img = draw_detections(r.frame.image, r, self.class_names, p.max_width)
        ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, p.jpeg_quality])
        if not ok:
            log.warning("camera %s: preview JPEG encoding failed", cam)
            return
        meta = {
            "camera_id": cam,
            "seq": payload["seq"],
            "boot_id": self.boot_id,
            "width": img.shape[1],
            "height": img.shape[0],
            "capture": payload["timestamps"]["capture"],
        }
        self._send(
            [f"preview/{self.device_id}/{cam}".encode(), json.dumps(meta).encode(), jpeg.tobytes()]
        )

    def publish_status(self) -> None:
        status = self.status_fn()
        status.update(
            {
                "published": self.global_seq,
                "publisher_dropped": self.dropped,
                "publisher_stale_dropped": self.stale_dropped,
            }
        )
        self._send(
            [
                f"status/{self.device_id}".encode(),
                json.dumps(status, separators=(",", ":")).encode(),
            ]
        )

    def _loop(self) -> None:
        try:
            self._publish_until_closed()
        finally:
            if self._sock is not None:
                self._sock.close(linger=500)
                self._sock = None

    def _publish_until_closed(self) -> None:
        next_status = self.clock()
        while True:
            timeout = max(0.0, next_status - self.clock())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = ...
            if item is None:
                break
            if isinstance(item, BatchResult):
                try:
                    self.publish_batch(item)
                except Exception:  # never lose the socket thread: log and go on
                    log.exception("publishing a batch failed")
            if self.clock() >= next_status:
                self._status_safely()
                next_status = self.clock() + self.cfg.status_interval_s
        self._status_safely()

    def _status_safely(self) -> None:
        try:
            self.publish_status()
        except Exception:  # a broken status must not stop detections
            log.exception("publishing status failed")
