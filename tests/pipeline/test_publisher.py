"""Publisher and subscriber over real ZeroMQ sockets; payloads checked by JSON Schema."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import zmq

from edge_infer.pipeline.config import PublisherConfig
from edge_infer.pipeline.frames import Frame
from edge_infer.pipeline.postprocess import Detections
from edge_infer.pipeline.preprocess import letterbox_geometry
from edge_infer.pipeline.publisher import ModelInfo, Publisher, detection_payload, load_schema
from edge_infer.pipeline.subscriber import SequenceTracker, Subscriber
from edge_infer.pipeline.workers import BatchResult, FrameResult

MODEL = ModelInfo("tiny", "ab" * 32, "fp32")
BOOT = "0123456789abcdef0123456789abcdef"


def batch(cams: list[str], boxes: int = 1, t: float | None = None) -> BatchResult:
    t = time.monotonic() if t is None else t
    frames = []
    for i, cam in enumerate(cams):
        img = np.zeros((180, 320, 3), np.uint8)
        d = Detections(
            np.array([[10, 20, 110, 90]] * boxes, np.float32),
            np.full(boxes, 0.8, np.float32),
            np.arange(boxes, dtype=np.int64),
        )
        frames.append(
            FrameResult(
                Frame(cam, 7 + i, img, t - 0.05, time.time() - 0.05),
                d,
                letterbox_geometry(320, 180, 64, 64),
            )
        )
    return BatchResult(frames, 0, t - 0.02, t, time.time() - 0.02, time.time())


def test_schema_is_valid_and_payload_conforms() -> None:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    b = batch(["c0"], boxes=3)
    p = detection_payload(
        b.frames[0],
        b,
        device_id="dev",
        boot_id=BOOT,
        seq=4,
        global_seq=9,
        model=MODEL,
        class_names=["person"],
        publish_wall=time.time(),
        publish_ts=time.monotonic(),
    )
    jsonschema.validate(p, schema)
    assert [d["label"] for d in p["detections"]] == ["person", "class1", "class2"]
    assert p["detections"][0]["box"] == [10.0, 20.0, 110.0, 90.0]
    assert p["image"] == {"width": 320, "height": 180} and p["frame_index"] == 7
    lat = p["latency_ms"]
    assert lat["queue"] == 30.0 and lat["inference"] == 20.0 and lat["total"] >= 50
    bad = dict(p, seq=-1)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    empty = batch(["c0"], boxes=0)
    q = detection_payload(
        empty.frames[0],
        empty,
        device_id="dev",
        boot_id=BOOT,
        seq=0,
        global_seq=0,
        model=MODEL,
        class_names=[],
        publish_wall=0.0,
        publish_ts=time.monotonic(),
    )
    jsonschema.validate(q, schema)
    assert q["detections"] == []


def _publisher(endpoint: str, **kw) -> Publisher:
    cfg = PublisherConfig(endpoints=[endpoint], status_interval_s=0.2, **kw)
    return Publisher(
        cfg, "dev", BOOT, MODEL, ["person"], lambda: {"schema": "edge_infer.status", "cameras": {}}
    )


def _collect(sub: Subscriber, kinds: set[str], n: int, timeout: float = 5.0) -> list:
    out, end = [], time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        msg = sub.recv(0.2)
        if msg is not None and msg.kind in kinds:
            out.append(msg)
    return out


def test_roundtrip_topics_sequences_and_status(tmp_path: Path) -> None:
    ep = f"ipc://{tmp_path}/pub.ipc"
    pub = _publisher(ep)
    pub.start()
    with Subscriber(ep, ["det/dev/", "status/dev"]) as sub:
        assert _collect(sub, {"status"}, 1)  # connected: status arrives periodically
        for _ in range(3):
            pub.submit(batch(["a", "b"]))
        msgs = _collect(sub, {"det"}, 6)
        status = _collect(sub, {"status"}, 1)
    pub.close(2.0)
    assert [m.topic for m in msgs] == ["det/dev/a", "det/dev/b"] * 3
    assert [m.payload["seq"] for m in msgs] == [0, 0, 1, 1, 2, 2]
    assert [m.payload["global_seq"] for m in msgs] == list(range(6))
    tracker = SequenceTracker()
    for m in msgs:
        assert tracker.observe(m.payload) == []
    assert status and status[0].payload["published"] == 6


def test_previews_are_jpeg_at_low_rate(tmp_path: Path) -> None:
    ep = f"ipc://{tmp_path}/prev.ipc"
    pub = _publisher(ep, preview={"enabled": True, "interval_s": 60, "max_width": 160})
    pub.start()
    with Subscriber(ep, ["preview/", "status/"]) as sub:
        _collect(sub, {"status"}, 1)
        for _ in range(3):
            pub.submit(batch(["a"]))
        previews = _collect(sub, {"preview"}, 3, timeout=1.5)
    pub.close(2.0)
    assert len(previews) == 1  # one per interval per camera
    p = previews[0]
    assert p.topic == "preview/dev/a" and p.jpeg[:2] == b"\xff\xd8"
    assert p.payload["width"] == 160


def test_slow_subscriber_does_not_block_publishing(tmp_path: Path) -> None:
    """A subscriber that never reads: PUB drops at the HWM, publishing stays fast."""
    ep = f"ipc://{tmp_path}/slow.ipc"
    pub = _publisher(ep, send_hwm=10)
    pub.start()
    ctx = zmq.Context()
    slow = ctx.socket(zmq.SUB)
    slow.setsockopt(zmq.RCVHWM, 10)
    slow.setsockopt(zmq.RCVBUF, 4096)
    slow.setsockopt(zmq.SUBSCRIBE, b"")
    slow.connect(ep)
    time.sleep(0.3)
    t0 = time.monotonic()
    for _ in range(500):
        pub.submit(batch(["a", "b", "c", "d"], boxes=20))
        while pub._queue.qsize() > 100:  # let the thread keep up
            time.sleep(0.001)
    pub.close(5.0)
    elapsed = time.monotonic() - t0
    slow.close(0)
    ctx.term()
    assert pub.global_seq == 2000  # every message was handed to ZeroMQ
    assert elapsed < 20


def test_tracker_reports_gaps_and_restarts() -> None:
    t = SequenceTracker()
    base = {"boot_id": "a" * 32, "camera_id": "c", "global_seq": 0}
    assert t.observe({**base, "seq": 5}) == []  # joining late is not a gap
    assert t.observe({**base, "seq": 6}) == []
    assert "lost 2" in t.observe({**base, "seq": 9})[0]
    assert "restart" in t.observe({**base, "boot_id": "b" * 32, "seq": 0})[0]
    assert "out of order" in t.observe({**base, "boot_id": "b" * 32, "seq": 0})[0]
    assert (t.gaps, t.restarts, t.reordered, t.received) == (2, 1, 1, 5)


def test_curve_authenticates_clients(tmp_path: Path) -> None:
    from zmq.auth import create_certificates

    keys = tmp_path / "keys"
    (keys / "authorized_clients").mkdir(parents=True)
    create_certificates(str(keys), "server")
    create_certificates(str(keys / "authorized_clients"), "client")
    client_keys = tmp_path / "client"
    client_keys.mkdir()
    (client_keys / "client.key_secret").write_bytes(
        (keys / "authorized_clients" / "client.key_secret").read_bytes()
    )
    (client_keys / "server.key").write_bytes((keys / "server.key").read_bytes())
    (keys / "authorized_clients" / "client.key_secret").unlink()  # the server has no secrets
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    create_certificates(str(stranger), "client")
    (stranger / "server.key").write_bytes((keys / "server.key").read_bytes())

    ep = f"ipc://{tmp_path}/curve.ipc"
    pub = _publisher(ep, curve={"enabled": True, "keys_dir": str(keys)})
    pub.start()
    try:
        with (
            Subscriber(ep, ["status/"], curve_keys=client_keys) as ok_sub,
            Subscriber(ep, ["status/"], curve_keys=stranger) as bad_sub,
        ):
            got = _collect(ok_sub, {"status"}, 1, timeout=5)
            assert got and json.dumps(got[0].payload)
            assert _collect(bad_sub, {"status"}, 1, timeout=1.0) == []
    finally:
        pub.close(2.0)


def test_subscribe_command_prints_and_reports_gaps(tmp_path: Path, capsys) -> None:
    import threading

    from edge_infer.cli import main

    ep = f"ipc://{tmp_path}/cli.ipc"
    pub = _publisher(ep, preview={"enabled": True, "interval_s": 60})
    pub.start()
    result: list[int] = []
    t = threading.Thread(
        target=lambda: result.append(
            main(
                [
                    "subscribe",
                    "--endpoint",
                    ep,
                    "--count",
                    "4",
                    "--seconds",
                    "10",
                    "--json",
                    "--save-previews",
                    str(tmp_path / "prev"),
                ]
            )
        )
    )
    t.start()
    time.sleep(1.0)  # let the subscriber connect
    pub.submit(batch(["a"]))
    end = time.monotonic() + 5
    while pub.global_seq < 1 and time.monotonic() < end:
        time.sleep(0.01)
    pub.seq["a"] = 5  # the next message of camera a skips 4 sequence numbers
    pub.submit(batch(["a", "b"]))
    pub.submit(batch(["b"]))
    t.join(15)
    pub.close(2.0)
    out, err = capsys.readouterr()
    assert result == [0]
    lines = [json.loads(line) for line in out.splitlines()]
    dets = [d for d in lines if d["topic"].startswith("det/")]
    assert [(d["camera_id"], d["seq"]) for d in dets] == [("a", 0), ("a", 5), ("b", 0), ("b", 1)]
    assert "gap: camera a lost 4 message(s)" in err
    assert "received 4 detections messages, 4 lost, 0 restart(s)" in err
    assert sorted(p.name for p in (tmp_path / "prev").iterdir()) == ["a.jpg", "b.jpg"]


def test_results_older_than_max_age_are_dropped_counted_and_seen_as_gaps(tmp_path: Path) -> None:
    now = [1000.0]
    cfg = PublisherConfig(endpoints=[f"ipc://{tmp_path}/age.ipc"], max_age_ms=500)
    pub = Publisher(
        cfg, "dev", BOOT, MODEL, ["person"], lambda: {"cameras": {}}, clock=lambda: now[0]
    )
    sent: list[list[bytes]] = []
    pub._sock = object()  # what _send needs; replaced below so nothing touches a socket
    pub._send = sent.append  # type: ignore[method-assign]
    pub.publish_batch(batch(["a", "b"], t=1000.0))  # captured 50 ms ago: sent
    now[0] = 1000.6
    pub.publish_batch(batch(["a"], t=1000.0))  # 650 ms old: dropped
    pub.publish_batch(batch(["a"], t=1000.4))  # 250 ms old: sent
    pub._sock = None
    seqs = [(json.loads(p[1])["camera_id"], json.loads(p[1])["seq"]) for p in sent]
    assert seqs == [("a", 0), ("b", 0), ("a", 2)]
    assert pub.stale_dropped == 1
    tracker = SequenceTracker()
    events = [e for p in sent for e in tracker.observe(json.loads(p[1]))]
    assert any("lost 1" in e for e in events)
    sent.clear()
    pub._sock = object()
    pub.publish_status()
    status = json.loads(sent[0][1])
    assert status["publisher_stale_dropped"] == 1
    pub._sock = None
    cfg0 = cfg.model_copy(update={"max_age_ms": 0.0})
    pub0 = Publisher(cfg0, "dev", BOOT, MODEL, [], dict, clock=lambda: 1e9)
    pub0._sock, pub0._send = object(), sent.append  # type: ignore[method-assign]
    pub0.publish_batch(batch(["a"], t=0.0))  # ancient, but 0 never drops
    pub0._sock = None
    assert pub0.stale_dropped == 0
