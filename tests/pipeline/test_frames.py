"""Frames and the latest-frame hub live apart from the OpenCV sources."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from edge_infer.pipeline.frames import Frame, FrameHub


def test_batcher_and_frames_import_without_cv2() -> None:
    code = (
        "import sys, edge_infer.pipeline.batcher, edge_infer.pipeline.frames; "
        "print(sorted(m for m in ('cv2', 'zmq') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


def test_hub_keeps_the_latest_frame_per_camera() -> None:
    hub = FrameHub()
    image = np.zeros((2, 2, 3), np.uint8)
    assert hub.put(Frame("a", 0, image, 1.0, 1.0)) is False
    assert hub.put(Frame("a", 1, image, 2.0, 2.0)) is True  # the untaken frame is replaced
    hub.put(Frame("b", 0, image, 2.0, 2.0))
    assert sorted((f.camera_id, f.index) for f in hub.take_all()) == [("a", 1), ("b", 0)]
    assert hub.pending() == 0 and hub.takes("a") == 1
