"""The fused ops' kernels and shape functions (edge_infer domain, version 1)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.ir import Graph, TensorType
from edge_infer.engine.ops import activations, get_registry
from edge_infer.engine.ops.conv import conv
from edge_infer.engine.ops.fused import ACTIVATIONS, fused_conv, pointwise
from edge_infer.engine.reference import execute_graph
from edge_infer.engine.shape_inference import infer_shapes
from edge_infer.errors import ShapeInferenceError
from tests.engine.passes.helpers import rand

GEOMETRY = {
    "group": 1,
    "strides": [1, 1],
    "pads": [1, 1, 1, 1],
    "dilations": [1, 1],
    "kernel_shape": [3, 3],
}


def test_registered_in_the_edge_infer_domain() -> None:
    registry = get_registry()
    for op in ("FusedConv", "Pointwise"):
        assert registry.resolve("edge_infer", op, 1) is not None


@pytest.mark.parametrize("residual", ["none", "pre", "post"])
def test_fused_conv_matches_its_composition(residual: str) -> None:
    x, w, b, z = rand(2, 3, 5, 5), rand(4, 3, 3, 3, seed=1), rand(4, seed=2), rand(2, 4, 5, 5)
    got = fused_conv(
        x,
        w,
        b,
        None if residual == "none" else z,
        **GEOMETRY,
        activation="leaky_relu",
        activation_params=[0.1],
        residual=residual,
    )
    y = conv(x, w, b, pads=[1, 1, 1, 1])
    if residual == "pre":
        y = y + z
    y = activations.leaky_relu(y, alpha=0.1)
    if residual == "post":
        y = y + z
    np.testing.assert_array_equal(got, y)
    assert got.dtype == np.float32


def test_every_activation_runs() -> None:
    x = rand(1, 2, 3, 3)
    params = {"leaky_relu": [0.1], "clip": [0.0, 6.0], "hard_sigmoid": [0.2, 0.5], "elu": [1.0]}
    for name in ACTIVATIONS:
        y = fused_conv(
            x, rand(2, 2, 1, 1), group=1, activation=name, activation_params=params.get(name, [])
        )
        assert y.shape == (1, 2, 3, 3) and y.dtype == np.float32


def _fused_graph(attrs: dict, z_shape: tuple | None = None) -> Graph:
    g = Graph(opsets={"": 17, "edge_infer": 1})
    x = g.add_input("x", TensorType((1, 3, 5, 5), np.float32))
    w = g.add_constant("w", rand(4, 3, 3, 3))
    ins = [x, w, None]
    if z_shape is not None:
        ins.append(g.add_input("z", TensorType(z_shape, np.float32)))
    node = g.add_node("FusedConv", ins, ["y"], {**GEOMETRY, **attrs}, domain="edge_infer")
    g.add_output(node.outputs[0])
    return g


def test_fused_conv_shape_function_and_errors() -> None:
    g = _fused_graph({"activation": "relu", "residual": "pre"}, (1, 4, 5, 5))
    infer_shapes(g, fold=False)
    assert g.value("y").type == TensorType((1, 4, 5, 5), np.float32)
    feeds = {"x": rand(1, 3, 5, 5), "z": rand(1, 4, 5, 5)}
    assert execute_graph(g, feeds)["y"].shape == (1, 4, 5, 5)
    bad = [
        ({"activation": "swish"}, None, "activation 'swish'"),
        ({"activation": "elu"}, None, "takes 1 activation_params"),
        ({"residual": "pre"}, None, "needs input Z"),
        ({"residual": "pre"}, (1, 4, 1, 1), "residual Z must have"),
        ({"residual": "sideways"}, None, "residual must be one of"),
    ]
    for attrs, z_shape, message in bad:
        with pytest.raises(ShapeInferenceError, match=message):
            infer_shapes(_fused_graph(attrs, z_shape), fold=False)


def test_pointwise_kernel_and_shape_function() -> None:
    x, k = rand(2, 3), np.float32(2.0)
    steps = [
        {"op": "Sigmoid", "args": ["$acc"]},
        {"op": "Mul", "args": [0, "$acc"]},
        {"op": "Sub", "args": ["$acc", 1]},
    ]
    np.testing.assert_array_equal(
        pointwise(x, k, steps=steps, opset=17), x * activations.sigmoid(x) - k
    )
    g = Graph(opsets={"": 17, "edge_infer": 1})
    xin = g.add_input("x", TensorType((2, 3), np.float32))
    node = g.add_node(
        "Pointwise",
        [xin, g.add_constant("k", k)],
        ["y"],
        {"steps": steps, "opset": 17},
        domain="edge_infer",
    )
    g.add_output(node.outputs[0])
    infer_shapes(g, fold=False)
    assert g.value("y").type == TensorType((2, 3), np.float32)
    node.attrs["steps"] = [{"op": "Mul", "args": ["$acc", 5]}]
    with pytest.raises(ShapeInferenceError, match="neither"):
        infer_shapes(g, fold=False)
