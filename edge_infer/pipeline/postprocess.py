"""Decode YOLO-family detector outputs into boxes in the original frame's pixels.

Two layouts are understood:

* ``yolov8`` -- ultralytics YOLOv8 / YOLO11 exports, ``[B, 4 + C, N]``: ``cx, cy, w, h`` in
  input pixels followed by ``C`` class scores;
* ``yolov5`` -- ``[B, N, 5 + C]``: ``cx, cy, w, h, objectness, C class scores``; a box's
  score for class ``c`` is ``objectness * score_c``.

Scores are ``probabilities`` (the exports' default: already through a sigmoid) or ``logits``
(a head exported without it): the class is then the best raw logit and its score
``sigmoid(logit)`` (times ``sigmoid(objectness)`` for yolov5), before the threshold.
Published scores are clipped into [0, 1]; a probability above 1 warns once (a logit model).

Each candidate keeps its best class only (as ultralytics does without ``multi_label``).
A candidate whose ``cx, cy, w, h`` are not all finite, whose ``w`` or ``h`` is not positive,
or (with a letterbox mapping) that is more than :data:`MAX_BOX_FRAMES` frame widths wide or
frame heights tall is dropped before anything else, so it can neither take a candidate slot
nor be clipped into a frame-sized detection. NMS is greedy and class-aware, in O(N) memory.
Boxes are mapped back through the letterbox (:class:`edge_infer.pipeline.preprocess.Letterbox`)
and clipped to the frame; boxes clipped to nothing are dropped before NMS.
``edge_infer/cuda/kernels/postprocess.cu`` makes the same decisions on the device.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

Layout = Literal["yolov8", "yolov5"]
ScoreKind = Literal["probabilities", "logits"]
SCORE_KINDS = ("probabilities", "logits")

#: a box more than this many frame widths wide (or heights tall) is no detection: a real
#: object cut by the frame edge overshoots it by a fraction, a diverged regression by orders
#: of magnitude; 4 leaves room for the former, and the bound is a power of two so that
#: ``scale * width * 4`` rounds once, identically in numpy and in the CUDA kernel
MAX_BOX_FRAMES = 4

log = logging.getLogger(__name__)
_warned_out_of_range = False  # one warning per process: the cause is the model, not a frame


class BoxMapping(Protocol):
    """What postprocessing needs from a letterbox: scale, padding and the original size."""

    scale: float
    pad_x: float
    pad_y: float
    width: int
    height: int


@dataclass(frozen=True)
class Detections:
    """Detections of one image: ``boxes [K, 4]`` xyxy float32, ``scores [K]``, ``classes [K]``."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @staticmethod
    def empty() -> Detections:
        return Detections(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        )


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[len(a), len(b)]`` of xyxy boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    classes: np.ndarray | None = None,
    max_detections: int | None = None,
) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, highest score first (ties: lower index first).

    With ``classes`` given, boxes of different classes never suppress each other (the boxes
    are shifted apart per class, so one pass handles every class). At most
    ``max_detections`` are returned: the walk stops there, as later decisions cannot change
    the first ones. Memory is O(N); time O(N) per kept box.
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be within [0, 1], got {iou_threshold}")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = boxes.shape[0]
    limit = n if max_detections is None else min(n, max(0, int(max_detections)))
    if limit == 0:
        return np.zeros(0, np.int64)
    if classes is not None:
        span = float(np.abs(boxes).max()) * 2.0 + 1.0
        boxes = boxes + (np.asarray(classes, np.float64) * span)[:, None]
    order = np.argsort(-np.asarray(scores), kind="stable")
    # box_iou's formula and operation order, one row at a time: the same float64 IoUs, so
    # the same decisions as the full matrix, without its N^2 memory
    x1, y1, x2, y2 = (np.ascontiguousarray(c) for c in boxes[order].T)
    area = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep = []
    rest = np.arange(n)  # positions in score order still alive
    while rest.size and len(keep) < limit:
        i, rest = rest[0], rest[1:]
        keep.append(i)
        if not rest.size or len(keep) == limit:
            break
        # np.maximum(v, 0) is np.clip(v, 0, None) up to the sign of a zero, which no
        # comparison below sees, and the cheaper call
        iw = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0.0)
        ih = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0.0)
        inter = iw * ih
        union = area[i] + area[rest] - inter
        positive = union > 0
        iou = np.where(positive, inter / np.where(positive, union, 1.0), 0.0)
        rest = rest[~(iou > iou_threshold)]  # NaN IoU suppresses nothing, as before
    return order[np.asarray(keep, np.int64)]


# sigmoid from IEEE-rounded float64 additions, multiplications and a division only (no libm
# exp, whose last bit varies between numpy's SIMD code, glibc and CUDA), so the CUDA kernel
# repeats it bit for bit: exp(t) = 2^k * p(r), t = k ln2 + r, |r| <= ln2 / 2, p the Taylor
# polynomial of degree 11 (relative error < 1e-14, far below float32's 6e-8)
_LOGIT_CLAMP = 120.0  # sigmoid is 0 (< 2^-149) below -104 and 1.0f above 17 in float32
_INV_LN2 = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 split (fdlibm's): k * _LN2_HI is exact for |k| < 2^20
_LN2_LO = 1.9082149292705877e-10
_EXP_TAYLOR = (  # 1 / n!, n = 11 .. 0, as Python rounds them; the kernel spells the same
    2.505210838544172e-08,
    2.755731922398589e-07,
    2.7557319223985893e-06,
    2.48015873015873e-05,
    0.0001984126984126984,
    0.001388888888888889,
    0.008333333333333333,
    0.041666666666666664,
    0.16666666666666666,
    0.5,
    1.0,
    1.0,
)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` of finite float32 logits, as float32 (within one ulp; equal to
    the CUDA kernel's ``pp_sigmoid``)."""
    t = np.clip(-np.asarray(x, np.float64), -_LOGIT_CLAMP, _LOGIT_CLAMP)
    k = np.floor(t * _INV_LN2 + 0.5)
    r = (t - k * _LN2_HI) - k * _LN2_LO
    p = np.full_like(r, _EXP_TAYLOR[0])
    for c in _EXP_TAYLOR[1:]:
        p = p * r + c
    return (1.0 / (1.0 + np.ldexp(p, k.astype(np.int32)))).astype(np.float32)


def _candidates(
    pred: np.ndarray, layout: Layout, kind: ScoreKind
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw output → (cxcywh ``[N, 4]``, best score ``[N]``, best class ``[N]``);
    a score is NaN where the anchor has no valid one."""
    if layout == "yolov8":
        if pred.ndim != 2 or pred.shape[0] < 5:
            raise ValueError(f"yolov8 output of one image must be [4 + C, N], got {pred.shape}")
        boxes, cls_scores, obj = pred[:4].T, pred[4:].T, None
    elif layout == "yolov5":
        if pred.ndim != 2 or pred.shape[1] < 6:
            raise ValueError(f"yolov5 output of one image must be [N, 5 + C], got {pred.shape}")
        boxes, cls_scores, obj = pred[:, :4], pred[:, 5:], pred[:, 4]
        if kind == "probabilities":
            cls_scores = cls_scores * obj[:, None]
    else:
        raise ValueError(f"unknown output layout {layout!r}; expected 'yolov8' or 'yolov5'")
    classes = np.argmax(cls_scores, axis=1)  # a NaN anywhere wins: the anchor is dropped
    scores = np.take_along_axis(cls_scores, classes[:, None], axis=1)[:, 0]
    if kind == "logits":
        # the best logit is the best probability (sigmoid is monotonic); one sigmoid each
        ok = np.isfinite(scores) & (True if obj is None else np.isfinite(obj))
        prob = np.full(scores.shape, np.nan, np.float32)
        prob[ok] = sigmoid(scores[ok])
        if obj is not None:
            prob[ok] *= sigmoid(obj[ok])
        scores = prob
    return boxes, scores, classes


def _plausible(cxcywh: np.ndarray, m: BoxMapping | None) -> np.ndarray:
    """Anchors whose box can be a detection: finite, positive size, at most MAX_BOX_FRAMES
    frames wide and tall (compared in float32 input pixels, as the kernel does)."""
    w, h = cxcywh[:, 2], cxcywh[:, 3]
    ok = np.isfinite(cxcywh).all(axis=1) & (w > 0) & (h > 0)
    if m is not None:
        scale, frames = np.float32(m.scale), np.float32(MAX_BOX_FRAMES)
        ok &= w <= scale * np.float32(m.width) * frames
        ok &= h <= scale * np.float32(m.height) * frames
    return ok


def decode(
    output: np.ndarray,
    mappings: list[BoxMapping] | None = None,
    layout: Layout = "yolov8",
    score_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_detections: int = 300,
    max_candidates: int = 4096,
    scores: ScoreKind = "probabilities",
) -> list[Detections]:
    """Decode a batch of raw outputs into per-image detections in original-frame pixels.

    ``mappings[i]`` maps image ``i`` back from the model input (see
    ``preprocess.letterbox_geometry``); without it boxes stay in input pixels, unclipped,
    and only non-finite and non-positive sizes are dropped. At most ``max_candidates`` boxes
    per image, the best scoring, enter NMS. ``scores`` says what the class scores are:
    ``probabilities`` or ``logits`` (see the module docstring).
    """
    global _warned_out_of_range
    if scores not in SCORE_KINDS:
        raise ValueError(f"scores must be one of {SCORE_KINDS}, got {scores!r}")
    out = np.asarray(output)
    if out.ndim != 3:
        raise ValueError(f"detector output must be 3-D [B, ...], got shape {out.shape}")
    if mappings is not None and len(mappings) != out.shape[0]:
        raise ValueError(f"{len(mappings)} letterbox mappings for a batch of {out.shape[0]}")
    results = []
    for i in range(out.shape[0]):
        m = None if mappings is None else mappings[i]
        cxcywh, score, classes = _candidates(out[i].astype(np.float32, copy=False), layout, scores)
        with np.errstate(invalid="ignore"):  # NaN sizes compare False: dropped
            valid = np.isfinite(score) & (score > score_threshold) & _plausible(cxcywh, m)
        sel = np.flatnonzero(valid)
        if sel.size > max_candidates:
            sel = sel[np.argsort(-score[sel], kind="stable")[:max_candidates]]
        cxcywh, score, classes = cxcywh[sel], score[sel], classes[sel]
        if score.size and score.max() > 1.0 and not _warned_out_of_range:
            _warned_out_of_range = True
            log.warning(
                "detector scores above 1 (up to %.3g) with postprocess.scores: "
                "probabilities; the model likely outputs logits (set "
                "postprocess.scores: logits); published scores are clipped to 1",
                float(score.max()),
            )
        xy, half = cxcywh[:, :2], cxcywh[:, 2:] / 2
        boxes = np.concatenate((xy - half, xy + half), axis=1)
        if m is not None:
            boxes = _unletterbox(boxes, m)
        # a box that lies outside the frame is clipped to nothing
        ok = (
            np.isfinite(boxes).all(axis=1)
            & (boxes[:, 2] > boxes[:, 0])
            & (boxes[:, 3] > boxes[:, 1])
        )
        boxes, score, classes = boxes[ok], score[ok], classes[ok]
        keep = nms(boxes, score, iou_threshold, classes, max_detections)
        # decisions above use the raw scores; the payload's score is a probability
        results.append(
            Detections(
                boxes[keep].astype(np.float32),
                np.clip(score[keep], 0.0, 1.0).astype(np.float32),
                classes[keep].astype(np.int64),
            )
        )
    return results


def _unletterbox(boxes: np.ndarray, m: BoxMapping) -> np.ndarray:
    out = np.empty_like(boxes)
    out[:, [0, 2]] = (boxes[:, [0, 2]] - m.pad_x) / m.scale
    out[:, [1, 3]] = (boxes[:, [1, 3]] - m.pad_y) / m.scale
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, m.width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, m.height)
    return out
