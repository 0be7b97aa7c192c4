"""`edge-infer demo` pieces: its config validates, the mosaic tiles previews."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_infer.commands.demo import write_config
from edge_infer.pipeline.camera_config import RtspCamera
from edge_infer.pipeline.config import load_config
from edge_infer.pipeline.preview import mosaic


def test_demo_config_validates(tmp_path: Path) -> None:
    cams = [
        {"type": "file", "id": "cam00", "path": str(tmp_path / "cam00.mp4")},
        {"type": "rtsp", "id": "cam01", "url": "rtsp://127.0.0.1:8554/cam01", "transport": "udp"},
    ]
    write_config(
        tmp_path / "demo.yaml",
        cams,
        tmp_path / "m.onnx",
        tmp_path / "m.engine",
        "tcp://127.0.0.1:5556",
        ["person", "car"],
    )
    cfg = load_config(tmp_path / "demo.yaml")
    assert isinstance(cfg.cameras[1], RtspCamera) and cfg.cameras[1].transport == "udp"
    assert cfg.publisher.preview.enabled and cfg.engine.onnx == tmp_path / "m.onnx"


def test_mosaic_tiles_every_camera(tmp_path: Path) -> None:
    jpeg = cv2.imencode(".jpg", np.full((90, 160, 3), 200, np.uint8))[1].tobytes()
    assert mosaic({f"cam{k}": jpeg for k in range(6)}, tmp_path / "m.jpg")
    img = cv2.imread(str(tmp_path / "m.jpg"))
    assert img.shape == (2 * 180, 4 * 320, 3)
    assert not mosaic({}, tmp_path / "none.jpg")


def test_labels_stay_inside_their_tile_on_a_contrasting_box() -> None:
    from edge_infer.pipeline.preview import put_label

    for anchor in [(0, 0), (300, 175), (-50, -50), (319, 5), (150, 90)]:
        img = np.full((180, 320, 3), 127, np.uint8)
        put_label(img, "bicycle 0.93", anchor, (255, 255, 0))
        ys, xs = np.nonzero((img != 127).any(axis=2))
        assert len(xs) > 0  # drawn, and necessarily inside the array: nothing was clipped
        box = img[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        assert box.shape[1] >= 60  # the whole text fits: not cut at the tile edge
        # light box, dark letters
        inside = box.reshape(-1, 3)
        assert (inside == (255, 255, 0)).all(axis=1).mean() > 0.5
        assert (inside.sum(axis=1) < 200).any()
    dark = np.zeros((40, 120, 3), np.uint8)
    put_label(dark, "cam03", (0, 0), (32, 32, 32))
    assert (dark > 200).any()  # white letters on a dark box


def test_demo_summary_is_a_table() -> None:
    from edge_infer.commands.demo import summary_table

    status = {
        "cameras": {"cam00": {"state": "streaming"}},
        "latency_ms": {"total": {"p50": 80.0, "p90": 120.0, "p99": 180.5, "n": 100}},
        "batch_sizes": {"1": 3, "2": 50},
    }
    text = summary_table({"cam00": (120, 340), "cam01": (118, 200)}, 10.0, status)
    lines = text.splitlines()
    assert lines[0].split() == ["camera", "frames", "fps", "boxes", "state"]
    assert lines[2].split() == ["cam00", "120", "12.0", "340", "streaming"]
    assert lines[3].split() == ["cam01", "118", "11.8", "200", "?"]
    assert "total         80.0  120.0  180.5" in text
    assert lines[-2].split() == ["batch", "size", "1", "2"]
    assert lines[-1].split() == ["batches", "3", "50"]
