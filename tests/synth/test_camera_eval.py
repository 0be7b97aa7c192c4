"""The greedy class-aware matcher and precision/recall curve of the camera-video measure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_infer.synth.camera_eval import (
    FrameTruth,
    PRCurve,
    iou_matrix,
    load_camera_truth,
    match_frame,
)
from edge_infer.synth.video import render_camera


def _truth(*objs: tuple[int, float, float, float, float]) -> FrameTruth:
    arr = np.array(objs, np.float64).reshape(-1, 5)
    return FrameTruth(arr[:, 1:], arr[:, 0].astype(np.int64))


def test_iou_matrix() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    got = iou_matrix(a, b)
    assert got[0] == pytest.approx([1.0, 50 / 150, 0.0])
    assert got[1] == pytest.approx([0.0, 0.0, 0.0])  # an empty box overlaps nothing


def test_exact_detections_are_all_true_positives() -> None:
    gt = _truth((0, 0, 0, 10, 20), (3, 50, 50, 80, 70))
    tp, matched = match_frame(gt.boxes, np.array([0.9, 0.4]), gt.classes, gt)
    assert tp.tolist() == [True, True]
    assert matched.tolist() == pytest.approx([0.9, 0.4])


def test_matching_is_class_aware() -> None:
    gt = _truth((0, 0, 0, 10, 20))
    tp, matched = match_frame(gt.boxes, np.array([0.9]), np.array([1]), gt)
    assert tp.tolist() == [False] and matched.tolist() == [-1.0]


def test_a_truth_box_matches_once_best_score_first() -> None:
    gt = _truth((2, 0, 0, 10, 10))
    boxes = np.array([[0, 0, 10, 9], [0, 0, 10, 10]], np.float64)  # the exact one scores less
    tp, matched = match_frame(boxes, np.array([0.8, 0.3]), np.array([2, 2]), gt)
    assert tp.tolist() == [True, False]
    assert matched.tolist() == pytest.approx([0.8])


def test_greedy_takes_the_best_overlap_among_unmatched() -> None:
    gt = _truth((0, 0, 0, 10, 10), (0, 4, 0, 14, 10))
    boxes = np.array([[4, 0, 14, 10], [0, 0, 10, 10]], np.float64)
    tp, matched = match_frame(boxes, np.array([0.9, 0.8]), np.array([0, 0]), gt)
    assert tp.tolist() == [True, True]
    assert matched.tolist() == pytest.approx([0.8, 0.9])


def test_iou_below_threshold_is_a_false_positive() -> None:
    gt = _truth((0, 0, 0, 10, 10))
    boxes = np.array([[5, 0, 15, 10]], np.float64)  # IoU 1/3
    tp, _ = match_frame(boxes, np.array([0.9]), np.array([0]), gt)
    assert tp.tolist() == [False]
    tp, _ = match_frame(boxes, np.array([0.9]), np.array([0]), gt, iou_threshold=0.3)
    assert tp.tolist() == [True]


def test_curve_operating_point_and_best_recall() -> None:
    # scores best first: TP, TP, FP, TP, FP; 5 truth boxes
    curve = PRCurve(np.array([0.9, 0.8, 0.7, 0.6, 0.5]), np.array([1, 1, 0, 1, 0], bool), 5)
    op = curve.at(0.65)
    assert (op["tp"], op["fp"], op["fn"]) == (2, 1, 3)
    assert op["precision"] == pytest.approx(2 / 3) and op["recall"] == pytest.approx(0.4)
    best = curve.best_recall(0.75)  # 3 of 4 at score > 0.55
    assert best["recall"] == pytest.approx(0.6) and best["precision"] == pytest.approx(0.75)
    assert curve.at(best["threshold"])["recall"] == pytest.approx(0.6)
    assert curve.best_recall(0.99)["recall"] == pytest.approx(0.4)
    none = PRCurve(np.array([0.9]), np.array([False]), 3).best_recall(0.5)
    assert none["recall"] == 0.0


def test_tied_scores_are_cut_together() -> None:
    curve = PRCurve(np.array([0.9, 0.5, 0.5]), np.array([1, 1, 0], bool), 2)
    # no threshold keeps the TP at 0.5 without its tied FP: precision 2/3 there
    assert curve.best_recall(0.9)["recall"] == pytest.approx(0.5)
    assert curve.best_recall(0.6)["recall"] == pytest.approx(1.0)


def test_combine_pools_cameras() -> None:
    a = PRCurve(np.array([0.9]), np.array([True]), 2)
    b = PRCurve(np.array([0.8, 0.7]), np.array([False, True]), 1)
    c = PRCurve.combine([a, b])
    assert c.n_truth == 3 and c.at(0.0)["tp"] == 2


def test_camera_truth_loads_as_xyxy(tmp_path: Path) -> None:
    entry = render_camera(tmp_path, 0, seconds=0.4, fps=5, width=160, height=96, codec="mjpeg")
    frames = load_camera_truth(tmp_path / entry["ground_truth"])
    assert len(frames) == entry["frames"] == 2
    assert sum(len(f.classes) for f in frames) > 0
    for f in frames:
        assert f.boxes.shape == (len(f.classes), 4)
        assert (f.boxes[:, 2:] > f.boxes[:, :2]).all()
        assert (f.boxes[:, :2] >= 0).all() and (f.boxes[:, 2] <= 160).all()
