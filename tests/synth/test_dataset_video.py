"""COCO datasets and camera videos written to disk."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_infer.synth.dataset import load_coco, render_image, write_dataset
from edge_infer.synth.shapes import CLASSES
from edge_infer.synth.video import render_camera, write_videos
from tests.sysdeps import need


def test_coco_dataset_is_valid(tmp_path: Path) -> None:
    path = write_dataset(tmp_path, "val", 5, seed=3, size=96, workers=1, progress=False)
    coco = load_coco(path)
    assert [c["name"] for c in coco["categories"]] == list(CLASSES)
    assert [c["id"] for c in coco["categories"]] == list(range(1, len(CLASSES) + 1))
    assert len(coco["images"]) == 5
    ids = [a["id"] for a in coco["annotations"]]
    assert len(set(ids)) == len(ids) and len(ids) >= 5
    for img in coco["images"]:
        pixels = cv2.imread(str(tmp_path / img["file_name"]))
        assert pixels.shape == (img["height"], img["width"], 3) == (96, 96, 3)
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        assert a["iscrowd"] == 0 and w > 0 and h > 0 and x + w <= 96 and y + h <= 96
        assert a["area"] == pytest.approx(w * h, abs=0.01)
    # the annotations are those of the deterministic renderer
    _, anns = render_image("val", 3, 2, 96)
    got = [a["bbox"] for a in coco["annotations"] if a["image_id"] == 2]
    assert got == [list(a.bbox) for a in anns]


def test_worker_count_does_not_change_the_dataset(tmp_path: Path) -> None:
    a = write_dataset(tmp_path / "a", "calib", 20, seed=1, size=64, workers=1, progress=False)
    b = write_dataset(tmp_path / "b", "calib", 20, seed=1, size=64, workers=2, progress=False)
    assert a.read_bytes() == b.read_bytes()


def test_load_coco_rejects_broken_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": []}')
    with pytest.raises(ValueError, match="not COCO"):
        load_coco(bad)
    bad.write_text(
        json.dumps(
            {
                "images": [{"id": 1}],
                "categories": [{"id": 1}],
                "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}],
            }
        )
    )
    with pytest.raises(ValueError, match="unknown image"):
        load_coco(bad)
    with pytest.raises(ValueError, match="does not exist"):
        load_coco(tmp_path / "missing.json")


def _read_all(path: Path, fps: float) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(fps, rel=0.01)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


@pytest.mark.parametrize("codec", ["mjpeg", "h264"])
def test_video_files_decode_with_ground_truth_per_frame(tmp_path: Path, codec: str) -> None:
    if codec == "h264":
        need("ffmpeg")
    manifest = json.loads(
        write_videos(
            tmp_path, 2, 1.5, 10, 160, 96, codec, seed=4, workers=1, progress=False
        ).read_text()
    )
    assert [c["camera"] for c in manifest["cameras"]] == [0, 1]
    for cam in manifest["cameras"]:
        (name,) = cam["files"].values()
        frames = _read_all(tmp_path / name, 10)
        assert len(frames) == 15
        assert frames[0].shape == (96, 160, 3)
        gt = json.loads((tmp_path / cam["ground_truth"]).read_text())
        assert len(gt["ground_truth"]) == 15
        for objects in gt["ground_truth"]:
            ids = [o["track_id"] for o in objects]
            assert len(set(ids)) == len(ids)
            for o in objects:
                x, y, w, h = o["bbox"]
                assert x >= 0 and y >= 0 and x + w <= 160 and y + h <= 96
                assert o["class_name"] == CLASSES[o["class_id"]]


def test_video_ground_truth_is_deterministic_and_moves(tmp_path: Path) -> None:
    a = render_camera(tmp_path / "a", 0, 2.0, 10, 128, 96, "mjpeg", seed=9)
    b = render_camera(tmp_path / "b", 0, 2.0, 10, 128, 96, "mjpeg", seed=9)
    ga = json.loads((tmp_path / "a" / a["ground_truth"]).read_text())["ground_truth"]
    gb = json.loads((tmp_path / "b" / b["ground_truth"]).read_text())["ground_truth"]
    assert ga == gb
    # some object changes its box between the first and the last frame
    first = {o["track_id"]: o["bbox"] for o in ga[0]}
    last = {o["track_id"]: o["bbox"] for o in ga[-1]}
    moved = any(first[t] != last[t] for t in first.keys() & last.keys())
    assert moved or first.keys() != last.keys()


def test_video_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        write_videos(tmp_path, 1, 1, 10, 161, 96, "mjpeg", progress=False)
    with pytest.raises(ValueError, match="codec"):
        write_videos(tmp_path, 1, 1, 10, 160, 96, "vp9", progress=False)
