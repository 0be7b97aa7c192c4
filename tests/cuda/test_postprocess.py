"""kernels/postprocess.cu: YOLO decode + NMS against edge_infer/pipeline/postprocess.py.

The kernel must make the reference's decisions: the same kept detections in the same order
(score descending, anchor index on ties), the same classes and scores, and the same boxes.
Tolerance: none — candidate scores, boxes (float32, op for op) and IoUs (float64 with the
reference's class offsets) are computed with the reference's roundings, so every array is
compared for equality. Cases: random outputs, ties, clusters of overlapping boxes around the
IoU threshold, more candidates than max_candidates (sorted in shared memory and, past 2048,
in the workspace), zero candidates, NaN / inf / degenerate / absurdly large boxes (dropped
before mapping, at the exact size bound too), max_detections cuts, logits (the sigmoid is
bit-exact) and probabilities above 1 (decided raw, published clipped).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_infer.cuda.params import postprocess as pp
from edge_infer.errors import BackendError
from edge_infer.pipeline.postprocess import decode
from edge_infer.pipeline.preprocess import letterbox_geometry

BLOCK = 64  # two warps: compaction crosses a warp boundary; small for the emulator


def _run(device, pred: np.ndarray, layout: str, mappings=None, **kw):
    """The kernel's detections per image as (boxes, scores, classes)."""
    b = pred.shape[0]
    n = pred.shape[2] if layout == "yolov8" else pred.shape[1]
    max_det = kw.get("max_detections", 300)
    ws = pp.workspace_layout(n, kw.get("max_candidates", 4096))
    out = {
        "workspace": device.empty(b * ws.stride, np.uint8),
        "boxes": device.empty((b, max_det, 4), np.float32),
        "scores": device.empty((b, max_det), np.float32),
        "classes": device.empty((b, max_det), np.int32),
        "counts": device.empty(b, np.int32),
    }
    mapping = None if mappings is None else device.to_device(pp.mapping_table(mappings))
    dpred = device.to_device(pred.astype(np.float32))  # held: the call keeps only addresses
    if "scores" in kw:  # decode's score kind; the kernel's `scores` is its output array
        kw["score_kind"] = kw.pop("scores")
    call = pp.decode(dpred, layout, mapping=mapping, block=kw.pop("block", BLOCK), **out, **kw)
    device.run(call)
    boxes, scores, classes, counts = (
        device.to_host(out[k]) for k in ("boxes", "scores", "classes", "counts")
    )
    return [(boxes[i, :k], scores[i, :k], classes[i, :k]) for i, k in enumerate(counts)]


def _check(device, pred, layout, mappings=None, expect_some=True, **kw):
    ref = decode(pred, mappings, layout, **{k: v for k, v in kw.items() if k != "block"})
    got = _run(device, pred, layout, mappings, **dict(kw))
    assert len(got) == len(ref)
    for i, ((boxes, scores, classes), r) in enumerate(zip(got, ref, strict=True)):
        assert len(scores) == len(r), f"image {i}: {len(scores)} kept, reference {len(r)}"
        np.testing.assert_array_equal(classes, r.classes, err_msg=f"image {i} classes")
        np.testing.assert_array_equal(scores, r.scores, err_msg=f"image {i} scores")
        np.testing.assert_array_equal(boxes, r.boxes, err_msg=f"image {i} boxes")
    if expect_some:
        assert sum(len(r) for r in ref) > 0, "the case should keep something"
    return ref


def _yolov8(rng, b, c, n, size=64.0, score_scale=1.0):
    cxcy = rng.uniform(0, size, (b, 2, n))
    wh = rng.uniform(1, size / 3, (b, 2, n))
    cls = rng.uniform(0, score_scale, (b, c, n))
    return np.concatenate([cxcy, wh, cls], axis=1).astype(np.float32)


def _to_v5(pred8, rng):
    """A yolov5 [B, N, 5 + C] output from a yolov8 one, with an objectness column."""
    b, _, n = pred8.shape
    obj = rng.uniform(0.3, 1.0, (b, 1, n)).astype(np.float32)
    return np.concatenate([pred8[:, :4], obj, pred8[:, 4:]], axis=1).transpose(0, 2, 1).copy()


def _mappings(rng, b, in_size=64):
    sizes = [(int(rng.integers(20, 200)), int(rng.integers(20, 200))) for _ in range(b)]
    return [letterbox_geometry(w, h, in_size, in_size) for w, h in sizes]


@pytest.mark.parametrize("layout", ["yolov8", "yolov5"])
@pytest.mark.parametrize(("mapped", "block"), [(False, 64), (True, 32), (True, 96)])
def test_random_outputs(device, layout, mapped, block) -> None:
    rng = np.random.default_rng(1 + mapped)
    pred = _yolov8(rng, 2, 3, 67)
    if layout == "yolov5":
        pred = _to_v5(pred, rng)
    mappings = _mappings(rng, 2) if mapped else None
    _check(device, pred, layout, mappings, block=block)  # 1, 2 and 3 warps


def test_ties_break_by_anchor_index(device) -> None:
    rng = np.random.default_rng(3)
    pred = _yolov8(rng, 1, 2, 45)
    pred[:, 4:] = rng.choice([0.1, 0.5, 0.75], size=pred[:, 4:].shape)  # many equal scores
    pred[0, :4, 10:20] = pred[0, :4, 10:11]  # identical boxes, equal scores: lowest index wins
    pred[0, 4:, 10:20] = np.array([[0.5], [0.5]])  # a class tie too: argmax takes class 0
    ref = _check(device, pred, "yolov8")
    assert ref[0].classes.tolist().count(0) > 0


@pytest.mark.parametrize("iou", [0.0, 0.3, 0.45, 0.7, 1.0])
def test_clusters_of_overlapping_boxes(device, iou) -> None:
    rng = np.random.default_rng(4)
    centres = rng.uniform(10, 54, (5, 2))
    n = 70
    pick = rng.integers(0, 5, n)
    cxcy = centres[pick] + rng.normal(0, 1.5, (n, 2))
    wh = rng.uniform(8, 14, (n, 2))
    scores = rng.uniform(0.2, 1.0, (3, n))
    pred = np.concatenate([cxcy.T, wh.T, scores])[None].astype(np.float32)
    _check(device, pred, "yolov8", iou_threshold=iou)


def test_iou_exactly_at_the_threshold_is_kept(device) -> None:
    # cxcywh: a 10x10 box, a 5x10 box inside it (IoU exactly 0.5: kept, the test is '>') and
    # one a hair wider (IoU 0.5 + a few ulps: suppressed)
    boxes = np.array([[5, 5, 10, 10], [2.5, 5, 5, 10], [2.5000005, 5, 5.000001, 10]], np.float32)
    pred = np.concatenate([boxes.T, np.array([[0.9, 0.8, 0.7]], np.float32)])[None]
    ref = _check(device, pred, "yolov8", iou_threshold=0.5)
    assert len(ref[0]) >= 2


def test_iou_between_the_float32_and_float64_threshold(device) -> None:
    # IoU 0.300000024 lies between 0.3 and float32(0.3) = 0.3000000119: the reference (float64)
    # suppresses the second box, a float32 comparison would keep it
    w = np.nextafter(np.float32(3), np.float32(4))  # 3.00000024
    boxes = np.array([[5, 5, 10, 10], [w / 2, 5, w, 10]], np.float32)
    pred = np.concatenate([boxes.T, np.array([[0.9, 0.8]], np.float32)])[None]
    ref = _check(device, pred, "yolov8", iou_threshold=0.3)
    assert len(ref[0]) == 1


def test_more_candidates_than_max_candidates(device) -> None:
    rng = np.random.default_rng(5)
    pred = _yolov8(rng, 2, 2, 150, score_scale=0.3)
    pred[:, 4:] += 0.3  # every anchor is a candidate
    _check(device, pred, "yolov8", max_candidates=40)
    _check(device, pred, "yolov8", max_candidates=0, expect_some=False)


@pytest.mark.large
def test_sort_past_shared_memory(device) -> None:
    rng = np.random.default_rng(6)
    pred = _yolov8(rng, 1, 1, 2500, size=320.0)
    pred[:, 4] = rng.choice(np.linspace(0.3, 0.9, 40), 2500)  # > 2048 candidates, many ties
    _check(device, pred, "yolov8", max_candidates=300, block=128)


def test_zero_candidates_and_cut_detections(device) -> None:
    rng = np.random.default_rng(7)
    pred = _yolov8(rng, 3, 2, 40)
    pred[1, 4:] = 0.25  # equal to the threshold (float32): not a candidate
    pred[2, 4:] = rng.uniform(0, 0.2, (2, 40))
    got = _run(device, pred, "yolov8")
    assert [len(g[1]) for g in got][1:] == [0, 0]
    _check(device, pred, "yolov8")
    _check(device, pred, "yolov8", max_detections=3)
    _check(device, pred, "yolov8", max_detections=0, expect_some=False)


@pytest.mark.parametrize("mapped", [False, True])
def test_non_finite_and_degenerate(device, mapped) -> None:
    rng = np.random.default_rng(8)
    pred = _yolov8(rng, 1, 3, 40)
    pred[0, 4, 0] = np.nan  # a NaN score drops the anchor (numpy's argmax picks it)
    pred[0, 5, 1] = np.inf
    pred[0, 0, 2] = np.nan  # NaN box
    pred[0, 2, 3] = np.inf  # infinite width: dropped before mapping (not a full-frame box)
    pred[0, 2, 4] = 0.0  # degenerate
    pred[0, 3, 5] = -3.0  # negative height
    pred[0, 0, 6] = -1e4  # far outside: clipped to a zero-width box when mapped
    pred[0, 4:, :7] = 0.9
    _check(device, pred, "yolov8", _mappings(rng, 1) if mapped else None)


@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply")
def test_yolov5_objectness_nan_and_zero(device) -> None:
    rng = np.random.default_rng(9)
    pred = _to_v5(_yolov8(rng, 1, 2, 35), rng)
    pred[0, 0, 4] = np.nan
    pred[0, 1, 4] = 0.0
    pred[0, 1, 5] = np.inf  # 0 * inf = NaN
    _check(device, pred, "yolov5")


@settings(max_examples=6, deadline=None, derandomize=True)
@given(
    b=st.integers(1, 2),
    c=st.integers(1, 4),
    n=st.integers(1, 90),
    layout=st.sampled_from(["yolov8", "yolov5"]),
    iou=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_property_matches_reference(emu, b, c, n, layout, iou, seed) -> None:
    from tests.cuda.conftest import EmuDevice

    rng = np.random.default_rng(seed)
    pred = _yolov8(rng, b, c, n)
    if layout == "yolov5":
        pred = _to_v5(pred, rng)
    _check(EmuDevice(emu), pred, layout, _mappings(rng, b), expect_some=False, iou_threshold=iou)


def test_refuses_bad_arguments() -> None:
    pred = np.zeros((1, 6, 10), np.float32)
    out = dict(
        workspace=np.zeros(1 << 16, np.uint8),
        boxes=np.zeros((1, 5, 4), np.float32),
        scores=np.zeros((1, 5), np.float32),
        classes=np.zeros((1, 5), np.int32),
        counts=np.zeros(1, np.int32),
    )
    with pytest.raises(BackendError, match="iou_threshold"):
        pp.decode(pred, "yolov8", iou_threshold=1.5, max_detections=5, **out)
    with pytest.raises(BackendError, match="layout"):
        pp.decode(pred, "yolov7", max_detections=5, **out)
    with pytest.raises(BackendError, match="boxes must be"):
        pp.decode(pred, "yolov8", max_detections=6, **out)
    with pytest.raises(BackendError, match="max_candidates"):
        pp.workspace_layout(10000, 9000)


def _bound_cases(rng, mappings):
    """Boxes at the size bound: 4 frame widths (heights) in input pixels, as float32 rounds
    it, and one float32 step either side."""
    b = len(mappings)
    pred = _yolov8(rng, b, 2, 48, score_scale=0.8)
    pred[:, 4, :12] = 0.9 + np.arange(12) * 1e-3  # anchor k's score names it
    pred[:, 5, :12] = 0.0
    for i, m in enumerate(mappings):
        wmax = np.float32(m.scale) * np.float32(m.width) * np.float32(4)
        hmax = np.float32(m.scale) * np.float32(m.height) * np.float32(4)
        pred[i, 2, 0:3] = [np.nextafter(wmax, np.float32(0)), wmax, np.nextafter(wmax, np.inf)]
        pred[i, 3, 3:6] = [np.nextafter(hmax, np.float32(0)), hmax, np.nextafter(hmax, np.inf)]
        pred[i, 2, 6], pred[i, 3, 7] = 1e30, -np.inf  # absurd, negative
        pred[i, 0, 8], pred[i, 1, 9] = np.inf, -np.inf  # centre not finite
        pred[i, 2, 10], pred[i, 3, 11] = np.finfo(np.float32).tiny, -0.0  # tiny, zero
    return pred


@pytest.mark.parametrize("mapped", [False, True])
def test_implausible_boxes_are_dropped_before_mapping(device, mapped) -> None:
    rng = np.random.default_rng(10)
    mappings = _mappings(rng, 2)
    pred = _bound_cases(rng, mappings)
    ref = _check(device, pred, "yolov8", mappings if mapped else None, iou_threshold=1.0)
    for d in ref:  # IoU threshold 1: nothing suppressed, every plausible anchor is there
        named = sorted(round((s - 0.9) * 1e3) for s in d.scores.tolist() if s > 0.8995)
        # no size bound without a mapping: only non-finite and non-positive ones go
        assert named == ([0, 1, 3, 4] if mapped else [0, 1, 2, 3, 4, 5, 6])
    # dropped ones cannot take candidate slots either
    _check(device, pred, "yolov8", mappings if mapped else None, max_candidates=5)


@pytest.mark.parametrize("layout", ["yolov8", "yolov5"])
@pytest.mark.parametrize("mapped", [False, True])
def test_logits(device, layout, mapped) -> None:
    rng = np.random.default_rng(11 + mapped)
    pred = _yolov8(rng, 2, 3, 70)
    pred[:, 4:] = rng.normal(-1.0, 3.0, pred[:, 4:].shape)  # logits around the threshold
    pred[0, 4:, :4] = [
        [40.0, 17.0, 1e30, -200.0],
        [39.0, -17.0, 0.0, -150.0],
        [0.0, 17.0, -1e30, -104.0],
    ]  # saturating: ties after the sigmoid
    pred[0, 5, 4], pred[0, 6, 5], pred[0, 4, 6] = np.nan, np.inf, -np.inf
    mappings = _mappings(rng, 2) if mapped else None
    if layout == "yolov5":
        pred = _to_v5(pred, rng)
        pred[:, :, 4] = rng.normal(0.0, 2.0, pred[:, :, 4].shape)  # objectness logits too
        pred[1, 3, 4], pred[1, 4, 4] = np.inf, np.nan
    ref = _check(device, pred, layout, mappings, scores="logits", score_threshold=0.2)
    assert all(((d.scores >= 0) & (d.scores <= 1)).all() for d in ref)


def test_sigmoid_is_bit_exact_with_the_reference(device) -> None:
    # every score is kept (threshold 0, no overlaps): the published scores are the sigmoids
    x = np.concatenate([np.linspace(-105, 20, 1500), [0.0, -0.0, 1e-30, -1e-30, 88.0, -88.0]])
    x = x.astype(np.float32)
    n = x.size
    cx = (np.arange(n) % 64) * 20.0 + 5
    cy = (np.arange(n) // 64) * 20.0 + 5
    pred = np.stack([cx, cy, np.full(n, 4.0), np.full(n, 4.0), x]).astype(np.float32)[None]
    _check(
        device, pred, "yolov8", scores="logits", score_threshold=0.0, max_detections=n, block=128
    )


def test_probabilities_above_one_are_decided_raw_and_published_clipped(device) -> None:
    rng = np.random.default_rng(12)
    pred = _yolov8(rng, 1, 2, 60, score_scale=6.0)  # logits read as probabilities
    ref = _check(device, pred, "yolov8")
    assert ref[0].scores.max() == 1.0 and (ref[0].scores <= 1).all()


def test_refuses_unknown_score_kinds() -> None:
    pred = np.zeros((1, 6, 10), np.float32)
    out = dict(
        workspace=np.zeros(1 << 16, np.uint8),
        boxes=np.zeros((1, 5, 4), np.float32),
        scores=np.zeros((1, 5), np.float32),
        classes=np.zeros((1, 5), np.int32),
        counts=np.zeros(1, np.int32),
    )
    with pytest.raises(BackendError, match="score_kind must be"):
        pp.decode(pred, "yolov8", max_detections=5, score_kind="softmax", **out)
