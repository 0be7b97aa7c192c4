"""FuseConvActivation: Conv + activation → FusedConv, for every supported activation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import helper

from edge_infer.engine.passes.fuse_conv_act import FuseConvActivation
from tests.engine.passes.helpers import build, check_pass, ops, rand

F32 = np.float32


def _conv(x: str = "x", y: str = "c", **attrs: object) -> object:
    return helper.make_node("Conv", [x, "w", "b"], [y], name="conv", **attrs)


def _graph(act_nodes: list, opset: int = 17, extra: dict | None = None, outputs=("y",)):
    nodes = [_conv(pads=[1, 1, 1, 1]), *act_nodes]
    inits = {"w": rand(4, 3, 3, 3, scale=0.5), "b": rand(4, seed=1), **(extra or {})}
    return build(nodes, {"x": (2, 3, 6, 6)}, list(outputs), inits, opset)


def _act(op: str, **attrs: object) -> list:
    return [helper.make_node(op, ["c"], ["y"], name="act", **attrs)]


CASES = [
    ("relu", _act("Relu"), 17, {}, []),
    ("leaky_relu", _act("LeakyRelu", alpha=0.2), 17, {}, [float(F32(0.2))]),
    (
        "clip",
        [helper.make_node("Clip", ["c", "lo", "hi"], ["y"], name="act")],
        17,
        {"lo": F32(0.0), "hi": F32(6.0)},
        [0.0, 6.0],
    ),
    ("clip", _act("Clip", min=-1.0, max=1.0), 10, {}, [-1.0, 1.0]),
    ("sigmoid", _act("Sigmoid"), 17, {}, []),
    ("hard_swish", _act("HardSwish"), 17, {}, []),
    (
        "hard_sigmoid",
        _act("HardSigmoid", alpha=0.3, beta=0.4),
        17,
        {},
        [float(F32(0.3)), float(F32(0.4))],
    ),
    ("mish", _act("Mish"), 18, {}, []),
    ("gelu", _act("Gelu"), 20, {}, []),
    ("gelu", _act("Gelu", approximate="tanh"), 20, {}, [1.0]),
    ("tanh", _act("Tanh"), 17, {}, []),
    ("elu", _act("Elu", alpha=0.5), 17, {}, [0.5]),
]


@pytest.mark.parametrize(("activation", "act_nodes", "opset", "extra", "params"), CASES)
def test_single_node_activations(activation, act_nodes, opset, extra, params) -> None:
    out = check_pass(_graph(act_nodes, opset, extra), FuseConvActivation())
    (node,) = out.nodes
    assert (node.op_type, node.domain) == ("FusedConv", "edge_infer")
    assert node.attrs["activation"] == activation
    assert node.attrs["activation_params"] == pytest.approx(params)
    assert node.attrs["residual"] == "none"
    assert node.meta["members"] == ["conv", "act"]
    assert out.opsets["edge_infer"] == 1
    assert out.output_names() == ["y"]


def test_silu_as_mul_of_sigmoid() -> None:
    acts = [
        helper.make_node("Sigmoid", ["c"], ["s"], name="sigmoid"),
        helper.make_node("Mul", ["c", "s"], ["y"], name="mul"),
    ]
    out = check_pass(_graph(acts), FuseConvActivation())
    (node,) = out.nodes
    assert node.attrs["activation"] == "silu"
    assert node.meta["members"] == ["conv", "sigmoid", "mul"]
    assert node.attrs["pads"] == [1, 1, 1, 1] and node.attrs["kernel_shape"] == [3, 3]
    assert node.attrs["strides"] == [1, 1] and node.attrs["dilations"] == [1, 1]
    assert node.attrs["group"] == 1


def test_gelu_erf_form() -> None:
    acts = [
        helper.make_node("Div", ["c", "sqrt2"], ["d"], name="div"),
        helper.make_node("Erf", ["d"], ["e"], name="erf"),
        helper.make_node("Add", ["e", "one"], ["a"], name="add"),
        helper.make_node("Mul", ["c", "a"], ["m"], name="mul"),
        helper.make_node("Mul", ["m", "half"], ["y"], name="half"),
    ]
    extra = {"sqrt2": F32(math.sqrt(2)), "one": F32(1), "half": F32(0.5)}
    out = check_pass(_graph(acts, extra=extra), FuseConvActivation())
    (node,) = out.nodes
    assert node.attrs["activation"] == "gelu" and node.attrs["activation_params"] == []
    assert node.meta["members"] == ["conv", "div", "erf", "add", "mul", "half"]


def test_auto_pad_is_resolved_to_explicit_pads() -> None:
    nodes = [
        helper.make_node(
            "Conv", ["x", "w"], ["c"], auto_pad="SAME_UPPER", strides=[2, 2], name="conv"
        ),
        helper.make_node("Relu", ["c"], ["y"], name="act"),
    ]
    g = build(nodes, {"x": (1, 3, 7, 7)}, ["y"], {"w": rand(4, 3, 4, 4)})
    (node,) = check_pass(g, FuseConvActivation()).nodes
    assert "auto_pad" not in node.attrs
    assert node.attrs["pads"] == [1, 1, 2, 2]
    assert len(node.inputs) == 2


def test_not_fused_when_conv_output_is_shared() -> None:
    acts = [
        helper.make_node("Relu", ["c"], ["y"], name="act"),
        helper.make_node("Abs", ["c"], ["z"], name="abs"),
    ]
    g = _graph(acts, outputs=("y", "z"))
    check_pass(g, FuseConvActivation(), modified=False)
    assert ops(g) == ["Conv", "Relu", "Abs"]


def test_not_fused_when_conv_output_is_a_graph_output() -> None:
    g = _graph(_act("Relu"), outputs=("y", "c"))
    check_pass(g, FuseConvActivation(), modified=False)


def test_silu_not_fused_when_sigmoid_is_shared() -> None:
    acts = [
        helper.make_node("Sigmoid", ["c"], ["s"], name="sigmoid"),
        helper.make_node("Mul", ["c", "s"], ["y"], name="mul"),
    ]
    g = _graph(acts, outputs=("y", "s"))
    check_pass(g, FuseConvActivation(), modified=False)
    assert ops(g) == ["Conv", "Sigmoid", "Mul"]


def test_clip_with_runtime_bound_is_not_fused() -> None:
    nodes = [_conv(), helper.make_node("Clip", ["c", "lo"], ["y"], name="act")]
    inits = {"w": rand(4, 3, 3, 3), "b": rand(4, seed=1)}
    g = build(nodes, {"x": (1, 3, 5, 5), "lo": ()}, ["y"], inits)
    check_pass(g, FuseConvActivation(), modified=False)
