"""The daemon on the CUDA backend without a GPU: ``inference.backend: cuda`` on the emulator.

Two daemons (child processes) run the tiny detector on the same two file cameras (320x180
and 240x240, so one batch mixes letterboxes): one on the CPU backend, one on the CUDA
backend's emulator with its hazard checker on (the emulator's default: an unordered pair of
conflicting device accesses fails the batch, and a failed batch publishes nothing). Each
builds its engine from ONNX on first start. On the CUDA daemon the worker letterboxes on the
device straight into the engine's bound input and decodes + NMS-filters on the device; the
test checks that it publishes exactly what the CPU daemon publishes for the same source
frame (detections as JSON: classes, labels, scores and boxes as rounded in the payload).

Both engines are FP32 so the comparison can be exact: an FP16 engine's outputs differ from
the CPU's within 2e-3 of the output scale, which can move a published box by 0.1 px.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import onnx
import pytest

from edge_infer.pipeline.rtsp_loopback import free_port
from edge_infer.pipeline.subscriber import Subscriber
from tests.pipeline.helpers import expected_frame_boxes, start_daemon, tiny_detector, write_config

PUBLISH_S = 3.0


def _run_daemon(tmp: Path, cameras: list[dict], onnx_path: Path, inference: dict) -> dict:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cfg = write_config(
        tmp / "daemon.yaml",
        tmp / "tiny.engine",
        cameras,
        endpoint,
        engine={
            "onnx": str(onnx_path),
            "build": {"min_batch": 1, "opt_batch": 2, "max_batch": 2, "precision": "fp32"},
        },
        inference=inference,
    )
    proc = start_daemon(cfg, tmp / "daemon.log")
    msgs = []
    try:
        with Subscriber(endpoint, ["det/testdev/"]) as sub:
            first = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                m = sub.recv(0.2)
                if m is None:
                    continue
                msgs.append(m.payload)
                first = first or time.monotonic()
                if time.monotonic() - first > PUBLISH_S:
                    break
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return {"msgs": msgs, "rc": rc, "log": (tmp / "daemon.log").read_text()}


@pytest.fixture(scope="module")
def runs(synth_cameras: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    from edge_infer.synth.video import render_camera

    tmp = tmp_path_factory.mktemp("cuda-e2e")
    render_camera(tmp, 9, seconds=2.0, fps=15.0, width=240, height=240, codec="mjpeg")
    cameras = [
        {"type": "file", "id": "wide", "path": str(synth_cameras / "cam00.mp4")},
        {"type": "file", "id": "square", "path": str(tmp / "cam09.avi")},
    ]
    onnx_path = tmp / "tiny.onnx"
    onnx.save(tiny_detector(), str(onnx_path))
    out = {}
    for name, inference in (
        ("cpu", {"backend": "cpu", "workers": 1}),
        ("cuda", {"backend": "cuda", "device": "emu", "workers": 2}),
    ):
        folder = tmp / name
        folder.mkdir()
        out[name] = _run_daemon(folder, cameras, onnx_path, inference)
    return out


def _by_frame(msgs: list[dict]) -> dict[tuple[str, int], list[dict]]:
    """Detections per (camera, source frame number): looped files repeat frames exactly."""
    return {(p["camera_id"], p["source"]["frame"]): p["detections"] for p in msgs}


def test_cuda_daemon_builds_and_runs_on_the_emulator(runs: dict[str, dict]) -> None:
    cuda = runs["cuda"]
    assert cuda["rc"] == 0, cuda["log"][-3000:]
    assert "backend cuda (device emu)" in cuda["log"]
    assert "for backend cuda" in cuda["log"]  # built on first start, for the configured one
    for k in range(2):
        assert f"worker {k}: pre- and post-processing on the engine's device" in cuda["log"]
    assert "on the engine's device" not in runs["cpu"]["log"]
    # the batcher's latency model starts from each planned batch size timed on the device;
    # the CPU daemon warms up as before
    for n in (1, 2):
        assert f"warm-up on the device: batch {n}:" in cuda["log"]
    assert "warm-up: batch 1:" in runs["cpu"]["log"]
    assert "warm-up on the device" not in runs["cpu"]["log"]
    # a pool of pinned decode buffers per camera on cuda, none on the CPU
    assert "cameras decode into 4 pinned buffers each" in cuda["log"]
    pooled = re.search(r"frame pools: (\d+) frames decoded into (\d+) pinned", cuda["log"])
    assert pooled and int(pooled[1]) >= 10 and 2 <= int(pooled[2]) <= 8, cuda["log"][-2000:]
    assert "pinned buffers" not in runs["cpu"]["log"]
    assert "Traceback" not in cuda["log"] and "failed" not in cuda["log"], cuda["log"][-3000:]
    assert {p["model"]["precision"] for p in cuda["msgs"]} == {"fp32"}
    per_camera = {cam: 0 for cam in ("wide", "square")}
    for p in cuda["msgs"]:
        per_camera[p["camera_id"]] += 1
    assert min(per_camera.values()) >= 5, per_camera


def test_cuda_daemon_publishes_exactly_what_the_cpu_daemon_publishes(
    runs: dict[str, dict],
) -> None:
    cpu, cuda = _by_frame(runs["cpu"]["msgs"]), _by_frame(runs["cuda"]["msgs"])
    common = sorted(set(cpu) & set(cuda))
    assert len({cam for cam, _ in common}) == 2 and len(common) >= 10, (len(cpu), len(cuda))
    for key in common:
        assert cuda[key] == cpu[key], key
    # and both are the boxes the tiny detector is known to predict (not just equally wrong)
    want = {"wide": expected_frame_boxes(320, 180), "square": expected_frame_boxes(240, 240)}
    for (cam, _), dets in cuda.items():
        assert sorted(d["class_id"] for d in dets) == sorted(want[cam])
        for d in dets:
            assert d["box"] == pytest.approx(list(want[cam][d["class_id"]]), abs=1.0)
