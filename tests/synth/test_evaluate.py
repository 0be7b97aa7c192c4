"""The mAP evaluator on cases whose AP is computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_infer.synth.evaluate import Box, average_precision, evaluate, iou_matrix


def gt(img: int, cat: int, *xyxy: float) -> Box:
    return Box(img, cat, tuple(map(float, xyxy)))  # type: ignore[arg-type]


def det(img: int, cat: int, score: float, *xyxy: float) -> Box:
    return Box(img, cat, tuple(map(float, xyxy)), score)  # type: ignore[arg-type]


GTS = [gt(0, 1, 10, 10, 50, 50), gt(0, 2, 60, 60, 90, 100), gt(1, 1, 0, 0, 20, 30)]


def test_perfect_predictions_score_one() -> None:
    dets = [det(g.image_id, g.category_id, 0.9, *g.xyxy) for g in GTS]
    r = evaluate(GTS, dets)
    assert r.map50 == pytest.approx(1.0)
    assert r.map50_95 == pytest.approx(1.0)
    assert r.per_class == {1: (1.0, 1.0), 2: (1.0, 1.0)}
    assert r.num_gt == {1: 2, 2: 1}


def test_no_detections_score_zero() -> None:
    r = evaluate(GTS, [])
    assert r.map50 == 0.0 and r.map50_95 == 0.0


def test_false_positive_ranked_first_halves_ap() -> None:
    # recall reaches 1 only at precision 1/2: the envelope is 0.5 at every recall point
    g = [gt(0, 1, 0, 0, 10, 10)]
    d = [det(0, 1, 0.9, 50, 50, 60, 60), det(0, 1, 0.8, 0, 0, 10, 10)]
    assert evaluate(g, d).map50 == pytest.approx(0.5)


def test_false_positive_ranked_last_costs_nothing() -> None:
    g = [gt(0, 1, 0, 0, 10, 10)]
    d = [det(0, 1, 0.9, 0, 0, 10, 10), det(0, 1, 0.1, 50, 50, 60, 60)]
    assert evaluate(g, d).map50 == pytest.approx(1.0)


def test_false_negative_caps_recall() -> None:
    # one of two objects found at precision 1: recall points 0.00..0.50 (51 of 101) count
    g = [gt(0, 1, 0, 0, 10, 10), gt(0, 1, 30, 30, 40, 40)]
    d = [det(0, 1, 0.9, 0, 0, 10, 10)]
    assert evaluate(g, d).map50 == pytest.approx(51 / 101)


def test_duplicate_detection_is_a_false_positive() -> None:
    g = [gt(0, 1, 0, 0, 10, 10), gt(0, 1, 30, 30, 40, 40)]
    d = [det(0, 1, 0.9, 0, 0, 10, 10), det(0, 1, 0.8, 0, 0, 10, 10), det(0, 1, 0.7, 30, 30, 40, 40)]
    # ranks: TP (r .5, p 1), FP (r .5, p .5), TP (r 1, p 2/3) → 51 points at 1, 50 at 2/3
    assert evaluate(g, d).map50 == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_classes_are_kept_apart() -> None:
    # the right box with the wrong class is a miss for class 1 and a false positive for 2
    g = [gt(0, 1, 0, 0, 10, 10), gt(0, 2, 50, 50, 70, 70)]
    d = [det(0, 2, 0.9, 0, 0, 10, 10), det(0, 2, 0.8, 50, 50, 70, 70)]
    r = evaluate(g, d)
    assert r.per_class[1] == (0.0, 0.0)
    assert r.per_class[2][0] == pytest.approx(0.5)
    assert r.map50 == pytest.approx(0.25)


def test_images_are_kept_apart() -> None:
    g = [gt(0, 1, 0, 0, 10, 10)]
    d = [det(1, 1, 0.9, 0, 0, 10, 10)]
    assert evaluate(g, d).map50 == 0.0


def test_iou_thresholds() -> None:
    # IoU 0.77: a true positive at 0.50 ... 0.75 (6 of 10 thresholds), missed above
    g = [gt(0, 1, 0, 0, 100, 100)]
    d = [det(0, 1, 0.9, 0, 0, 100, 77)]
    r = evaluate(g, d)
    assert iou_matrix(np.array([d[0].xyxy]), np.array([g[0].xyxy]))[0, 0] == pytest.approx(0.77)
    assert r.map50 == pytest.approx(1.0)
    assert r.map50_95 == pytest.approx(0.6)


def test_iou_below_half_is_a_miss() -> None:
    g = [gt(0, 1, 0, 0, 100, 100)]
    d = [det(0, 1, 0.9, 0, 0, 100, 49)]
    assert evaluate(g, d).map50 == 0.0


def test_best_iou_ground_truth_is_matched() -> None:
    # the detection overlaps both objects; it must take the one it overlaps most, leaving
    # the other for the second detection
    g = [gt(0, 1, 0, 0, 100, 100), gt(0, 1, 20, 0, 120, 100)]
    d = [det(0, 1, 0.9, 18, 0, 118, 100), det(0, 1, 0.8, 0, 0, 100, 100)]
    assert evaluate(g, d).map50_95 == pytest.approx(1.0)


def test_class_without_ground_truth_is_not_averaged() -> None:
    g = [gt(0, 1, 0, 0, 10, 10)]
    d = [det(0, 1, 0.9, 0, 0, 10, 10)]
    r = evaluate(g, d, category_ids=[1, 2])
    assert math.isnan(r.per_class[2][0])
    assert r.map50 == pytest.approx(1.0)


def test_max_dets_keeps_the_best_per_image_and_class() -> None:
    g = [gt(0, 1, 0, 0, 10, 10)]
    d = [det(0, 1, 0.9, 50, 50, 60, 60), det(0, 1, 0.5, 0, 0, 10, 10)]
    assert evaluate(g, d, max_dets=1).map50 == 0.0
    with pytest.raises(ValueError, match="max_dets"):
        evaluate(g, d, max_dets=0)


def test_average_precision_without_ground_truth_is_nan() -> None:
    ap = average_precision(np.zeros((10, 0), bool), np.zeros(0), 0)
    assert np.isnan(ap).all()
