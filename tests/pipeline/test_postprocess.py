"""YOLO output decoding and NMS."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.pipeline.postprocess import box_iou, decode, nms
from edge_infer.pipeline.preprocess import letterbox_geometry


def brute_force_nms(boxes: np.ndarray, scores: np.ndarray, thr: float, classes: np.ndarray) -> list:
    """The textbook loop: take the best remaining box, drop same-class boxes overlapping it."""
    remaining = sorted(range(len(boxes)), key=lambda i: -scores[i])
    keep = []
    while remaining:
        best = remaining.pop(0)
        keep.append(best)
        remaining = [
            j for j in remaining
            if classes[j] != classes[best] or box_iou(boxes[best], boxes[j])[0, 0] <= thr
        ]
    return keep


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(5, 60, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_matches_brute_force(seed: int, thr: float) -> None:
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, 120)
    scores = rng.random(120)
    classes = rng.integers(0, 3, 120)
    got = nms(boxes, scores, thr, classes).tolist()
    assert got == brute_force_nms(boxes, scores, thr, classes)


def test_nms_class_agnostic_and_class_aware_differ() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10]], float)
    scores = np.array([0.9, 0.8])
    assert nms(boxes, scores, 0.5).tolist() == [0]
    assert sorted(nms(boxes, scores, 0.5, np.array([0, 1])).tolist()) == [0, 1]


def test_nms_empty_and_bad_threshold() -> None:
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).size == 0
    with pytest.raises(ValueError, match="iou_threshold"):
        nms(np.zeros((1, 4)), np.zeros(1), 1.5)


def yolov8_output(cxcywh: np.ndarray, cls_scores: np.ndarray) -> np.ndarray:
    return np.concatenate([cxcywh, cls_scores], axis=1).T[None].astype(np.float32)


def test_yolov8_decode_maps_boxes_back_to_the_frame() -> None:
    lb = letterbox_geometry(640, 360, 320, 320)  # scale 0.5, pad_y 70
    cxcywh = np.array([[160, 160, 40, 20], [50, 100, 10, 10], [10, 10, 4, 4]], float)
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.1, 0.1]])  # the last is below threshold
    (d,) = decode(yolov8_output(cxcywh, scores), [lb], "yolov8", score_threshold=0.25)
    assert len(d) == 2
    np.testing.assert_allclose(d.boxes[0], [280, 160, 360, 200])  # ((140,150,180,170)-pad)/0.5
    np.testing.assert_allclose(d.scores, [0.9, 0.8], rtol=1e-6)
    assert d.classes.tolist() == [1, 0]


def test_yolov5_layout_gives_the_same_detections() -> None:
    rng = np.random.default_rng(1)
    boxes = random_boxes(rng, 50)
    cxcywh = np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], 1)
    cls = rng.random((50, 4))
    v8 = decode(yolov8_output(cxcywh, cls), layout="yolov8", score_threshold=0.3)[0]
    obj = np.ones((50, 1))
    v5 = np.concatenate([cxcywh, obj, cls], axis=1)[None].astype(np.float32)
    got = decode(v5, layout="yolov5", score_threshold=0.3)[0]
    np.testing.assert_allclose(got.boxes, v8.boxes)
    np.testing.assert_array_equal(got.classes, v8.classes)
    # objectness multiplies the class scores
    v5[0, :, 4] = 0.5
    half = decode(v5, layout="yolov5", score_threshold=0.0)[0]
    assert half.scores.max() <= 0.5 + 1e-6


def test_degenerate_and_non_finite_boxes_are_dropped() -> None:
    cxcywh = np.array([
        [50, 50, 10, 10],  # fine
        [80, 80, 0, 10],  # zero width
        [120, 120, 10, -5],  # negative height
        [np.nan, 10, 5, 5],  # NaN centre
        [150, 150, np.inf, 5],  # infinite width
        [200, 200, 10, 10],  # NaN score
    ])
    scores = np.array([[0.9], [0.9], [0.9], [0.9], [0.9], [np.nan]])
    (d,) = decode(yolov8_output(cxcywh, scores), score_threshold=0.1)
    assert len(d) == 1
    np.testing.assert_allclose(d.boxes[0], [45, 45, 55, 55])


def test_boxes_are_clipped_to_the_frame() -> None:
    lb = letterbox_geometry(100, 100, 100, 100)
    (d,) = decode(yolov8_output(np.array([[5.0, 50, 20, 20]]), np.array([[0.9]])), [lb])
    np.testing.assert_allclose(d.boxes[0], [0, 40, 15, 60])


def test_max_detections_and_batch() -> None:
    rng = np.random.default_rng(2)
    out = np.concatenate([yolov8_output(np.c_[rng.uniform(0, 300, (40, 2)) + i * 0,
                                              np.full((40, 2), 4.0)], rng.random((40, 2)))
                          for i in range(3)])
    dets = decode(out, score_threshold=0.0, max_detections=5)
    assert len(dets) == 3 and all(len(d) <= 5 for d in dets)


def test_max_candidates_keeps_the_best_scores() -> None:
    xy = np.arange(20, dtype=float)[:, None] * 10 + 5
    cxcywh = np.c_[xy, xy, np.full((20, 2), 4.0)]
    scores = np.linspace(0.1, 0.9, 20)[:, None]
    (d,) = decode(yolov8_output(cxcywh, scores), score_threshold=0.0, max_candidates=3)
    np.testing.assert_allclose(d.scores, scores[-3:, 0][::-1], rtol=1e-6)


def test_bad_shapes_are_explained() -> None:
    with pytest.raises(ValueError, match="3-D"):
        decode(np.zeros((10, 6)))
    with pytest.raises(ValueError, match="yolov5"):
        decode(np.zeros((1, 10, 5)), layout="yolov5")
    with pytest.raises(ValueError, match="letterbox"):
        decode(np.zeros((2, 6, 10)), [letterbox_geometry(10, 10, 10, 10)])
