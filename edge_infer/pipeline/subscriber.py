"""A typed ZeroMQ subscriber for the daemon's topics, with loss and restart detection.

:class:`Subscriber` receives ``[topic, payload(, jpeg)]`` messages with a timeout;
:class:`SequenceTracker` turns per-camera sequence numbers and boot ids into reports of
gaps (lost messages) and restarts (a new boot id), as ``edge-infer subscribe`` prints them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

log = logging.getLogger(__name__)


@dataclass
class Message:
    """One received message: topic, decoded JSON payload, and a JPEG for previews."""

    topic: str
    payload: dict[str, Any]
    jpeg: bytes | None = None

    @property
    def kind(self) -> str:
        return self.topic.split("/", 1)[0]


class Subscriber:
    """SUB socket connected to ``endpoints``, subscribed to ``topics`` (prefixes)."""

    def __init__(
        self,
        endpoints: list[str] | str,
        topics: list[str] | None = None,
        *,
        rcv_hwm: int = 1000,
        curve_keys: str | Path | None = None,
    ) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, rcv_hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        if curve_keys is not None:
            self._curve_client(Path(curve_keys))
        for t in topics or [""]:
            self.sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        for ep in [endpoints] if isinstance(endpoints, str) else endpoints:
            self.sock.connect(ep)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)

    def _curve_client(self, keys: Path) -> None:
        """``keys/client.key_secret`` (this client) and ``keys/server.key`` (the daemon)."""
        from edge_infer.pipeline.curve import read_key_file, secret_exposure

        pub, secret = read_key_file(keys / "client.key_secret", secret=True)
        server_pub, _ = read_key_file(keys / "server.key", secret=False)
        exposure = secret_exposure(keys / "client.key_secret")
        if exposure is not None:
            log.warning("CURVE: %s", exposure)
        self.sock.curve_secretkey = secret
        self.sock.curve_publickey = pub
        self.sock.curve_serverkey = server_pub

    def recv(self, timeout_s: float) -> Message | None:
        """The next message, or ``None`` after ``timeout_s``; malformed ones raise ValueError."""
        if not self.poller.poll(int(timeout_s * 1000)):
            return None
        parts = self.sock.recv_multipart()
        if len(parts) < 2:
            raise ValueError(f"expected [topic, payload], got {len(parts)} part(s)")
        topic = parts[0].decode("utf-8", "replace")
        payload = json.loads(parts[1])
        return Message(topic, payload, parts[2] if len(parts) > 2 else None)

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class SequenceTracker:
    """Per-camera sequence continuity across messages, per boot id."""

    boot_id: str | None = None
    last_seq: dict[str, int] = field(default_factory=dict)
    last_global: int | None = None
    gaps: int = 0  # lost messages (sum of gap sizes)
    restarts: int = 0
    reordered: int = 0
    received: int = 0

    def observe(self, payload: dict[str, Any]) -> list[str]:
        """Record one detections payload; returns human-readable events (gaps, restarts)."""
        events = []
        boot, cam, seq = payload["boot_id"], payload["camera_id"], int(payload["seq"])
        self.received += 1
        if self.boot_id is not None and boot != self.boot_id:
            self.restarts += 1
            self.last_seq.clear()
            self.last_global = None
            events.append(f"restart: boot id {self.boot_id[:8]} → {boot[:8]}")
        self.boot_id = boot
        prev = self.last_seq.get(cam)
        if prev is not None:
            if seq > prev + 1:
                self.gaps += seq - prev - 1
                events.append(
                    f"gap: camera {cam} lost {seq - prev - 1} message(s) ({prev} → {seq})"
                )
            elif seq <= prev:
                self.reordered += 1
                events.append(f"out of order: camera {cam} seq {seq} after {prev}")
        self.last_seq[cam] = seq
        self.last_global = int(payload["global_seq"])
        return events
