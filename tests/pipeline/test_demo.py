"""`edge-infer demo` pieces: its config validates, the mosaic tiles previews."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_infer.commands.demo import write_config
from edge_infer.pipeline.config import RtspCamera, load_config
from edge_infer.pipeline.preview import mosaic


def test_demo_config_validates(tmp_path: Path) -> None:
    cams = [{"type": "file", "id": "cam00", "path": str(tmp_path / "cam00.mp4")},
            {"type": "rtsp", "id": "cam01", "url": "rtsp://127.0.0.1:8554/cam01",
             "transport": "udp"}]
    write_config(tmp_path / "demo.yaml", cams, tmp_path / "m.onnx", tmp_path / "m.engine",
                 "tcp://127.0.0.1:5556", ["person", "car"])
    cfg = load_config(tmp_path / "demo.yaml")
    assert isinstance(cfg.cameras[1], RtspCamera) and cfg.cameras[1].transport == "udp"
    assert cfg.publisher.preview.enabled and cfg.engine.onnx == tmp_path / "m.onnx"


def test_mosaic_tiles_every_camera(tmp_path: Path) -> None:
    jpeg = cv2.imencode(".jpg", np.full((90, 160, 3), 200, np.uint8))[1].tobytes()
    assert mosaic({f"cam{k}": jpeg for k in range(6)}, tmp_path / "m.jpg")
    img = cv2.imread(str(tmp_path / "m.jpg"))
    assert img.shape == (2 * 180, 4 * 320, 3)
    assert not mosaic({}, tmp_path / "none.jpg")
