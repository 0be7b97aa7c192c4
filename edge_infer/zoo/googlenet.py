"""GoogLeNet (Inception v1, Szegedy et al. 2014) in its Caffe/ONNX-model-zoo form.

Conv+Relu stem with LRN, nine inception modules (3a..5b) with MaxPool between stages,
AveragePool over the last feature map, Dropout, Gemm to 1000 classes and Softmax. There is no
BatchNorm in this network; it is the concat-heavy model of the zoo (horizontal fusion of the
sibling 1x1 convs, concat elimination, concurrent branches).
"""

from __future__ import annotations

import onnx

from edge_infer.zoo.layers import Dim, GraphBuilder, check_common_args

#: (name, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj), as in the paper's table 1.
InceptionSpec = tuple[str, int, int, int, int, int, int]
INCEPTION_V1: tuple[InceptionSpec, ...] = (
    ("3a", 64, 96, 128, 16, 32, 32),
    ("3b", 128, 128, 192, 32, 96, 64),
    ("4a", 192, 96, 208, 16, 48, 64),
    ("4b", 160, 112, 224, 24, 64, 64),
    ("4c", 128, 128, 256, 24, 64, 64),
    ("4d", 112, 144, 288, 32, 64, 64),
    ("4e", 256, 160, 320, 32, 128, 128),
    ("5a", 256, 160, 320, 32, 128, 128),
    ("5b", 384, 192, 384, 48, 128, 128),
)
#: Stride-2 MaxPool after these modules.
_POOL_AFTER = {"3b", "4e"}


def _conv_relu(b: GraphBuilder, x: str, cin: int, cout: int, k: int, stride: int = 1) -> str:
    y = b.conv(x, cin, cout, k, stride, gain=2.0)
    return b.op1("Relu", [y])


def _lrn(b: GraphBuilder, x: str) -> str:
    return b.op1("LRN", [x], size=5, alpha=1e-4, beta=0.75, bias=1.0)


def _maxpool_s2(b: GraphBuilder, x: str) -> str:
    # Caffe's ceil-mode 3x3/2 pooling, written (as the ONNX model zoo does) as end padding.
    return b.op1("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1])


def inception(b: GraphBuilder, x: str, cin: int, spec: InceptionSpec) -> str:
    """One inception module: four branches concatenated along channels."""
    name, c1, r3, c3, r5, c5, pp = spec
    with b.scope(f"inception_{name}"):
        with b.scope("1x1"):
            y1 = _conv_relu(b, x, cin, c1, 1)
        with b.scope("3x3"):
            y3 = _conv_relu(b, _conv_relu(b, x, cin, r3, 1), r3, c3, 3)
        with b.scope("5x5"):
            y5 = _conv_relu(b, _conv_relu(b, x, cin, r5, 1), r5, c5, 5)
        with b.scope("pool_proj"):
            p = b.op1("MaxPool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
            yp = _conv_relu(b, p, cin, pp, 1)
        return b.op1("Concat", [y1, y3, y5, yp], axis=1)


def module_channels(spec: InceptionSpec) -> int:
    """Output channels of an inception module."""
    return spec[1] + spec[3] + spec[5] + spec[6]


def build_googlenet(
    seed: int = 0,
    batch: int | None = 1,
    image_size: int = 224,
    num_classes: int = 1000,
    opset: int = 17,
) -> onnx.ModelProto:
    """GoogLeNet / Inception v1: ``input`` [batch,3,S,S] -> ``output`` [batch,num_classes].

    ``output`` holds Softmax probabilities. ``batch=None`` makes the batch dim symbolic
    ("batch"). ``image_size`` must be a multiple of 32 (224 is the classic size).
    """
    check_common_args("googlenet", batch, opset)
    if image_size < 64 or image_size % 32:
        raise ValueError(f"googlenet: image_size must be a multiple of 32 >= 64, got {image_size}")
    b = GraphBuilder(seed, opset)
    bdim: Dim = "batch" if batch is None else batch
    x = "input"
    with b.scope("conv1"):
        x = _maxpool_s2(b, _conv_relu(b, x, 3, 64, 7, 2))
        x = _lrn(b, x)
    with b.scope("conv2"):
        x = _conv_relu(b, x, 64, 64, 1)
        x = _lrn(b, _conv_relu(b, x, 64, 192, 3))
        x = _maxpool_s2(b, x)
    size = image_size // 8  # stem: stride-2 conv and two stride-2 pools
    cin = 192
    for spec in INCEPTION_V1:
        x = inception(b, x, cin, spec)
        cin = module_channels(spec)
        if spec[0] in _POOL_AFTER:
            with b.scope(f"pool_{spec[0]}"):
                x = _maxpool_s2(b, x)
            size //= 2
    with b.scope("classifier"):
        x = b.op1("AveragePool", [x], kernel_shape=[size, size], strides=[1, 1])
        x = b.dropout(x, 0.4)
        x = b.op1("Flatten", [x], axis=1)
        # Pooled ReLU features have a second moment of ~16: this gain keeps logits ~N(0, 1.5).
        x = b.gemm(x, cin, num_classes, gain=0.15)
        x = b.softmax(x, axis=1, rank=2)
    return b.finish(
        "googlenet",
        [("input", [bdim, 3, image_size, image_size])],
        [("output", x, [bdim, num_classes])],
        doc=f"GoogLeNet (inception v1), seed={seed}",
    )


def build_inception_module(
    seed: int = 0,
    batch: int | None = 1,
    size: int = 28,
    opset: int = 17,
) -> onnx.ModelProto:
    """Inception module 3a alone: ``input`` [batch,192,s,s] -> ``output`` [batch,256,s,s].

    A tiny model for tests of branch-level optimizations (sibling 1x1 convs, concat).
    """
    check_common_args("inception_3a", batch, opset)
    if size < 1:
        raise ValueError(f"inception_3a: size must be >= 1, got {size}")
    b = GraphBuilder(seed, opset)
    bdim: Dim = "batch" if batch is None else batch
    y = inception(b, "input", 192, INCEPTION_V1[0])
    return b.finish(
        "inception_3a",
        [("input", [bdim, 192, size, size])],
        [("output", y, [bdim, module_channels(INCEPTION_V1[0]), size, size])],
        doc=f"GoogLeNet inception module 3a, seed={seed}",
    )
