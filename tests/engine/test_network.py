"""The network definition API builds the same IR as an import; checked against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import edge_infer
from edge_infer.engine.network import Network
from edge_infer.engine.onnx_export import export_onnx
from edge_infer.errors import GraphError


def inception_3a(batch: int | str = 1) -> Network:
    """GoogLeNet's inception (3a) module, as in docs/network-api.md."""
    net = Network("inception_3a", seed=3)
    x = net.add_input("data", (batch, 192, 28, 28))
    b1 = net.add_activation(net.add_convolution(x, 64, 1), "relu")
    b2 = net.add_activation(net.add_convolution(x, 96, 1), "relu")
    b2 = net.add_activation(net.add_convolution(b2, 128, 3, padding=1), "relu")
    b3 = net.add_activation(net.add_convolution(x, 16, 1), "relu")
    b3 = net.add_activation(net.add_convolution(b3, 32, 5, padding=2), "relu")
    b4 = net.add_pooling(x, "max", 3, stride=1, padding=1)
    b4 = net.add_activation(net.add_convolution(b4, 32, 1), "relu")
    net.mark_output(net.add_concatenation([b1, b2, b3, b4], axis=1), "out")
    return net


def test_inception_module_matches_onnxruntime() -> None:
    net = inception_3a(batch="batch")
    model = export_onnx(net.graph)
    engine = edge_infer.build(
        net,
        min_shapes={"data": (1, 192, 28, 28)},
        opt_shapes={"data": (2, 192, 28, 28)},
        max_shapes={"data": (2, 192, 28, 28)},
    )
    x = np.random.default_rng(0).standard_normal((2, 192, 28, 28)).astype(np.float32)
    ours = engine.create_context().execute({"data": x})["out"]
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (ref,) = sess.run(None, {"data": x})
    assert ours.shape == (2, 256, 28, 28)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_layers_cover_the_common_cnn_vocabulary() -> None:
    net = Network("misc", seed=1)
    x = net.add_input("x", (1, 3, 16, 16))
    y = net.add_activation(net.add_convolution(x, 8, 3, padding="same", stride=1), "silu")
    y = net.add_activation(y, "relu6")
    y = net.add_pooling(y, "average", 2)
    y = net.add_resize(y, 2.0)
    z = net.add_elementwise(y, net.add_activation(y, "hard_swish"), "sum")
    g = net.add_global_pooling(z, "max")
    out = net.add_softmax(net.add_fully_connected(g, 5), axis=1)
    net.mark_output(out, "probs")
    engine = edge_infer.build(net)
    x_val = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    probs = engine.create_context().execute({"x": x_val})["probs"]
    sess = ort.InferenceSession(
        export_onnx(net.graph).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    # rtol 1e-4: the tuner may pick winograd_native for the 3x3 conv (see assert_fp32_close)
    np.testing.assert_allclose(probs, sess.run(None, {"x": x_val})[0], rtol=1e-4, atol=1e-6)
    assert probs.shape == (1, 5)


def test_unknown_layer_kinds_are_explained() -> None:
    net = Network()
    x = net.add_input("x", (1, 3, 4, 4))
    with pytest.raises(GraphError, match="unknown activation 'swishy'"):
        net.add_activation(x, "swishy")
    with pytest.raises(GraphError, match="unknown pooling"):
        net.add_pooling(x, "median", 2)
    with pytest.raises(GraphError, match="unknown elementwise"):
        net.add_elementwise(x, x, "xor")
