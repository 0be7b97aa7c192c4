"""A small YOLOv8-style detector in PyTorch (dev-only; used by ``tools/train_detector.py``).

Conv-BN-SiLU blocks, C2f, SPPF, an upsample + concat (PAN) neck and a decoupled anchor-free
head with DFL at strides 8/16/32 -- the ultralytics YOLOv8 structure at a smaller width.
In export mode the head emits exactly what an ultralytics ONNX export emits:
``[batch, 4 + classes, anchors]`` with cx, cy, w, h in input pixels and sigmoid scores, the
DFL decoded inside the graph (Reshape, Transpose, Softmax, 1×1 Conv with arange weights).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

REG_MAX = 16
STRIDES = (8, 16, 32)


class Conv(nn.Module):
    """Conv2d (no bias) + BatchNorm + SiLU."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> None:
        """Fold the BatchNorm into the convolution (as ultralytics does before export).

        Idempotent: a Conv that is already folded (no BatchNorm left) stays as it is."""
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        w, bn = self.conv.weight, self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(
            self.conv.in_channels,
            self.conv.out_channels,
            self.conv.kernel_size,
            self.conv.stride,
            self.conv.padding,
            bias=True,
        )
        fused.weight.data = w.data * scale.view(-1, 1, 1, 1)
        fused.bias.data = bn.bias.data - bn.running_mean * scale
        self.conv = fused
        self.bn = nn.Identity()


class Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool = True) -> None:
        super().__init__()
        self.cv1 = Conv(c, c, 3)
        self.cv2 = Conv(c, c, 3)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP bottleneck with two convolutions: split, n bottlenecks, concat every stage."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False) -> None:
        super().__init__()
        self.c = c2 // 2
        self.cv1 = Conv(c1, 2 * self.c, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1)
        self.cv2 = Conv(c_ * 4, c2, 1)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        y.extend(self.m(y[-1]) for _ in range(3))
        return self.cv2(torch.cat(y, 1))


class DFL(nn.Module):
    """Distribution focal loss integral: softmax over bins, then a 1×1 conv with arange weights."""

    def __init__(self, c1: int = REG_MAX) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(c1, dtype=torch.float).view(1, c1, 1, 1)
        self.c1 = c1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape
        return self.conv(x.view(b, 4, self.c1, a).transpose(2, 1).softmax(1)).view(b, 4, a)


def make_anchors(
    shapes: Sequence[Sequence[int]], strides: tuple[int, ...], offset: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor centres in grid units ``[A, 2]`` and the stride of each anchor ``[A, 1]``.

    ``shapes`` are the levels' ``(height, width)``; traced feature-map sizes export as
    Shape/Range/Expand nodes (ultralytics' dynamic export)."""
    points, stride_t = [], []
    for (h, w), s in zip(shapes, strides):
        sx = torch.arange(end=w, dtype=torch.float) + offset
        sy = torch.arange(end=h, dtype=torch.float) + offset
        sy, sx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((sx, sy), -1).view(-1, 2))
        stride_t.append(torch.full((h * w, 1), float(s)))
    return torch.cat(points).float(), torch.cat(stride_t)


class Detect(nn.Module):
    """Decoupled anchor-free head: a box branch (4×REG_MAX bins) and a class branch per level."""

    def __init__(self, nc: int, ch: tuple[int, ...], hidden: int = 48) -> None:
        super().__init__()
        self.nc, self.no = nc, nc + 4 * REG_MAX
        self.export = False
        self.dynamic = False  # export: anchors from the feature maps' shapes (any input size)
        self.cv2 = nn.ModuleList(
            nn.Sequential(
                Conv(c, hidden, 3), Conv(hidden, hidden, 3), nn.Conv2d(hidden, 4 * REG_MAX, 1)
            )
            for c in ch
        )
        self.cv3 = nn.ModuleList(
            nn.Sequential(Conv(c, hidden, 3), Conv(hidden, hidden, 3), nn.Conv2d(hidden, nc, 1))
            for c in ch
        )
        self.dfl = DFL(REG_MAX)
        self.register_buffer("anchors", torch.zeros(2, 0), persistent=False)
        self.register_buffer("strides", torch.zeros(1, 0), persistent=False)

    def init_bias(self, imgsz: int) -> None:
        """Ultralytics' prior: box bins flat, class logits at ~5 objects per image."""
        for a, b, s in zip(self.cv2, self.cv3, STRIDES):
            a[-1].bias.data[:] = 1.0
            b[-1].bias.data[:] = math.log(5 / self.nc / (imgsz / s) ** 2)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor] | torch.Tensor:
        out = [torch.cat((a(x), b(x)), 1) for x, a, b in zip(xs, self.cv2, self.cv3)]
        if not self.export:
            return out
        b = out[0].shape[0]
        x_cat = torch.cat([o.view(b, self.no, -1) for o in out], 2)
        box, cls = x_cat.split((4 * REG_MAX, self.nc), 1)
        lt, rb = self.dfl(box).chunk(2, 1)
        if self.dynamic:
            # as ultralytics' dynamic export: Shape -> Range/Expand in the graph, which an
            # engine built for one input shape folds to constants
            points, stride_t = make_anchors([o.shape[2:] for o in out], STRIDES)
            anchors, strides = points.transpose(0, 1).unsqueeze(0), stride_t.transpose(0, 1)
        else:
            anchors, strides = self.anchors.unsqueeze(0), self.strides
        x1y1, x2y2 = anchors - lt, anchors + rb
        dbox = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * strides
        return torch.cat((dbox, cls.sigmoid()), 1)

    def prepare_export(self, imgsz: int | tuple[int, int] | None) -> None:
        """Switch to the export output with anchors for any input size (``imgsz`` None: they
        are computed from the feature maps' shapes), or frozen for an ``imgsz`` input (side,
        or ``(height, width)``)."""
        self.export = True
        self.dynamic = imgsz is None
        if imgsz is None:
            return
        h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
        shapes = [(h // s, w // s) for s in STRIDES]
        points, stride_t = make_anchors(shapes, STRIDES)
        self.anchors = points.transpose(0, 1).contiguous()
        self.strides = stride_t.transpose(0, 1).contiguous()


class Detector(nn.Module):
    """Backbone (C2f stages + SPPF), PAN neck and the Detect head."""

    def __init__(self, nc: int = 6, width: tuple[int, ...] = (16, 32, 64, 96, 128)) -> None:
        super().__init__()
        c0, c1, c2, c3, c4 = width
        self.stem = Conv(3, c0, 3, 2)  # /2
        self.down1 = nn.Sequential(Conv(c0, c1, 3, 2), C2f(c1, c1, 1, True))  # /4
        self.down2 = nn.Sequential(Conv(c1, c2, 3, 2), C2f(c2, c2, 2, True))  # /8  P3
        self.down3 = nn.Sequential(Conv(c2, c3, 3, 2), C2f(c3, c3, 2, True))  # /16 P4
        self.down4 = nn.Sequential(Conv(c3, c4, 3, 2), C2f(c4, c4, 1, True), SPPF(c4, c4))  # P5
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.top4 = C2f(c4 + c3, c3, 1)
        self.top3 = C2f(c3 + c2, c2, 1)
        self.bot4_down = Conv(c2, c2, 3, 2)
        self.bot4 = C2f(c2 + c3, c3, 1)
        self.bot5_down = Conv(c3, c3, 3, 2)
        self.bot5 = C2f(c3 + c4, c4, 1)
        self.detect = Detect(nc, (c2, c3, c4))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        p3 = self.down2(self.down1(self.stem(x)))
        p4 = self.down3(p3)
        p5 = self.down4(p4)
        t4 = self.top4(torch.cat((self.up(p5), p4), 1))
        n3 = self.top3(torch.cat((self.up(t4), p3), 1))
        n4 = self.bot4(torch.cat((self.bot4_down(n3), t4), 1))
        n5 = self.bot5(torch.cat((self.bot5_down(n4), p5), 1))
        return self.detect([n3, n4, n5])

    def fuse(self) -> Detector:
        """Fold every BatchNorm into its convolution (inference only)."""
        for m in self.modules():
            if isinstance(m, Conv):
                m.fuse()
        return self


def load_onnx_weights(model: Detector, path: str) -> Detector:
    """Load the initializers of an exported (BatchNorm-folded) ONNX model into ``model``.

    The export keeps the PyTorch parameter names (``stem.conv.weight``, ...), so the model
    is folded first and every one of its parameters must be found, with the same shape.
    Returns the folded model, ready to fine-tune without BatchNorm.
    """
    import onnx
    from onnx import numpy_helper

    model.fuse()
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    state = model.state_dict()
    missing = [k for k in state if k not in inits and not k.startswith("detect.dfl.")]
    if missing:
        raise ValueError(
            f"{path}: no initializer for {len(missing)} parameters, e.g. {missing[:3]}"
        )
    for k, v in state.items():
        if k in inits:
            if tuple(inits[k].shape) != tuple(v.shape):
                raise ValueError(
                    f"{path}: {k} is {inits[k].shape}, the model wants {tuple(v.shape)}"
                )
            v.copy_(torch.from_numpy(inits[k].copy()))
    return model
