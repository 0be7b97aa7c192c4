"""bench/camera_accuracy.py end to end on two tiny cameras, with oracle and broken detectors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bench import camera_accuracy as ca
from edge_infer.synth.camera_eval import load_camera_truth
from edge_infer.synth.detect_eval import ModelRunner
from edge_infer.synth.video import write_videos

NC = 6


@pytest.fixture(scope="module")
def cameras(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    folder = tmp_path_factory.mktemp("cams")
    write_videos(folder, 2, 0.6, 5.0, 640, 360, codec="mjpeg", seed=4, workers=1, progress=False)
    return folder, json.loads((folder / "manifest.json").read_text())["cameras"]


Edit = Callable[[np.ndarray], np.ndarray]


def _oracle(folder: Path, cams: list[dict], edit: Edit) -> ModelRunner:
    """A 'detector' that outputs each frame's ground truth (in order), changed by ``edit``."""
    truth = [t for c in cams for t in load_camera_truth(folder / c["ground_truth"])]
    pending = iter(truth)

    def run(x: np.ndarray) -> np.ndarray:
        frames = [next(pending) for _ in range(len(x))]
        n = max(1, max(len(f.classes) for f in frames))
        out = np.zeros((len(x), 4 + NC, n), np.float32)
        for i, f in enumerate(frames):
            b = f.boxes * 0.5 + np.array([0, 70, 0, 70])  # 640x360 letterboxed into 320x320
            k = len(f.classes)
            out[i, 0, :k], out[i, 1, :k] = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
            out[i, 2, :k], out[i, 3, :k] = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
            out[i, 4 + f.classes, np.arange(k)] = 0.9
        return edit(out)

    return ModelRunner(run, (320, 320), 8, "oracle")


def test_perfect_detections_score_full_precision_and_recall(cameras) -> None:
    folder, cams = cameras
    r = ca.measure(_oracle(folder, cams, lambda o: o), cams, folder, batch=2)
    op = r["operating_point"]
    assert op["threshold"] == ca.POST.score_threshold
    assert op["precision"] == 1.0 and op["tp"] > 10
    # NMS may merge two same-class objects that overlap a lot; nothing else is lost
    assert op["recall"] >= 0.95
    assert r["best_recall_at_precision"]["recall"] == pytest.approx(op["recall"])
    assert set(r["per_camera"]) == {"cam00", "cam01"}
    assert sum(c["frames"] for c in r["per_camera"].values()) == 6


def test_wrong_classes_and_shifted_boxes_are_false_positives(cameras) -> None:
    folder, cams = cameras

    def wrong_class(o: np.ndarray) -> np.ndarray:
        o = o.copy()
        o[:, 4:] = np.roll(o[:, 4:], 1, axis=1)
        return o

    r = ca.measure(_oracle(folder, cams, wrong_class), cams, folder, batch=2)
    assert r["operating_point"]["tp"] == 0 and r["operating_point"]["fp"] > 10

    def shifted(o: np.ndarray) -> np.ndarray:
        o = o.copy()
        o[:, 0] += o[:, 2]  # moved by a whole box width: IoU 0
        return o

    r = ca.measure(_oracle(folder, cams, shifted), cams, folder, batch=2)
    assert r["operating_point"]["recall"] < 0.1


def test_scores_below_the_threshold_are_not_detections(cameras) -> None:
    folder, cams = cameras
    r = ca.measure(_oracle(folder, cams, lambda o: o * 0.2), cams, folder, batch=2)
    assert r["operating_point"]["tp"] == 0 and r["operating_point"]["fp"] == 0
    assert r["operating_point"]["recall"] == 0.0
