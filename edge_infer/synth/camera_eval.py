"""Precision and recall of a detector on camera videos: a greedy, class-aware box matcher.

Independent of the COCO mAP of :mod:`edge_infer.synth.evaluate`: per frame, detections are
taken best score first and each is matched to the not yet matched ground-truth box of its
own class with which it has the highest IoU, if that IoU is at least the threshold. A
matched detection is a true positive, any other a false positive; a ground-truth box left
unmatched is a miss. Because greedy NMS and greedy matching both go in score order, the
matches of the detections above any score threshold are the same as those found at a
lower threshold, so one pass at a low threshold gives the whole precision/recall curve.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_infer.synth.evaluate import iou_matrix

#: ground-truth size buckets (shorter side of the visible box, frame pixels) for the report
SIZE_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("< 12 px", 0.0, 12.0),
    ("12-24 px", 12.0, 24.0),
    ("24-48 px", 24.0, 48.0),
    (">= 48 px", 48.0, float("inf")),
)


@dataclass(frozen=True)
class FrameTruth:
    """Ground truth of one frame: ``boxes [K, 4]`` xyxy in frame pixels, ``classes [K]``."""

    boxes: np.ndarray
    classes: np.ndarray


def load_camera_truth(path: str | os.PathLike[str]) -> list[FrameTruth]:
    """Per-frame ground truth of a camera file written by :func:`synth.video.render_camera`."""
    data = json.loads(Path(path).read_text())
    frames = []
    for objs in data["ground_truth"]:
        xywh = np.array([o["bbox"] for o in objs], np.float64).reshape(-1, 4)
        boxes = np.concatenate((xywh[:, :2], xywh[:, :2] + xywh[:, 2:]), axis=1)
        frames.append(FrameTruth(boxes, np.array([o["class_id"] for o in objs], np.int64)))
    return frames


def match_frame(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    truth: FrameTruth,
    iou_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy class-aware matching of one frame's detections to its ground truth.

    Returns ``tp [N]`` (bool, per detection, in the given order) and ``matched [K]`` (the
    score of the detection each ground-truth box was matched to, ``-1`` when missed).
    """
    n, k = len(scores), len(truth.classes)
    tp = np.zeros(n, bool)
    matched = np.full(k, -1.0)
    if n == 0 or k == 0:
        return tp, matched
    ious = iou_matrix(boxes, truth.boxes)
    ious[np.asarray(classes)[:, None] != truth.classes[None, :]] = 0.0
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        row = np.where(matched < 0, ious[i], -1.0)
        j = int(np.argmax(row))
        if row[j] >= iou_threshold:
            tp[i] = True
            matched[j] = float(scores[i])
    return tp, matched


@dataclass
class PRCurve:
    """Scores and match flags of every detection, and the ground-truth count."""

    scores: np.ndarray
    tp: np.ndarray
    n_truth: int

    @staticmethod
    def combine(curves: list[PRCurve]) -> PRCurve:
        if not curves:
            return PRCurve(np.zeros(0), np.zeros(0, bool), 0)
        return PRCurve(
            np.concatenate([c.scores for c in curves]),
            np.concatenate([c.tp for c in curves]),
            sum(c.n_truth for c in curves),
        )

    def at(self, threshold: float) -> dict[str, float]:
        """Precision, recall and counts of the detections scoring above ``threshold``."""
        keep = self.scores > threshold
        tp = int(np.count_nonzero(self.tp[keep]))
        det = int(np.count_nonzero(keep))
        return {
            "threshold": float(threshold),
            "precision": tp / det if det else 1.0,
            "recall": tp / self.n_truth if self.n_truth else 1.0,
            "tp": tp,
            "fp": det - tp,
            "fn": self.n_truth - tp,
        }

    def best_recall(self, min_precision: float) -> dict[str, float]:
        """The highest recall over score thresholds whose precision is at least ``min_precision``
        (with the threshold and precision there); recall 0 when no threshold reaches it."""
        order = np.argsort(-self.scores, kind="stable")
        s, tp = self.scores[order], self.tp[order]
        ctp = np.cumsum(tp)
        prec = ctp / np.arange(1, len(s) + 1)
        # a threshold can only cut between different scores: use the last index of each run
        last = np.r_[s[1:] != s[:-1], True] if len(s) else np.zeros(0, bool)
        ok = np.flatnonzero(last & (prec >= min_precision))
        if ok.size == 0 or self.n_truth == 0:
            return {"threshold": 1.0, "precision": 1.0, "recall": 0.0}
        i = int(ok[np.argmax(ctp[ok])])
        below = float(s[i + 1]) if i + 1 < len(s) else 0.0
        return {
            "threshold": (float(s[i]) + below) / 2,
            "precision": float(prec[i]),
            "recall": float(ctp[i]) / self.n_truth,
        }
