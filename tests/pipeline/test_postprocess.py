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
            j
            for j in remaining
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
    cxcywh = np.array(
        [
            [50, 50, 10, 10],  # fine
            [80, 80, 0, 10],  # zero width
            [120, 120, 10, -5],  # negative height
            [np.nan, 10, 5, 5],  # NaN centre
            [150, 150, np.inf, 5],  # infinite width
            [200, 200, 10, 10],  # NaN score
        ]
    )
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
    out = np.concatenate(
        [
            yolov8_output(
                np.c_[rng.uniform(0, 300, (40, 2)) + i * 0, np.full((40, 2), 4.0)],
                rng.random((40, 2)),
            )
            for i in range(3)
        ]
    )
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


# --- bounded NMS: the quadratic implementation it replaced, kept as the reference -----------


def quadratic_nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, classes: np.ndarray | None = None
) -> np.ndarray:
    """The NMS decode used before it was bounded: the full IoU matrix, then one greedy walk."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = boxes.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    if classes is not None:
        span = float(np.abs(boxes).max()) * 2.0 + 1.0
        boxes = boxes + (np.asarray(classes, np.float64) * span)[:, None]
    order = np.argsort(-np.asarray(scores), kind="stable")
    boxes = boxes[order]
    iou = box_iou(boxes, boxes)
    keep = np.ones(n, bool)
    for i in range(n):
        if keep[i]:
            keep[i + 1 :] &= ~(iou[i, i + 1 :] > iou_threshold)
    return order[keep]


def adversarial_cases(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Inputs where a shortcut would change a decision: identical boxes, score ties, nested
    boxes, IoU exactly at common thresholds, chains (A suppresses B, so B cannot suppress C),
    huge and tiny coordinates, one class and many."""
    cases = []
    same = np.tile([[10.0, 10, 20, 20]], (50, 1))
    cases.append((same, np.full(50, 0.5), np.zeros(50, np.int64)))  # all tied, all identical
    half = np.array([[0, 0, 10, 10], [0, 0, 5, 10], [0, 0, 10, 5], [5, 0, 10, 10]], float)
    cases.append((half, np.array([0.9, 0.8, 0.8, 0.7]), np.zeros(4, np.int64)))  # IoU 0.5
    chain = np.array([[i * 4.0, 0, i * 4.0 + 10, 10] for i in range(40)])  # neighbours overlap
    cases.append((chain, np.linspace(1, 0.1, 40), np.zeros(40, np.int64)))
    nested = np.array([[50 - s, 50 - s, 50 + s, 50 + s] for s in range(1, 60)], float)
    cases.append((nested, rng.permutation(59) / 59, rng.integers(0, 2, 59)))
    big = random_boxes(rng, 200) * 1e7 + 1e9
    cases.append((big, rng.choice([0.3, 0.6, 0.9], 200), rng.integers(0, 5, 200)))
    tiny = random_boxes(rng, 200) * 1e-6
    cases.append((tiny, rng.random(200), rng.integers(0, 80, 200)))
    grid = rng.integers(0, 8, (300, 2)) * 2.5
    cells = np.concatenate([grid, grid + 5], axis=1)  # many exact-fraction IoUs
    cases.append((cells, rng.choice([0.25, 0.5, 0.75], 300), rng.integers(0, 3, 300)))
    return cases


@pytest.mark.parametrize("thr", [0.0, 0.3, 1 / 3, 0.45, 0.5, 0.7, 1.0])
def test_bounded_nms_decides_as_the_quadratic_one(thr: float) -> None:
    rng = np.random.default_rng(int(thr * 1000))
    cases = adversarial_cases(rng)
    for n in (1, 2, 17, 400, 1500):
        boxes = random_boxes(rng, n)
        cases.append((boxes, rng.random(n).astype(np.float32), rng.integers(0, 4, n)))
    for k, (boxes, scores, classes) in enumerate(cases):
        for cls in (classes, None):
            ref = quadratic_nms(boxes, scores, thr, cls)
            np.testing.assert_array_equal(nms(boxes, scores, thr, cls), ref, err_msg=f"case {k}")
            for cut in (0, 1, 7, 300):
                np.testing.assert_array_equal(
                    nms(boxes, scores, thr, cls, max_detections=cut),
                    ref[:cut],
                    err_msg=f"case {k}, cut {cut}",
                )


def dense_candidates(n: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A crowded scene: 4096 small candidates spread over a 640-pixel input, 80 classes."""
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 620, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(4, 40, (n, 2))], axis=1)
    return boxes, rng.random(n).astype(np.float32), rng.integers(0, 80, n)


def test_nms_memory_is_linear_in_the_candidates() -> None:
    import tracemalloc

    boxes, scores, classes = dense_candidates()
    tracemalloc.start()
    try:
        nms(boxes, scores, 0.45, classes, max_detections=300)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 4096 boxes are 128 KiB of float64 coordinates; the full IoU matrix alone is 128 MiB
    assert peak < 4 << 20, f"NMS of 4096 boxes peaked at {peak / 2**20:.1f} MiB"


# --- boxes that cannot be real: dropped before they are mapped and clipped ------------------


@pytest.mark.parametrize("w", [np.inf, 1e6, 4 * 320 + 8])
def test_infinite_or_absurd_boxes_are_dropped_before_clipping(w: float) -> None:
    lb = letterbox_geometry(640, 360, 320, 320)  # the frame is 320 x 180 in input pixels
    cxcywh = np.array([[160, 160, w, 20], [160, 160, 4 * 320, 20], [100, 160, 20, -1e9]])
    (d,) = decode(yolov8_output(cxcywh, np.array([[0.9], [0.8], [0.7]])), [lb])
    # the absurd (or infinite) box used to be clipped into a full-width detection; a box
    # exactly 4 frame widths wide is the largest kept
    assert d.scores.tolist() == pytest.approx([0.8])
    np.testing.assert_allclose(d.boxes[0], [0, 160, 640, 200])


def test_absurd_height_and_non_finite_centre_are_dropped_with_a_mapping() -> None:
    lb = letterbox_geometry(640, 360, 320, 320)  # 4 frame heights: 720 input pixels
    cxcywh = np.array([[160, 160, 20, 721], [np.inf, 160, 20, 20], [160, 160, 20, 720]])
    (d,) = decode(yolov8_output(cxcywh, np.array([[0.9], [0.8], [0.7]])), [lb])
    assert d.scores.tolist() == pytest.approx([0.7])


def test_absurd_boxes_do_not_take_candidate_slots() -> None:
    lb = letterbox_geometry(320, 320, 320, 320)
    cxcywh = np.array([[50, 50, np.inf, 10]] * 5 + [[50, 50, 10, 10]])
    scores = np.array([[0.9]] * 5 + [[0.5]])
    (d,) = decode(yolov8_output(cxcywh, scores), [lb], max_candidates=2)
    assert d.scores.tolist() == pytest.approx([0.5])


# --- scores outside [0, 1] --------------------------------------------------------------


def sigmoid64(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


@pytest.mark.parametrize("layout", ["yolov8", "yolov5"])
def test_logits_go_through_a_sigmoid_before_the_threshold(layout: str) -> None:
    xy = np.arange(6, dtype=float)[:, None] * 40 + 20
    cxcywh = np.c_[xy, xy, np.full((6, 2), 10.0)]
    logits = np.array([[3.0, -1], [-2, 0.5], [-1.2, -5], [-1, -1], [40, 0], [-200, -300]])
    if layout == "yolov8":
        out, obj = yolov8_output(cxcywh, logits), 0.0
    else:
        obj = 1.5  # sigmoid(1.5) multiplies every class score
        out = np.concatenate([cxcywh, np.full((6, 1), obj), logits], axis=1)[None]
        out = out.astype(np.float32)
    (d,) = decode(out, layout=layout, score_threshold=0.1, scores="logits")
    best = logits[np.arange(6), logits.argmax(1)]
    want = sigmoid64(best) * (sigmoid64(obj) if layout == "yolov5" else 1.0)
    keep = np.flatnonzero(want > 0.1)
    order = keep[np.argsort(-want[keep], kind="stable")]
    assert d.classes.tolist() == logits.argmax(1)[order].tolist()  # ties: the first
    np.testing.assert_allclose(d.scores, want[order], rtol=1e-6)
    assert ((d.scores >= 0) & (d.scores <= 1)).all()


def test_sigmoid_is_correctly_rounded_over_the_float32_range() -> None:
    from edge_infer.pipeline.postprocess import sigmoid

    x = np.concatenate([np.linspace(-110, 30, 200_001), [-1e30, 1e30, 0.0, -0.0]])
    x = x.astype(np.float32)
    got = sigmoid(x)
    assert got.dtype == np.float32
    ref = sigmoid64(np.clip(x.astype(np.float64), -120, 120)).astype(np.float32)
    assert np.count_nonzero(got != ref) <= 2, "more than a double-rounding tie off"
    np.testing.assert_array_max_ulp(got, ref, maxulp=1)
    assert got[-4:-2].tolist() == [0.0, 1.0] and got[-2:].tolist() == [0.5, 0.5]


def test_probabilities_above_one_are_clipped_with_one_warning(caplog, monkeypatch) -> None:
    import logging

    from edge_infer.pipeline import postprocess

    monkeypatch.setattr(postprocess, "_warned_out_of_range", False)
    cxcywh = np.array([[50, 50, 10, 10], [150, 50, 10, 10]])
    out = yolov8_output(cxcywh, np.array([[4.2], [0.9]]))  # a logit read as a probability
    with caplog.at_level(logging.WARNING, logger="edge_infer.pipeline.postprocess"):
        (d,) = decode(out)
        decode(out)
    assert d.scores.tolist() == pytest.approx([1.0, 0.9])  # order from the raw scores
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "logits" in warnings[0].getMessage()


def test_the_payload_of_a_logit_model_read_as_probabilities_validates() -> None:
    import time

    import jsonschema

    from edge_infer.pipeline.frames import Frame
    from edge_infer.pipeline.publisher import ModelInfo, detection_payload, load_schema
    from edge_infer.pipeline.workers import BatchResult, FrameResult

    lb = letterbox_geometry(320, 180, 64, 64)
    cxcywh = np.array([[20, 30, 10, 10], [40, 30, 8, 8], [10, 10, 300, 5]])
    out = yolov8_output(cxcywh, np.array([[7.5, -3], [2.0, 1.0], [9.0, 0]]))
    (d,) = decode(out, [lb])
    assert len(d) == 2
    f = FrameResult(Frame("c0", 1, np.zeros((180, 320, 3), np.uint8), 0.0, 0.0), d, lb)
    b = BatchResult([f], 0, 0.0, 0.0, 0.0, 0.0)
    p = detection_payload(
        f,
        b,
        device_id="dev",
        boot_id="0" * 32,
        seq=0,
        global_seq=0,
        model=ModelInfo("m", "ab" * 32, "fp32"),
        class_names=[],
        publish_wall=time.time(),
        publish_ts=0.0,
    )
    jsonschema.validate(p, load_schema())


def test_unknown_score_kind_is_explained() -> None:
    with pytest.raises(ValueError, match="scores"):
        decode(np.zeros((1, 6, 10), np.float32), scores="softmax")


def test_the_worker_passes_the_score_kind_to_decode(tmp_path) -> None:
    from edge_infer.engine.runtime import Engine
    from edge_infer.pipeline.config import PostprocessConfig
    from edge_infer.pipeline.frames import Frame
    from edge_infer.pipeline.workers import InferenceWorker, ModelSpec
    from tests.pipeline.helpers import build_tiny_engine

    engine = Engine.load(build_tiny_engine(tmp_path, max_batch=4))
    spec = ModelSpec.from_engine(engine)
    frame = Frame("cam", 1, np.zeros((64, 64, 3), np.uint8), 0.0, 0.0)  # black: score 0.9
    got = {}
    for kind in ("probabilities", "logits"):
        post = PostprocessConfig(scores=kind)
        worker = InferenceWorker(0, engine, spec, post, "rgb", lambda r: None, lambda *a: None)
        got[kind] = worker.run_batch([frame]).frames[0].detections.scores
        worker.context.close()
    assert got["probabilities"] == pytest.approx(np.full(len(got["logits"]), 0.9), abs=1e-3)
    np.testing.assert_allclose(got["logits"], sigmoid64(got["probabilities"]), rtol=1e-5)
