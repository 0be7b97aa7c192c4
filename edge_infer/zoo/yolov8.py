"""YOLOv8n (ultralytics 8.x, width 0.25, depth 0.33) as ``export(format="onnx")`` writes it.

The graph follows the ``yolov8.yaml`` layer list (backbone ``model.0``..``model.9``, neck
``model.10``..``model.21``, Detect head ``model.22``) and reproduces the export's op
patterns, which are what an importer and its optimizer have to digest:

- ``Conv`` = Conv2d + BatchNorm + SiLU, SiLU written as ``x * Sigmoid(x)`` (Mul + Sigmoid);
  the BatchNorm is a node by default (``fold_bn=True`` folds it into the conv as ultralytics
  does before exporting);
- ``C2f`` = 1x1 conv, ``Split`` in two halves, ``n`` bottlenecks (two 3x3 convs, residual
  Add in the backbone), Concat of all pieces, 1x1 conv; ``SPPF`` = 1x1 conv, three chained
  MaxPool 5x5/1, Concat, 1x1 conv;
- neck: ``Resize`` (nearest, asymmetric, floor; scales input) x2 upsample + Concat;
- Detect: per level a box branch (3x3, 3x3, 1x1 -> 64) and a class branch (3x3, 3x3, 1x1 ->
  nc), concatenated, reshaped to [b, 4*16+nc, -1] and concatenated over levels, Split into
  box/cls; DFL = Reshape [b,4,16,a] -> Transpose -> Softmax(axis 1) -> Conv 1x1 with weights
  0..15 -> Reshape [b,4,a]; dist2bbox (Sub/Add/Div/Concat) times the stride; Sigmoid scores.

With a dynamic batch (``batch=None``, the ``dynamic=True`` export) every Reshape target is a
shape subgraph (Shape -> Gather -> Unsqueeze -> Concat) and the anchor grid and stride
tensor are computed in the graph from the feature-map shapes (Shape/Gather/Cast/Range/
Add/Reshape/Expand/Unsqueeze/Concat/ConstantOfShape/Transpose), exactly the constant-foldable
subgraphs a builder must fold. With a fixed batch they are initializers, as in a static
export. ``output0`` is [batch, 4 + nc, anchors]: cx, cy, w, h in input pixels, then the
sigmoid class scores.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper

from edge_infer.zoo.layers import Dim, GraphBuilder, act_gain, check_common_args

WIDTH, DEPTH, MAX_CHANNELS = 0.25, 0.33, 1024
STRIDES = (8, 16, 32)
REG_MAX = 16
#: BN gamma scale of the second conv of a residual bottleneck: keeps ``x + f(x)`` O(1).
_SHORTCUT_GAMMA = 0.7


def _ch(c: int) -> int:
    """Channels after the width multiple (ultralytics rounds up to a multiple of 8)."""
    return int(np.ceil(min(c, MAX_CHANNELS) * WIDTH / 8) * 8)


def _n(n: int) -> int:
    return max(round(n * DEPTH), 1)


class _Yolo:
    """Builds the layers; ``dyn`` selects in-graph shape subgraphs over constants."""

    def __init__(self, b: GraphBuilder, batch: int | None, dyn: bool, fold_bn: bool) -> None:
        self.b, self.batch, self.dyn, self.fold_bn = b, batch, dyn, fold_bn

    def conv(
        self,
        x: str,
        c1: int,
        c2: int,
        k: int,
        s: int = 1,
        in_act: str = "silu",
        gamma_scale: float = 1.0,
    ) -> str:
        return self.b.conv_bn_act(
            x,
            c1,
            c2,
            k,
            s,
            act="silu",
            in_act=in_act,
            gamma_scale=gamma_scale,
            fold_bn=self.fold_bn,
        )

    def c2f(self, x: str, c1: int, c2: int, n: int, shortcut: bool) -> str:
        b, c = self.b, c2 // 2
        with b.scope("cv1"):
            y = self.conv(x, c1, 2 * c, 1)
        pieces = b.split(y, [c, c], axis=1)
        last = pieces[-1]
        for i in range(n):
            with b.scope(f"m.{i}"):
                with b.scope("cv1"):
                    t = self.conv(last, c, c, 3)
                with b.scope("cv2"):
                    t = self.conv(t, c, c, 3, gamma_scale=_SHORTCUT_GAMMA if shortcut else 1.0)
                last = b.op1("Add", [last, t]) if shortcut else t
            pieces.append(last)
        y = b.op1("Concat", pieces, axis=1)
        with b.scope("cv2"):
            return self.conv(y, (2 + n) * c, c2, 1)

    def sppf(self, x: str, c1: int, c2: int) -> str:
        b, c_ = self.b, c1 // 2
        with b.scope("cv1"):
            y = [self.conv(x, c1, c_, 1)]
        with b.scope("m"):
            for _ in range(3):
                y.append(
                    b.op1(
                        "MaxPool",
                        [y[-1]],
                        kernel_shape=[5, 5],
                        strides=[1, 1],
                        pads=[2, 2, 2, 2],
                        dilations=[1, 1],
                        ceil_mode=0,
                    )
                )
        y = b.op1("Concat", y, axis=1)
        with b.scope("cv2"):
            return self.conv(y, c_ * 4, c2, 1)

    # -- shape helpers: subgraph when dynamic, constant otherwise ----------------------------

    def dim(self, x: str, axis: int) -> str:
        """``x.shape[axis]`` as a 1-D int64 tensor [d] (Shape -> Gather -> Unsqueeze)."""
        b = self.b
        shape = b.op1("Shape", [x])
        d = b.op1("Gather", [shape, b.i64("indices", axis)], axis=0)
        return b.unsqueeze(d, [0])

    def reshape(self, x: str, dims: list[str | int | None], static: list[int]) -> str:
        """Reshape to ``dims`` (names of [d] tensors, or ints) when dyn, else to ``static``."""
        b = self.b
        if not self.dyn:
            return b.op1("Reshape", [x, b.i64("shape", static)])
        parts = [d if isinstance(d, str) else b.i64("dim", [d]) for d in dims]
        return b.op1("Reshape", [x, b.op1("Concat", parts, axis=0)])

    def anchors(self, feats: list[str], sizes: list[tuple[int, int]]) -> tuple[str, str]:
        """Anchor points [1, 2, A] and strides [1, A] (make_anchors(..., 0.5), transposed)."""
        b = self.b
        if not self.dyn:
            pts, strd = [], []
            for (h, w), s in zip(sizes, STRIDES):
                sy, sx = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
                pts.append(np.stack([sx, sy], -1).reshape(-1, 2))
                strd.append(np.full((h * w, 1), s))
            a = np.concatenate(pts).T[None].astype(np.float32)
            st = np.concatenate(strd).T.astype(np.float32)
            return b.const("anchors", a), b.const("strides", st)
        pts, strd = [], []
        for x, s in zip(feats, STRIDES):
            shape = b.op1("Shape", [x])
            h = b.op1("Gather", [shape, b.i64("indices", 2)], axis=0)
            w = b.op1("Gather", [shape, b.i64("indices", 3)], axis=0)
            axes = []
            for d in (w, h):
                end = b.op1("Cast", [d], to=TensorProto.FLOAT)
                r = b.op1("Range", [b.f32("start", 0.0), end, b.f32("delta", 1.0)])
                axes.append(b.op1("Add", [r, b.f32("offset", 0.5)]))
            sx, sy = axes
            # meshgrid(sy, sx, indexing="ij") as torch exports it: each vector is reshaped to
            # [h, 1] / [1, w] (targets from Shape ops) and expanded to [h, w].
            shy, shx = b.op1("Shape", [sy]), b.op1("Shape", [sx])
            grid = b.op1("Concat", [shy, shx], axis=0)
            one = b.i64("one", [1])
            ty, tx = b.op1("Concat", [shy, one], axis=0), b.op1("Concat", [one, shx], axis=0)
            gy = b.op1("Expand", [b.op1("Reshape", [sy, ty]), grid])
            gx = b.op1("Expand", [b.op1("Reshape", [sx, tx]), grid])
            st = b.op1("Concat", [b.unsqueeze(gx, [-1]), b.unsqueeze(gy, [-1])], axis=-1)
            pts.append(b.op1("Reshape", [st, b.i64("shape", [-1, 2])]))
            hw = b.unsqueeze(b.op1("Mul", [h, w]), [0])
            full_shape = b.op1("Concat", [hw, b.i64("one", [1])], axis=0)
            value = helper.make_tensor("value", TensorProto.FLOAT, [1], [float(s)])
            strd.append(b.op1("ConstantOfShape", [full_shape], value=value))
        a = b.op1("Transpose", [b.op1("Concat", pts, axis=0)], perm=[1, 0])
        st = b.op1("Transpose", [b.op1("Concat", strd, axis=0)], perm=[1, 0])
        return b.unsqueeze(a, [0]), st

    def detect(
        self, feats: list[str], chans: list[int], sizes: list[tuple[int, int]], nc: int
    ) -> str:
        b, no = self.b, nc + 4 * REG_MAX
        c2, c3 = max(16, chans[0] // 4, 4 * REG_MAX), max(chans[0], min(nc, 100))
        outs = []
        for i, (x, c) in enumerate(zip(feats, chans)):
            branches = []
            for name, mid, cout in (("cv2", c2, 4 * REG_MAX), ("cv3", c3, nc)):
                with b.scope(f"{name}.{i}"):
                    with b.scope("0"):
                        y = self.conv(x, c, mid, 3)
                    with b.scope("1"):
                        y = self.conv(y, mid, mid, 3)
                    with b.scope("2"):
                        branches.append(b.conv(y, mid, cout, 1, gain=act_gain("silu")))
            outs.append(b.op1("Concat", branches, axis=1))
        n_anchors = sum(h * w for h, w in sizes)
        batch = self.dim(outs[0], 0) if self.dyn else None
        flat = []
        for o in outs:
            flat.append(self.reshape(o, [batch, no, -1], [self.batch or 0, no, -1]))
        x_cat = b.op1("Concat", flat, axis=2)
        box, cls = b.split(x_cat, [4 * REG_MAX, nc], axis=1)
        with b.scope("dfl"):
            dist = self._dfl(box, n_anchors)
        anchors, strides = self.anchors(outs, sizes)
        lt, rb = b.split(dist, [2, 2], axis=1)
        x1y1 = b.op1("Sub", [anchors, lt])
        x2y2 = b.op1("Add", [anchors, rb])
        c_xy = b.op1("Div", [b.op1("Add", [x1y1, x2y2]), b.f32("two", 2.0)])
        wh = b.op1("Sub", [x2y2, x1y1])
        dbox = b.op1("Mul", [b.op1("Concat", [c_xy, wh], axis=1), strides])
        return b.op1("Concat", [dbox, b.op1("Sigmoid", [cls])], axis=1)

    def _dfl(self, box: str, n_anchors: int) -> str:
        b = self.b
        bs, a = (self.dim(box, 0), self.dim(box, 2)) if self.dyn else (None, None)
        x = self.reshape(box, [bs, 4, REG_MAX, a], [self.batch or 0, 4, REG_MAX, n_anchors])
        x = b.softmax(b.op1("Transpose", [x], perm=[0, 2, 1, 3]), axis=1, rank=4)
        with b.scope("conv"):
            w = np.arange(REG_MAX, dtype=np.float32).reshape(1, REG_MAX, 1, 1)
            x = b.op1(
                "Conv",
                [x, b.const("weight", w)],
                dilations=[1, 1],
                group=1,
                kernel_shape=[1, 1],
                pads=[0, 0, 0, 0],
                strides=[1, 1],
            )
        return self.reshape(x, [bs, 4, a], [self.batch or 0, 4, n_anchors])


def build_yolov8n(
    seed: int = 0,
    batch: int | None = None,
    imgsz: int = 640,
    nc: int = 80,
    opset: int = 17,
    fold_bn: bool = False,
    dynamic_hw: bool = False,
) -> onnx.ModelProto:
    """YOLOv8n: ``images`` [batch,3,H,W] -> ``output0`` [batch, 4+nc, anchors].

    ``batch=None`` (default) is the ``dynamic=True`` export: symbolic "batch" and in-graph
    shape subgraphs; an int gives the static export. ``imgsz`` (multiple of 32) sets H = W
    and anchors = (H/8)^2 + (H/16)^2 + (H/32)^2 (2100 at 320, 8400 at 640); with
    ``dynamic_hw`` H, W and anchors are symbolic too ("height", "width", "anchors").
    """
    check_common_args("yolov8n", batch, opset)
    if imgsz < 32 or imgsz % 32:
        raise ValueError(f"yolov8n: imgsz must be a multiple of 32, got {imgsz}")
    if nc < 1:
        raise ValueError(f"yolov8n: nc must be >= 1, got {nc}")
    b = GraphBuilder(seed, opset)
    yolo = _Yolo(b, batch, batch is None or dynamic_hw, fold_bn)
    c = [_ch(v) for v in (64, 128, 256, 512, 1024)]  # 16, 32, 64, 128, 256 for n
    layers: dict[int, str] = {}

    def run(i: int, fn: Callable[..., str], *args: object) -> str:
        with b.scope(f"model.{i}"):
            layers[i] = fn(*args)
        return layers[i]

    x = run(0, yolo.conv, "images", 3, c[0], 3, 2, "none")
    x = run(1, yolo.conv, x, c[0], c[1], 3, 2)
    x = run(2, yolo.c2f, x, c[1], c[1], _n(3), True)
    x = run(3, yolo.conv, x, c[1], c[2], 3, 2)
    x = run(4, yolo.c2f, x, c[2], c[2], _n(6), True)
    x = run(5, yolo.conv, x, c[2], c[3], 3, 2)
    x = run(6, yolo.c2f, x, c[3], c[3], _n(6), True)
    x = run(7, yolo.conv, x, c[3], c[4], 3, 2)
    x = run(8, yolo.c2f, x, c[4], c[4], _n(3), True)
    x = run(9, yolo.sppf, x, c[4], c[4])
    x = run(10, b.upsample_nearest, x, 2)
    x = run(11, lambda: b.op1("Concat", [layers[10], layers[6]], axis=1))
    x = run(12, yolo.c2f, x, c[4] + c[3], c[3], _n(3), False)
    x = run(13, b.upsample_nearest, x, 2)
    x = run(14, lambda: b.op1("Concat", [layers[13], layers[4]], axis=1))
    p3 = run(15, yolo.c2f, x, c[3] + c[2], c[2], _n(3), False)
    x = run(16, yolo.conv, p3, c[2], c[2], 3, 2)
    x = run(17, lambda: b.op1("Concat", [layers[16], layers[12]], axis=1))
    p4 = run(18, yolo.c2f, x, c[2] + c[3], c[3], _n(3), False)
    x = run(19, yolo.conv, p4, c[3], c[3], 3, 2)
    x = run(20, lambda: b.op1("Concat", [layers[19], layers[9]], axis=1))
    p5 = run(21, yolo.c2f, x, c[3] + c[4], c[4], _n(3), False)
    sizes = [(imgsz // s, imgsz // s) for s in STRIDES]
    y = run(22, yolo.detect, [p3, p4, p5], [c[2], c[3], c[4]], sizes, nc)

    bdim: Dim = "batch" if batch is None else batch
    hw: list[Dim] = ["height", "width"] if dynamic_hw else [imgsz, imgsz]
    anchors: Dim = "anchors" if dynamic_hw else sum(h * w for h, w in sizes)
    return b.finish(
        "main_graph",
        [("images", [bdim, 3, *hw])],
        [("output0", y, [bdim, 4 + nc, anchors])],
        doc=f"YOLOv8n architecture, random weights (seed={seed}), ultralytics export layout",
    )
