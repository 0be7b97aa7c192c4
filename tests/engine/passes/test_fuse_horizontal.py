"""FuseHorizontal: sibling convs on one input → one wide FusedConv + Split."""

from __future__ import annotations

import numpy as np
from onnx import helper

from edge_infer.engine.passes import FuseConvActivation, FuseHorizontal, PassManager
from tests.engine.passes.helpers import assert_same_outputs, build, check_pass, ops, rand


def _conv(name: str, w: str, b: str | None = None, **attrs: object) -> object:
    ins = ["x", w] + ([b] if b else [])
    return helper.make_node("Conv", ins, [name + "_out"], name=name, **attrs)


def test_siblings_merge_into_one_conv_and_a_split() -> None:
    nodes = [
        _conv("a", "wa", "ba"),
        _conv("b", "wb"),
        _conv("c", "wc", "bc", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a_out"], ["ya"], name="ra"),
        helper.make_node("Relu", ["b_out"], ["yb"], name="rb"),
    ]
    inits = {
        "wa": rand(4, 3, 1, 1),
        "ba": rand(4, seed=2),
        "wb": rand(6, 3, 1, 1, seed=3),
        "wc": rand(5, 3, 3, 3, seed=4),
        "bc": rand(5, seed=5),
    }
    g = build(nodes, {"x": (2, 3, 5, 5)}, ["ya", "yb", "c_out"], inits, opset=13)
    out = check_pass(g, FuseHorizontal())
    assert sorted(ops(out)) == ["Conv", "FusedConv", "Relu", "Relu", "Split"]
    wide = next(n for n in out.nodes if n.op_type == "FusedConv")
    assert wide.meta["members"] == ["a", "b"]
    assert wide.inputs[1].shape == (10, 3, 1, 1)
    np.testing.assert_array_equal(wide.inputs[2].const[4:], 0)
    split = next(n for n in out.nodes if n.op_type == "Split")
    assert split.inputs[0] is wide.outputs[0] and split.attrs["axis"] == 1
    assert list(split.inputs[1].const) == [4, 6]
    assert [v.name for v in split.outputs] == ["a_out", "b_out"]


def test_fused_siblings_with_same_activation_merge() -> None:
    nodes = [
        _conv("a", "wa", pads=[1, 1, 1, 1]),
        _conv("b", "wb", pads=[1, 1, 1, 1]),
        _conv("c", "wb", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a_out"], ["ya"], name="ra"),
        helper.make_node("Relu", ["b_out"], ["yb"], name="rb"),
        helper.make_node("Sigmoid", ["c_out"], ["yc"], name="sc"),
    ]
    inits = {"wa": rand(4, 3, 3, 3), "wb": rand(2, 3, 3, 3, seed=3)}
    g = build(nodes, {"x": (1, 3, 6, 6)}, ["ya", "yb", "yc"], inits, opset=11)
    reference = g.copy()
    g = PassManager([FuseConvActivation()]).run(g)
    out = check_pass(g, FuseHorizontal())
    assert sorted(ops(out)) == ["FusedConv", "FusedConv", "Split"]
    wide = out.node("a_merged")
    assert wide.attrs["activation"] == "relu" and wide.meta["members"] == ["a", "ra", "b", "rb"]
    assert next(n for n in out.nodes if n.op_type == "Split").attrs["split"] == [4, 2]
    assert_same_outputs(reference, out)


def test_different_geometry_or_groups_do_not_merge() -> None:
    nodes = [
        _conv("a", "wa"),
        _conv("b", "wa", strides=[2, 2]),
        _conv("g1", "wg", group=3),
        _conv("g2", "wg", group=3),
    ]
    inits = {"wa": rand(4, 3, 1, 1), "wg": rand(3, 1, 1, 1)}
    g = build(nodes, {"x": (1, 3, 4, 4)}, ["a_out", "b_out", "g1_out", "g2_out"], inits)
    check_pass(g, FuseHorizontal(), modified=False)
