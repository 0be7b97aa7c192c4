"""COCO-style detection mAP in numpy: AP@0.5 and AP@[0.5:0.05:0.95], per class and overall.

Follows pycocotools' bbox evaluation for the "all areas" range without crowd annotations:
per image and class, detections sorted by score (at most ``max_dets`` of them) are matched
greedily to the unmatched ground-truth box of highest IoU at or above the threshold; the
precision envelope is sampled at 101 recall points; classes without ground truth are left
out of the mean. IoU uses continuous coordinates (``w * h``), as pycocotools does for boxes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

#: IoU thresholds of COCO mAP: 0.50, 0.55, ..., 0.95
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class Box:
    """One box of an image: ``xyxy`` pixels, category id, and the score (detections only)."""

    image_id: int
    category_id: int
    xyxy: tuple[float, float, float, float]
    score: float = 1.0


@dataclass
class EvalResult:
    """mAP over classes with ground truth, and the per-class APs behind it."""

    map50: float
    map50_95: float
    per_class: dict[int, tuple[float, float]] = field(default_factory=dict)
    num_gt: dict[int, int] = field(default_factory=dict)

    def table(self, names: Mapping[int, str] | None = None) -> str:
        """A plain-text table: one row per class, then the mean."""
        names = names or {}
        lines = [f"{'class':<16}{'gt':>7}{'AP50':>9}{'AP50-95':>10}"]
        for cid, (ap50, ap) in sorted(self.per_class.items()):
            label = names.get(cid, str(cid))
            lines.append(f"{label:<16}{self.num_gt.get(cid, 0):>7}{ap50:>9.4f}{ap:>10.4f}")
        total = sum(self.num_gt.values())
        lines.append(f"{'all':<16}{total:>7}{self.map50:>9.4f}{self.map50_95:>10.4f}")
        return "\n".join(lines)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes ``a [N,4]`` against ``b [M,4]``."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _match(dets: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """``[T, D]`` booleans: detection d (sorted by score) is a true positive at threshold t."""
    tp = np.zeros((len(IOU_THRESHOLDS), len(dets)), bool)
    if len(dets) == 0 or len(gts) == 0:
        return tp
    ious = iou_matrix(dets, gts)
    for t, thr in enumerate(IOU_THRESHOLDS):
        taken = np.zeros(len(gts), bool)
        for d in range(len(dets)):
            cand = np.where(taken, -1.0, ious[d])
            g = int(np.argmax(cand))
            # pycocotools: a match needs IoU >= threshold (it compares with min(t, 1 - 1e-10))
            if cand[g] >= min(thr, 1 - 1e-10):
                taken[g] = True
                tp[t, d] = True
    return tp


def average_precision(tp: np.ndarray, scores: np.ndarray, num_gt: int) -> np.ndarray:
    """101-point interpolated AP per IoU threshold from the matches of every detection."""
    if num_gt == 0:
        return np.full(tp.shape[0], np.nan)
    order = np.argsort(-scores, kind="mergesort")
    tp = tp[:, order]
    tps = np.cumsum(tp, axis=1, dtype=np.float64)
    fps = np.cumsum(~tp, axis=1, dtype=np.float64)
    aps = np.zeros(tp.shape[0])
    for t in range(tp.shape[0]):
        if tp.shape[1] == 0:
            continue
        recall = tps[t] / num_gt
        precision = tps[t] / np.maximum(tps[t] + fps[t], np.finfo(np.float64).eps)
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        idx = np.searchsorted(recall, RECALL_POINTS, side="left")
        sampled = np.where(idx < len(envelope), envelope[np.minimum(idx, len(envelope) - 1)], 0.0)
        aps[t] = sampled.mean()
    return aps


def evaluate(
    ground_truth: Iterable[Box],
    detections: Iterable[Box],
    category_ids: Iterable[int] | None = None,
    max_dets: int = 100,
) -> EvalResult:
    """COCO mAP@0.5 and mAP@0.5:0.95 of ``detections`` against ``ground_truth``.

    ``category_ids`` lists the classes to report (default: every class in the ground truth);
    a class without ground truth gets AP ``nan`` and is left out of the means.
    """
    if max_dets < 1:
        raise ValueError(f"max_dets must be at least 1, got {max_dets}")
    gt_by: dict[tuple[int, int], list[tuple[float, ...]]] = defaultdict(list)
    for g in ground_truth:
        gt_by[(g.image_id, g.category_id)].append(g.xyxy)
    det_by: dict[tuple[int, int], list[Box]] = defaultdict(list)
    for d in detections:
        det_by[(d.image_id, d.category_id)].append(d)
    cats = sorted(set(category_ids) if category_ids is not None else {k[1] for k in gt_by})
    result = EvalResult(0.0, 0.0)
    ap50s, aps = [], []
    for c in cats:
        num_gt, tps, scores = 0, [], []
        keys = sorted({k for k in gt_by if k[1] == c} | {k for k in det_by if k[1] == c})
        for key in keys:
            gts = np.asarray(gt_by.get(key, []), np.float64).reshape(-1, 4)
            # pycocotools keeps the max_dets best detections per image and category
            ds = sorted(det_by.get(key, []), key=lambda b: -b.score)[:max_dets]
            num_gt += len(gts)
            dets = np.asarray([d.xyxy for d in ds], np.float64).reshape(-1, 4)
            tps.append(_match(dets, gts))
            scores.extend(d.score for d in ds)
        tp = np.concatenate(tps, axis=1) if tps else np.zeros((len(IOU_THRESHOLDS), 0), bool)
        ap = average_precision(tp, np.asarray(scores, np.float64), num_gt)
        result.num_gt[c] = num_gt
        result.per_class[c] = (float(ap[0]), float(np.mean(ap)))
        if num_gt:
            ap50s.append(ap[0])
            aps.append(np.mean(ap))
    result.map50 = float(np.mean(ap50s)) if ap50s else float("nan")
    result.map50_95 = float(np.mean(aps)) if aps else float("nan")
    return result


def coco_ground_truth(coco: Mapping) -> list[Box]:
    """Ground-truth boxes of a COCO dataset dict (crowd annotations are rejected)."""
    out = []
    for a in coco["annotations"]:
        if a.get("iscrowd", 0):
            raise ValueError(f"annotation {a.get('id')} is a crowd region; crowd is not supported")
        x, y, w, h = a["bbox"]
        out.append(Box(int(a["image_id"]), int(a["category_id"]), (x, y, x + w, y + h)))
    return out
