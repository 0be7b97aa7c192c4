"""Decode YOLO-family detector outputs into boxes in the original frame's pixels.

Two layouts are understood:

* ``yolov8`` -- ultralytics YOLOv8 / YOLO11 exports, ``[B, 4 + C, N]``: ``cx, cy, w, h`` in
  input pixels followed by ``C`` class scores already passed through a sigmoid;
* ``yolov5`` -- ``[B, N, 5 + C]``: ``cx, cy, w, h, objectness, C class scores`` (also after
  sigmoid); a box's score for class ``c`` is ``objectness * score_c``.

Each candidate keeps its best class only (as ultralytics does without ``multi_label``);
non-maximum suppression is class-aware and vectorised in numpy. Boxes are mapped back
through the letterbox (:class:`edge_infer.pipeline.preprocess.Letterbox`) and clipped to
the frame; non-finite or degenerate boxes are dropped before NMS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

Layout = Literal["yolov8", "yolov5"]


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
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                          np.zeros(0, np.int64))


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
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, classes: np.ndarray | None = None
) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, highest score first.

    With ``classes`` given, boxes of different classes never suppress each other (the boxes
    are shifted apart per class, so one pass handles every class).
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be within [0, 1], got {iou_threshold}")
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
    # a box survives if no earlier *surviving* box overlaps it too much; walk the order once,
    # each step a vector op over the remaining boxes
    keep = np.ones(n, bool)
    for i in range(n):
        if keep[i]:
            suppress = iou[i, i + 1 :] > iou_threshold
            keep[i + 1 :] &= ~suppress
    return order[keep]


def _candidates(
    pred: np.ndarray, layout: Layout
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw output → (cxcywh ``[N, 4]``, best score ``[N]``, best class ``[N]``)."""
    if layout == "yolov8":
        if pred.ndim != 2 or pred.shape[0] < 5:
            raise ValueError(f"yolov8 output of one image must be [4 + C, N], got {pred.shape}")
        boxes, cls_scores = pred[:4].T, pred[4:].T
    elif layout == "yolov5":
        if pred.ndim != 2 or pred.shape[1] < 6:
            raise ValueError(f"yolov5 output of one image must be [N, 5 + C], got {pred.shape}")
        boxes, cls_scores = pred[:, :4], pred[:, 5:] * pred[:, 4:5]
    else:
        raise ValueError(f"unknown output layout {layout!r}; expected 'yolov8' or 'yolov5'")
    classes = np.argmax(cls_scores, axis=1)
    scores = np.take_along_axis(cls_scores, classes[:, None], axis=1)[:, 0]
    return boxes, scores, classes


def decode(
    output: np.ndarray,
    mappings: list[BoxMapping] | None = None,
    layout: Layout = "yolov8",
    score_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_detections: int = 300,
    max_candidates: int = 4096,
) -> list[Detections]:
    """Decode a batch of raw outputs into per-image detections in original-frame pixels.

    ``mappings[i]`` maps image ``i`` back from the model input (see
    ``preprocess.letterbox_geometry``); without it boxes stay in input pixels, unclipped.
    At most ``max_candidates`` boxes per image, the best scoring, enter NMS (whose cost is
    quadratic in their number).
    """
    out = np.asarray(output)
    if out.ndim != 3:
        raise ValueError(f"detector output must be 3-D [B, ...], got shape {out.shape}")
    if mappings is not None and len(mappings) != out.shape[0]:
        raise ValueError(f"{len(mappings)} letterbox mappings for a batch of {out.shape[0]}")
    results = []
    for i in range(out.shape[0]):
        cxcywh, scores, classes = _candidates(out[i].astype(np.float32, copy=False), layout)
        sel = np.flatnonzero(np.isfinite(scores) & (scores > score_threshold))
        if sel.size > max_candidates:
            sel = sel[np.argsort(-scores[sel], kind="stable")[:max_candidates]]
        cxcywh, scores, classes = cxcywh[sel], scores[sel], classes[sel]
        xy, half = cxcywh[:, :2], cxcywh[:, 2:] / 2
        boxes = np.concatenate((xy - half, xy + half), axis=1)
        if mappings is not None:
            boxes = _unletterbox(boxes, mappings[i])
        ok = np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > boxes[:, 0]) & (
            boxes[:, 3] > boxes[:, 1]
        )
        boxes, scores, classes = boxes[ok], scores[ok], classes[ok]
        keep = nms(boxes, scores, iou_threshold, classes)[:max_detections]
        results.append(Detections(boxes[keep].astype(np.float32), scores[keep].astype(np.float32),
                                  classes[keep].astype(np.int64)))
    return results


def _unletterbox(boxes: np.ndarray, m: BoxMapping) -> np.ndarray:
    out = np.empty_like(boxes)
    out[:, [0, 2]] = (boxes[:, [0, 2]] - m.pad_x) / m.scale
    out[:, [1, 3]] = (boxes[:, [1, 3]] - m.pad_y) / m.scale
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, m.width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, m.height)
    return out
