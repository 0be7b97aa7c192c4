"""`edge-infer subscribe --endpoint EP`: print what the daemon publishes."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from edge_infer.errors import EdgeInferError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "subscribe",
        help="print detections published by a daemon; report gaps and restarts",
        description="Subscribe to a daemon's ZeroMQ PUB socket and print detections as a "
        "table (or JSON lines), reporting sequence gaps (lost messages) and restarts.",
    )
    p.add_argument(
        "--endpoint",
        action="append",
        help="endpoint to connect to, e.g. tcp://127.0.0.1:5556 (repeatable)",
    )
    p.add_argument(
        "--topic",
        action="append",
        default=None,
        help="topic prefix (repeatable; default: det/ and status/)",
    )
    p.add_argument("--count", type=int, default=0, help="stop after N detections messages")
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: never)")
    p.add_argument("--json", action="store_true", help="print each message as one JSON line")
    p.add_argument("--save-previews", metavar="DIR", help="write received previews as JPEG")
    p.add_argument(
        "--curve-keys", metavar="DIR", help="folder with client.key_secret and server.key (CURVE)"
    )
    p.add_argument(
        "--make-keys",
        metavar="KEYS_DIR",
        help="make CURVE keys instead of subscribing: the daemon's key pair in "
        "KEYS_DIR (publisher.curve.keys_dir; kept if present) and one subscriber's, "
        "authorized there; prints the folder to copy to the subscriber",
    )
    p.add_argument(
        "--client-name",
        default="client",
        help="name of the subscriber --make-keys makes keys for (default: client)",
    )
    p.set_defaults(func=run)


def _row(p: dict) -> str:
    dets = ", ".join(f"{d['label']} {d['score']:.2f}" for d in p["detections"][:4])
    more = f" (+{len(p['detections']) - 4})" if len(p["detections"]) > 4 else ""
    return (
        f"{p['camera_id']:<10} seq {p['seq']:>6} frame {p['frame_index']:>6} "
        f"{p['latency_ms']['total']:>7.1f} ms  {len(p['detections']):>2} det  {dets}{more}"
    )


def make_keys(args: argparse.Namespace) -> int:
    import re

    from edge_infer.pipeline.curve import make_keys as make

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", args.client_name):
        raise EdgeInferError(f"--client-name {args.client_name!r}: use letters, digits, '_.-'")
    bundle = make(Path(args.make_keys), args.client_name)
    print(f"daemon keys: {args.make_keys} (set publisher.curve.keys_dir to it)")
    print(
        f"subscriber '{args.client_name}': copy {bundle} to the subscriber, run "
        f"`edge-infer subscribe --curve-keys {bundle.name} ...` there, and delete it here"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    from edge_infer.pipeline.subscriber import SequenceTracker, Subscriber

    if args.make_keys:
        if args.endpoint:
            raise EdgeInferError("--make-keys makes keys and exits: drop --endpoint")
        return make_keys(args)
    if not args.endpoint:
        raise EdgeInferError(
            "subscribe needs --endpoint (e.g. tcp://127.0.0.1:5556), or --make-keys KEYS_DIR"
        )

    topics = args.topic or ["det/", "status/"]
    if args.save_previews and not any(t.startswith("preview") for t in topics):
        topics.append("preview/")
    previews = Path(args.save_previews) if args.save_previews else None
    if previews is not None:
        previews.mkdir(parents=True, exist_ok=True)
    tracker = SequenceTracker()
    received = 0
    end = time.monotonic() + args.seconds if args.seconds > 0 else float("inf")
    try:
        sub = Subscriber(args.endpoint, topics, curve_keys=args.curve_keys)
    except Exception as exc:  # zmq errors: bad endpoint syntax, unreadable keys
        raise EdgeInferError(f"cannot subscribe to {args.endpoint}: {exc}") from exc
    with sub:
        while time.monotonic() < end and (args.count <= 0 or received < args.count):
            try:
                msg = sub.recv(min(0.5, max(0.0, end - time.monotonic())))
            except ValueError as exc:
                print(f"malformed message: {exc}", file=sys.stderr)
                continue
            if msg is None:
                continue
            if msg.kind == "det":
                received += 1
                for event in tracker.observe(msg.payload):
                    print(f"# {event}", file=sys.stderr)
            elif msg.kind == "preview" and previews is not None and msg.jpeg:
                cam = msg.payload.get("camera_id", "cam")
                (previews / f"{cam}.jpg").write_bytes(msg.jpeg)
            if args.json:
                print(json.dumps({"topic": msg.topic, **msg.payload}), flush=True)
            elif msg.kind == "det":
                print(_row(msg.payload), flush=True)
            elif msg.kind == "status":
                s = msg.payload
                print(
                    f"# status: {len(s.get('cameras', {}))} cameras, "
                    f"{s.get('batches', 0)} batches, latency {s.get('latency_ms', {})}",
                    flush=True,
                )
    print(
        f"# received {received} detections messages, {tracker.gaps} lost, "
        f"{tracker.restarts} restart(s)",
        file=sys.stderr,
    )
    return 0
