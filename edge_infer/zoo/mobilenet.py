"""MobileNetV2 (Sandler et al. 2018), torchvision's layout.

Conv3x3/2 + BN + Relu6, inverted residual blocks (1x1 expand + BN + Relu6, 3x3 depthwise
(group = channels) + BN + Relu6, 1x1 linear projection + BN, residual Add when the shape is
kept), a 1x1 conv to 1280, GlobalAveragePool, Flatten, Dropout, Gemm. Relu6 is written as
``Clip(x, min=0, max=6)`` with min/max as inputs (opset >= 11), as PyTorch exports it.
"""

from __future__ import annotations

import onnx

from edge_infer.zoo.layers import Dim, GraphBuilder, check_common_args

#: (expansion t, output channels c, repeats n, first stride s), from the paper's table 2.
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
_RESIDUAL_GAMMA = 0.5


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor``, never more than 10% down (torchvision)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _inverted_residual(b: GraphBuilder, x: str, cin: int, cout: int, stride: int, t: int) -> str:
    hidden = cin * t
    residual = stride == 1 and cin == cout
    y = x
    if t != 1:
        with b.scope("expand"):
            y = b.conv_bn_act(y, cin, hidden, 1, act="relu6", in_act="none")
    with b.scope("dw"):
        # Input is Relu6 either way: the expand conv's, or the stem's when t == 1.
        y = b.conv_bn_act(y, hidden, hidden, 3, stride, group=hidden, act="relu6", in_act="relu6")
    with b.scope("project"):
        gamma = _RESIDUAL_GAMMA if residual else 1.0
        y = b.conv_bn_act(y, hidden, cout, 1, act="none", in_act="relu6", gamma_scale=gamma)
    return b.op1("Add", [x, y]) if residual else y


def build_mobilenetv2(
    seed: int = 0,
    batch: int | None = 1,
    image_size: int = 224,
    num_classes: int = 1000,
    width_mult: float = 1.0,
    opset: int = 17,
) -> onnx.ModelProto:
    """MobileNetV2: ``input`` [batch,3,S,S] -> ``output`` [batch,num_classes] (logits).

    ``batch=None`` makes the batch dim symbolic ("batch"); ``image_size`` must be a
    multiple of 32; ``width_mult`` scales channels as torchvision does.
    """
    check_common_args("mobilenetv2", batch, opset)
    if image_size < 32 or image_size % 32:
        raise ValueError(f"mobilenetv2: image_size must be a multiple of 32, got {image_size}")
    if not 0.1 <= width_mult <= 4.0:
        raise ValueError(f"mobilenetv2: width_mult must be in [0.1, 4], got {width_mult}")
    b = GraphBuilder(seed, opset)
    bdim: Dim = "batch" if batch is None else batch
    cin = make_divisible(32 * width_mult)
    last = make_divisible(1280 * max(1.0, width_mult))
    with b.scope("features.0"):
        x = b.conv_bn_act("input", 3, cin, 3, 2, act="relu6", in_act="none")
    index = 1
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        cout = make_divisible(c * width_mult)
        for i in range(n):
            with b.scope(f"features.{index}"):
                x = _inverted_residual(b, x, cin, cout, s if i == 0 else 1, t)
            cin, index = cout, index + 1
    with b.scope(f"features.{index}"):
        x = b.conv_bn_act(x, cin, last, 1, act="relu6", in_act="none")
    with b.scope("classifier"):
        x = b.op1("GlobalAveragePool", [x])
        x = b.op1("Flatten", [x], axis=1)
        x = b.dropout(x, 0.2)
        x = b.gemm(x, last, num_classes, gain=1.0)
    return b.finish(
        "mobilenetv2",
        [("input", [bdim, 3, image_size, image_size])],
        [("output", x, [bdim, num_classes])],
        doc=f"MobileNetV2 (width {width_mult}), seed={seed}",
    )
