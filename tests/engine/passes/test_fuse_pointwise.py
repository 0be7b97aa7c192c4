"""FusePointwise: single-consumer elementwise chains → one Pointwise node."""

from __future__ import annotations

import numpy as np
from onnx import helper

from edge_infer.engine.passes.fuse_pointwise import FusePointwise
from edge_infer.engine.passes.remove_identity import RemoveIdentities
from tests.engine.passes.helpers import assert_same_outputs, build, check_pass, ops, rand

F32 = np.float32


def test_chain_with_constants_becomes_one_node() -> None:
    nodes = [
        helper.make_node("Add", ["k", "x"], ["a"], name="add"),
        helper.make_node("Mul", ["a", "scale"], ["m"], name="mul"),
        helper.make_node("Sigmoid", ["m"], ["s"], name="sigmoid"),
        helper.make_node("Clip", ["s", "lo", ""], ["y"], name="clip"),
    ]
    inits = {"k": F32(0.5), "scale": rand(3, 1, 1), "lo": F32(0.25)}
    out = check_pass(build(nodes, {"x": (2, 3, 4, 4)}, ["y"], inits), FusePointwise())
    (node,) = out.nodes
    assert (node.op_type, node.domain) == ("Pointwise", "edge_infer")
    assert node.meta["members"] == ["add", "mul", "sigmoid", "clip"]
    assert [s["op"] for s in node.attrs["steps"]] == ["Add", "Mul", "Sigmoid", "Clip"]
    assert node.attrs["steps"][0]["args"] == [1, "$acc"]
    assert node.attrs["steps"][1]["args"] == ["$acc", 2]
    assert node.attrs["steps"][3]["args"] == ["$acc", 3, None]
    assert node.attrs["opset"] == 17
    assert [v.name for v in node.inputs] == ["x", "k", "scale", "lo"]
    assert out.opsets["edge_infer"] == 1


def test_silu_after_a_non_conv_uses_the_main_input_twice() -> None:
    nodes = [
        helper.make_node("Add", ["x", "z"], ["a"], name="add"),
        helper.make_node("Sigmoid", ["a"], ["s"], name="sigmoid"),
        helper.make_node("Mul", ["a", "s"], ["y"], name="mul"),
    ]
    out = check_pass(build(nodes, {"x": (1, 8), "z": (1, 8)}, ["y"]), FusePointwise())
    # "a" feeds two nodes, so the chain starts after it: Sigmoid($acc), Mul(input 0, $acc)
    assert ops(out) == ["Add", "Pointwise"]
    steps = out.nodes[1].attrs["steps"]
    assert steps == [
        {"op": "Sigmoid", "args": ["$acc"], "attrs": {}},
        {"op": "Mul", "args": [0, "$acc"], "attrs": {}},
    ]


def test_binary_with_same_shape_tensor() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Sub", ["r", "z"], ["s"], name="sub"),
        helper.make_node("Exp", ["s"], ["e"], name="exp"),
        helper.make_node("Neg", ["e"], ["y"], name="neg"),
    ]
    g = build(nodes, {"x": (2, 5), "z": (2, 5)}, ["y"])
    out = check_pass(g, FusePointwise())
    (node,) = out.nodes
    assert [v.name for v in node.inputs] == ["x", "z"]
    assert len(node.attrs["steps"]) == 4


def test_shared_intermediates_graph_outputs_and_growth_stop_chains() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Exp", ["r"], ["e"], name="exp"),  # r is also a graph output
        helper.make_node("Abs", ["x"], ["a"], name="abs"),
        helper.make_node("Neg", ["a"], ["n"], name="neg"),
        helper.make_node("Sqrt", ["a"], ["q"], name="sqrt"),  # a has two consumers
        helper.make_node("Tanh", ["x"], ["t"], name="tanh"),
        helper.make_node("Add", ["t", "wide"], ["w"], name="grow"),  # broadcast grows
        helper.make_node("Add", ["x", "z"], ["b"], name="bcast"),  # z broadcasts
        helper.make_node("Neg", ["b"], ["bn"], name="neg2"),
    ]
    inits = {"wide": rand(3, 1, 4)}
    g = build(nodes, {"x": (1, 4), "z": (1, 1)}, ["e", "r", "n", "q", "w", "bn"], inits)
    check_pass(g, FusePointwise(), modified=False)


def test_existing_pointwise_nodes_merge_when_a_link_opens() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Mul", ["r", "k"], ["m"], name="mul"),
        helper.make_node("Identity", ["m"], ["i"], name="identity"),
        helper.make_node("Add", ["i", "x"], ["a"], name="add"),
        helper.make_node("Abs", ["a"], ["y"], name="abs"),
    ]
    g = build(nodes, {"x": (2, 3)}, ["y"], {"k": F32(3.0)})
    reference = g.copy()
    g = check_pass(g, FusePointwise())
    assert ops(g) == ["Pointwise", "Identity", "Pointwise"]
    g = RemoveIdentities()(g).graph
    out = check_pass(g, FusePointwise())
    (node,) = out.nodes
    assert node.meta["members"] == ["relu", "mul", "add", "abs"]
    assert [v.name for v in node.inputs] == ["x", "k"]
    assert [s["args"] for s in node.attrs["steps"]] == [
        ["$acc"],
        ["$acc", 1],
        ["$acc", 0],
        ["$acc"],
    ]
    assert_same_outputs(reference, out)
