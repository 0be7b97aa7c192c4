"""CRNN (Shi et al. 2015): the text / licence-plate recognizer that runs behind a detector.

A VGG-style conv stack (Conv + BN + Relu, max pools that halve the height, and the width only
twice) turns a ``[batch, 3, 32, width]`` crop into a ``[batch, C, 1, width/4]`` feature row;
the row is a sequence of ``width/4`` time steps (Squeeze, Transpose to time-major), read by
stacked bidirectional LSTMs, and a linear layer gives per-step class logits ``[width/4, batch,
num_classes]`` — time-major and CTC-ready (class 0 is the CTC blank; decode with
:func:`edge_infer.zoo.ctc.greedy_decode`).

Written as PyTorch 1.x exports ``nn.LSTM`` without an explicit initial state: the zero
``initial_h``/``initial_c`` of ``[2, batch, hidden]`` come from ``Shape → Gather →
Concat → ConstantOfShape``, and the LSTM output ``[T, 2, batch, hidden]`` is brought to
``[T, batch, 2*hidden]`` by ``Transpose → Reshape``. ``width`` may be symbolic (``None``):
the model then takes any width that is a multiple of 4.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from edge_infer.zoo.layers import Dim, GraphBuilder, check_common_args

#: (output channels, pool after it: None, "2x2" (height and width) or "2x1" (height only))
CONV_STACK: tuple[tuple[int, str | None], ...] = (
    (32, "2x2"),
    (64, "2x2"),
    (128, None),
    (128, "2x1"),
    (256, None),
    (256, "2x1"),
)
HEIGHT = 32


def _pool(b: GraphBuilder, x: str, kind: str) -> str:
    if kind == "2x2":
        return b.op1("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    return b.op1("MaxPool", [x], kernel_shape=[2, 1], strides=[2, 1])


def _zero_state(b: GraphBuilder, seq: str, hidden: int) -> str:
    """``zeros([2, batch, hidden])`` with batch read from the time-major sequence at run
    time, as PyTorch 1.x exports an LSTM called without (h0, c0)."""
    batch = b.op1("Gather", [b.op1("Shape", [seq]), b.i64("batch_axis", 1)], axis=0)
    batch = b.unsqueeze(batch, [0])
    shape = b.op1("Concat", [b.i64("directions", [2]), batch, b.i64("hidden", [hidden])], axis=0)
    value = helper.make_tensor("value", TensorProto.FLOAT, [1], [0.0])
    return b.op1("ConstantOfShape", [shape], value=value)


def _bilstm(b: GraphBuilder, seq: str, inputs: int, hidden: int) -> str:
    """One bidirectional LSTM: ``[T, B, inputs]`` → ``[T, B, 2*hidden]``."""
    std = np.sqrt(1.0 / hidden)
    w = b.const("weight_ih", b.normal(np.sqrt(1.0 / inputs), (2, 4 * hidden, inputs)))
    r = b.const("weight_hh", b.normal(std, (2, 4 * hidden, hidden)))
    bias = b.const("bias", b.normal(0.1, (2, 8 * hidden)))
    h0 = _zero_state(b, seq, hidden)
    c0 = _zero_state(b, seq, hidden)
    y, _, _ = b.op(
        "LSTM", [seq, w, r, bias, "", h0, c0], 3, direction="bidirectional", hidden_size=hidden
    )
    y = b.op1("Transpose", [y], perm=[0, 2, 1, 3])
    return b.op1("Reshape", [y, b.i64("shape", [0, 0, -1])])


def build_crnn(
    seed: int = 0,
    batch: int | None = 1,
    width: int | None = None,
    num_classes: int = 37,
    hidden: int = 128,
    lstm_layers: int = 2,
    opset: int = 17,
    fold_bn: bool = True,
) -> onnx.ModelProto:
    """CRNN: ``image`` [batch, 3, 32, width] → ``logits`` [width/4, batch, num_classes].

    ``batch=None`` / ``width=None`` make those dims symbolic ("batch", "width"); a fixed width
    must be a multiple of 4. ``num_classes`` counts the CTC blank (class 0): 37 is 0-9, A-Z
    and the blank. ``fold_bn`` writes each BatchNorm folded into its conv, as
    ``torch.onnx.export`` of an eval-mode model does; ``False`` keeps them as nodes.
    """
    check_common_args("crnn", batch, opset)
    if width is not None and (width < 4 or width % 4):
        raise ValueError(f"crnn: width must be a positive multiple of 4 or None, got {width}")
    if num_classes < 2 or hidden < 1 or lstm_layers < 1:
        raise ValueError(
            f"crnn: need num_classes >= 2, hidden >= 1, lstm_layers >= 1; got "
            f"{num_classes}, {hidden}, {lstm_layers}"
        )
    b = GraphBuilder(seed, opset)
    bdim: Dim = "batch" if batch is None else batch
    wdim: Dim = "width" if width is None else width
    x, cin, in_act = "image", 3, "none"
    for k, (cout, pool) in enumerate(CONV_STACK):
        with b.scope(f"cnn.{k}"):
            x = b.conv_bn_act(x, cin, cout, 3, act="relu", in_act=in_act, fold_bn=fold_bn)
            if pool:
                x = _pool(b, x, pool)
        cin, in_act = cout, "relu"
    with b.scope("cnn.last"):  # the remaining 2 rows → 1: a 2x1 valid conv, as CRNN's last
        w = b.normal(np.sqrt(2.0 / (cin * 2)), (cin, cin, 2, 1))
        x = b.op1(
            "Conv",
            [x, b.const("weight", w)],
            kernel_shape=[2, 1],
            pads=[0, 0, 0, 0],
            strides=[1, 1],
        )
        x = b.activation(x, "relu")
    with b.scope("map_to_seq"):
        x = (
            b.op1("Squeeze", [x], axes=[2])
            if opset < 13
            else b.op1("Squeeze", [x, b.i64("axes", [2])])
        )
        x = b.op1("Transpose", [x], perm=[2, 0, 1])  # [T, B, C]
    features = cin
    for layer in range(lstm_layers):
        with b.scope(f"rnn.{layer}"):
            x = _bilstm(b, x, features, hidden)
        features = 2 * hidden
    with b.scope("fc"):
        w = b.normal(np.sqrt(1.0 / features), (features, num_classes))
        x = b.op1("MatMul", [x, b.const("weight", w)])
        x = b.op1("Add", [x, b.const("bias", b.normal(0.1, (num_classes,)))])
    steps: Dim = "steps" if width is None else width // 4
    return b.finish(
        "crnn",
        [("image", [bdim, 3, HEIGHT, wdim])],
        [("logits", x, [steps, bdim, num_classes])],
        doc=f"CRNN ({lstm_layers} BiLSTM x {hidden}, {num_classes} classes), seed={seed}",
    )
