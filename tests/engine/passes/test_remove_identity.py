"""RemoveIdentities: no-op nodes go, their uses read the input, graph outputs keep names."""

from __future__ import annotations

import numpy as np
from onnx import helper

from edge_infer.engine.passes.remove_identity import RemoveIdentities
from tests.engine.passes.helpers import build, check_pass, ops

I64 = np.int64


def test_removes_every_kind_of_noop() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Identity", ["r"], ["i"], name="identity"),
        helper.make_node("Dropout", ["i"], ["d"], name="dropout"),
        helper.make_node("Reshape", ["d", "shape"], ["rs"], name="reshape"),
        helper.make_node("Transpose", ["rs"], ["t"], perm=[0, 1, 2, 3], name="transpose"),
        helper.make_node("Cast", ["t"], ["c"], to=1, name="cast"),
        helper.make_node("Slice", ["c", "starts", "ends"], ["s"], name="slice"),
        helper.make_node("Pad", ["s", "pads"], ["p"], name="pad"),
        helper.make_node("Abs", ["p"], ["y"], name="abs"),
    ]
    inits = {
        "shape": np.array([1, 2, 3, 4], I64),
        "starts": np.array([0], I64),
        "ends": np.array([99], I64),
        "pads": np.zeros(8, I64),
    }
    g = build(nodes, {"x": (1, 2, 3, 4)}, ["y"], inits)
    out = check_pass(g, RemoveIdentities())
    assert ops(out) == ["Relu", "Abs"]
    assert out.node("abs").inputs[0] is out.node("relu").outputs[0]


def test_keeps_nodes_that_do_something() -> None:
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["rs"], name="reshape"),
        helper.make_node("Transpose", ["rs"], ["t"], perm=[1, 0], name="transpose"),
        helper.make_node("Slice", ["t", "starts", "ends", "axes", "steps"], ["s"], name="rev"),
        helper.make_node("Pad", ["s", "pads"], ["p"], name="crop_pad"),
        helper.make_node("Cast", ["p"], ["y"], to=11, name="to_double"),
        helper.make_node("Dropout", ["x"], ["d", "mask"], name="dropout"),
    ]
    inits = {
        "shape": np.array([4, 6], I64),
        "starts": np.array([-1], I64),
        "ends": np.array([-99], I64),
        "axes": np.array([0], I64),
        "steps": np.array([-1], I64),
        "pads": np.array([1, 0, -1, 0], I64),
    }
    g = build(nodes, {"x": (2, 3, 4)}, ["y", "mask"], inits, opset=17)
    check_pass(g, RemoveIdentities(), modified=False)
    assert ops(g) == ["Reshape", "Transpose", "Slice", "Pad", "Cast", "Dropout"]


def test_graph_output_keeps_its_public_name() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Identity", ["r"], ["y"], name="identity"),
        helper.make_node("Identity", ["x"], ["z"], name="passthrough"),
    ]
    g = build(nodes, {"x": (2, 3)}, ["y", "z"])
    out = check_pass(g, RemoveIdentities())
    assert ops(out) == ["Relu"]
    assert out.output_names() == ["y", "z"]
    assert dict(out.outputs)["y"] is out.node("relu").outputs[0]
    assert dict(out.outputs)["z"] is out.inputs[0]
