"""FuseConvAdd: a residual Add becomes the conv's epilogue ("pre" or "post")."""

from __future__ import annotations

from onnx import helper

from edge_infer.engine.passes import FuseConvActivation, FuseConvAdd, PassManager
from tests.engine.passes.helpers import assert_same_outputs, build, check_pass, ops, rand


def _inits() -> dict:
    return {"w": rand(4, 4, 3, 3, scale=0.3), "b": rand(4, seed=1)}


def _conv(y: str = "c") -> object:
    return helper.make_node("Conv", ["x", "w", "b"], [y], pads=[1, 1, 1, 1], name="conv")


def test_conv_add_relu_is_pre_residual() -> None:
    nodes = [
        _conv(),
        helper.make_node("Add", ["z", "c"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["y"], name="relu"),
    ]
    g = build(nodes, {"x": (1, 4, 5, 5), "z": (1, 4, 5, 5)}, ["y"], _inits())
    reference = g.copy()
    out = check_pass(g, FuseConvAdd())
    node = out.nodes[0]
    assert ops(out) == ["FusedConv", "Relu"]
    assert node.attrs["residual"] == "pre" and node.attrs["activation"] == ""
    assert node.inputs[3] is out.value("z")
    assert node.meta["members"] == ["conv", "add"]
    # the activation after the Add joins on the next round
    final = PassManager([FuseConvActivation(), FuseConvAdd()]).run(out)
    (node,) = final.nodes
    assert node.attrs["activation"] == "relu" and node.attrs["residual"] == "pre"
    assert node.meta["members"] == ["conv", "add", "relu"]
    assert_same_outputs(reference, final)


def test_act_then_add_is_post_residual() -> None:
    nodes = [
        _conv(),
        helper.make_node("Sigmoid", ["c"], ["s"], name="sigmoid"),
        helper.make_node("Mul", ["c", "s"], ["m"], name="mul"),
        helper.make_node("Add", ["m", "x"], ["y"], name="add"),
    ]
    g = build(nodes, {"x": (1, 4, 5, 5)}, ["y"], _inits())
    reference = g.copy()
    out = PassManager([FuseConvActivation(), FuseConvAdd()]).run(g)
    (node,) = out.nodes
    assert node.attrs["activation"] == "silu" and node.attrs["residual"] == "post"
    assert node.inputs[3] is out.inputs[0]
    assert node.meta["members"] == ["conv", "sigmoid", "mul", "add"]
    assert_same_outputs(reference, out)


def test_broadcasting_add_is_not_a_residual() -> None:
    nodes = [_conv(), helper.make_node("Add", ["c", "z"], ["y"], name="add")]
    g = build(nodes, {"x": (1, 4, 5, 5), "z": (1, 4, 1, 1)}, ["y"], _inits())
    check_pass(g, FuseConvAdd(), modified=False)
    assert ops(g) == ["Conv", "Add"]


def test_shared_conv_output_is_not_fused() -> None:
    nodes = [
        _conv(),
        helper.make_node("Add", ["c", "x"], ["y"], name="add"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
    ]
    g = build(nodes, {"x": (1, 4, 5, 5)}, ["y", "r"], _inits())
    check_pass(g, FuseConvAdd(), modified=False)


def test_add_of_two_convs_fuses_one() -> None:
    nodes = [
        _conv("c1"),
        helper.make_node("Conv", ["x", "w"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Add", ["c1", "c2"], ["y"], name="add"),
    ]
    g = build(nodes, {"x": (1, 4, 5, 5)}, ["y"], _inits())
    out = check_pass(g, FuseConvAdd())
    assert sorted(ops(out)) == ["Conv", "FusedConv"]
