"""YOLOv8-style training loss: task-aligned assignment (TAL), BCE, CIoU and DFL (dev-only)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from yolo_model import REG_MAX


def box_iou_ciou(b1: torch.Tensor, b2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of paired xyxy boxes ``[..., 4]``."""
    b1x1, b1y1, b1x2, b1y2 = b1.unbind(-1)
    b2x1, b2y1, b2x2, b2y2 = b2.unbind(-1)
    w1, h1 = b1x2 - b1x1, (b1y2 - b1y1).clamp(min=eps)
    w2, h2 = b2x2 - b2x1, (b2y2 - b2y1).clamp(min=eps)
    inter = (torch.min(b1x2, b2x2) - torch.max(b1x1, b2x1)).clamp(0) * (
        torch.min(b1y2, b2y2) - torch.max(b1y1, b2y1)
    ).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.max(b1x2, b2x2) - torch.min(b1x1, b2x1)
    ch = torch.max(b1y2, b2y2) - torch.min(b1y1, b2y1)
    c2 = cw**2 + ch**2 + eps
    rho2 = ((b2x1 + b2x2 - b1x1 - b1x2) ** 2 + (b2y1 + b2y2 - b1y1 - b1y2) ** 2) / 4
    v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def box_iou_pairwise(gt: torch.Tensor, pd: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Plain IoU of ``gt [..., 4]`` and ``pd [..., 4]`` (broadcast), xyxy."""
    iw = (torch.min(gt[..., 2], pd[..., 2]) - torch.max(gt[..., 0], pd[..., 0])).clamp(0)
    ih = (torch.min(gt[..., 3], pd[..., 3]) - torch.max(gt[..., 1], pd[..., 1])).clamp(0)
    inter = iw * ih
    a1 = (gt[..., 2] - gt[..., 0]) * (gt[..., 3] - gt[..., 1])
    a2 = (pd[..., 2] - pd[..., 0]).clamp(0) * (pd[..., 3] - pd[..., 1]).clamp(0)
    return inter / (a1 + a2 - inter + eps)


@torch.no_grad()
def tal_assign(
    pd_scores: torch.Tensor,  # [b, A, nc] sigmoid scores
    pd_boxes: torch.Tensor,  # [b, A, 4] xyxy pixels
    anchors: torch.Tensor,  # [A, 2] pixels
    gt_labels: torch.Tensor,  # [b, M] long
    gt_boxes: torch.Tensor,  # [b, M, 4] xyxy pixels
    gt_mask: torch.Tensor,  # [b, M] bool
    topk: int = 10,
    alpha: float = 0.5,
    beta: float = 6.0,
    eps: float = 1e-9,
    min_side: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Task-aligned assignment; returns target boxes ``[b,A,4]``, scores ``[b,A,nc]``, fg mask."""
    b, a, nc = pd_scores.shape
    m = gt_boxes.shape[1]
    if m == 0:
        return (
            torch.zeros_like(pd_boxes),
            torch.zeros_like(pd_scores),
            torch.zeros(b, a, dtype=torch.bool),
        )
    # anchor centres strictly inside each gt box: [b, M, A]; a box narrower than
    # ``min_side`` is widened about its centre for this test only, so that even a tiny object
    # has an anchor centre inside it (its regression target stays the true box)
    cands = gt_boxes
    if min_side > 0:
        c = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2
        half = ((gt_boxes[..., 2:] - gt_boxes[..., :2]) / 2).clamp(min=min_side / 2)
        cands = torch.cat((c - half, c + half), -1)
    lt = anchors[None, None] - cands[:, :, None, :2]
    rb = cands[:, :, None, 2:] - anchors[None, None]
    in_gt = torch.cat((lt, rb), -1).amin(-1) > eps
    valid = in_gt & gt_mask[:, :, None]
    overlaps = box_iou_pairwise(gt_boxes[:, :, None, :], pd_boxes[:, None, :, :]).clamp(0)
    overlaps = overlaps * valid
    idx = gt_labels.clamp(0)[:, :, None].expand(-1, -1, a)  # [b, M, A]
    scores = torch.gather(pd_scores.transpose(1, 2), 1, idx) * valid
    metric = scores.pow(alpha) * overlaps.pow(beta)
    top = torch.topk(metric, min(topk, a), dim=-1).indices
    in_top = torch.zeros_like(metric).scatter_(-1, top, 1.0).bool()
    pos = in_top & valid  # [b, M, A]
    # an anchor claimed by several gts goes to the one it overlaps most
    multi = pos.sum(1, keepdim=True) > 1
    if multi.any():
        best = F.one_hot(overlaps.argmax(1), m).permute(0, 2, 1).bool()
        pos = torch.where(multi.expand(-1, m, -1), best & valid, pos)
    fg = pos.any(1)  # [b, A]
    gt_idx = pos.float().argmax(1)  # [b, A]
    batch = torch.arange(b)[:, None]
    t_labels = gt_labels[batch, gt_idx]
    t_boxes = gt_boxes[batch, gt_idx]
    t_scores = F.one_hot(t_labels.clamp(0), nc).float() * fg[..., None]
    metric = metric * pos
    pos_overlaps = (overlaps * pos).amax(-1, keepdim=True)
    norm = metric * pos_overlaps / (metric.amax(-1, keepdim=True) + eps)
    t_scores = t_scores * norm.amax(1)[..., None]
    return t_boxes, t_scores, fg


def bbox_decode(anchors: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Bin logits ``[b, A, 4*REG_MAX]`` → xyxy boxes in grid units around ``anchors``."""
    b, a, _ = dist.shape
    proj = torch.arange(REG_MAX, dtype=dist.dtype)
    d = dist.view(b, a, 4, REG_MAX).softmax(3) @ proj
    return torch.cat((anchors - d[..., :2], anchors + d[..., 2:]), -1)


def dfl_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Distribution focal loss: cross-entropy to the two bins around each target distance."""
    tl = target.long()
    tr = tl + 1
    wl = tr - target
    wr = 1 - wl
    return (
        F.cross_entropy(pred, tl.view(-1), reduction="none").view(tl.shape) * wl
        + F.cross_entropy(pred, tr.view(-1), reduction="none").view(tl.shape) * wr
    ).mean(-1, keepdim=True)


class DetectionLoss:
    """Box (CIoU) + class (BCE) + DFL loss with ultralytics' default gains."""

    def __init__(
        self, nc: int, box: float = 7.5, cls: float = 0.5, dfl: float = 1.5, min_side: float = 0
    ) -> None:
        self.nc, self.gains, self.min_side = nc, (box, cls, dfl), min_side

    def __call__(
        self,
        feats: list[torch.Tensor],
        anchors: torch.Tensor,  # [A, 2] grid units
        strides: torch.Tensor,  # [A, 1]
        gt_labels: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b = feats[0].shape[0]
        x = torch.cat([f.view(b, f.shape[1], -1) for f in feats], 2).transpose(1, 2)
        dist, logits = x.split((4 * REG_MAX, self.nc), 2)
        pd_boxes = bbox_decode(anchors, dist)  # grid units
        t_boxes, t_scores, fg = tal_assign(
            logits.detach().sigmoid(),
            pd_boxes.detach() * strides,
            anchors * strides,
            gt_labels,
            gt_boxes,
            gt_mask,
            min_side=self.min_side,
        )
        tss = t_scores.sum().clamp(min=1.0)
        loss_cls = F.binary_cross_entropy_with_logits(logits, t_scores, reduction="sum") / tss
        loss_box = torch.zeros(())
        loss_dfl = torch.zeros(())
        if fg.any():
            weight = t_scores.sum(-1)[fg][:, None]
            tb = t_boxes / strides  # grid units
            iou = box_iou_ciou(pd_boxes[fg], tb[fg])
            loss_box = ((1.0 - iou)[:, None] * weight).sum() / tss
            anc = anchors[None].expand(b, -1, -1)[fg]
            target = torch.cat((anc - tb[fg][:, :2], tb[fg][:, 2:] - anc), -1)
            target = target.clamp(0, REG_MAX - 1 - 0.01)
            loss_dfl = (dfl_loss(dist[fg].reshape(-1, REG_MAX), target) * weight).sum() / tss
        g = self.gains
        parts = torch.stack((loss_box.detach(), loss_cls.detach(), loss_dfl.detach()))
        return g[0] * loss_box + g[1] * loss_cls + g[2] * loss_dfl, parts
