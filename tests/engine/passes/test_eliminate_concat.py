"""EliminateConcat: the alias annotations of the layout contract, and when they are withheld."""

from __future__ import annotations

import numpy as np
from onnx import helper

from edge_infer.engine.passes.eliminate_concat import EliminateConcat
from tests.engine.passes.helpers import build, check_pass, rand


def _alias(graph, name: str) -> dict | None:
    return graph.value(name).meta.get("alias_of")


def _noop(graph, name: str) -> bool:
    return bool(graph.node(name).meta.get("noop"))


def test_concat_inputs_alias_slices_of_its_output() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="ra"),
        helper.make_node("Conv", ["x", "w"], ["b"], name="conv"),
        helper.make_node("Concat", ["a", "b"], ["c"], axis=-3, name="concat"),
        helper.make_node("Abs", ["c"], ["y"], name="abs"),
        helper.make_node("Neg", ["a"], ["z"], name="other_use_of_a"),
    ]
    g = build(nodes, {"x": (2, 3, 4, 4)}, ["y", "z"], {"w": rand(5, 3, 1, 1)})
    out = check_pass(g, EliminateConcat())
    assert _alias(out, "a") == {"value": "c", "axis": 1, "start": 0, "stop": 3}
    assert _alias(out, "b") == {"value": "c", "axis": 1, "start": 3, "stop": 8}
    assert _noop(out, "concat")
    assert _alias(out, "c") is None


def test_concat_not_eliminated_for_inputs_constants_outputs_or_shared_producers() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="ra"),
        helper.make_node("Concat", ["a", "x"], ["c1"], axis=1, name="with_input"),
        helper.make_node("Concat", ["a", "k"], ["c2"], axis=1, name="with_const"),
        helper.make_node("Neg", ["x"], ["n"], name="neg"),
        helper.make_node("Concat", ["a", "n"], ["c3"], axis=1, name="with_output"),
        helper.make_node("Split", ["x"], ["s0", "s1"], axis=1, name="split"),
        helper.make_node("Concat", ["s1", "s0"], ["c4"], axis=1, name="same_producer"),
        helper.make_node("Concat", ["a", "a"], ["c5"], axis=1, name="twice"),
    ]
    g = build(nodes, {"x": (1, 4, 2)}, ["c1", "c2", "c3", "c4", "c5", "n"],
              {"k": rand(1, 4, 2)}, opset=18)
    check_pass(g, EliminateConcat(), modified=False)  # the Split reads a graph input
    assert [n.name for n in g.nodes if n.meta.get("noop")] == []
    assert all("alias_of" not in v.meta for v in g.values.values())


def test_split_outputs_are_views_and_chains_are_refused() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Split", ["r", "sizes"], ["s0", "s1"], axis=-1, name="split"),
        helper.make_node("Abs", ["s1"], ["t"], name="abs"),
        helper.make_node("Concat", ["s0", "t"], ["y"], axis=2, name="concat"),  # s0: an alias
        helper.make_node("Neg", ["y"], ["z"], name="neg"),
    ]
    g = build(nodes, {"x": (1, 2, 6)}, ["z"], {"sizes": np.array([2, 4], np.int64)})
    out = check_pass(g, EliminateConcat())
    assert _noop(out, "split") and not _noop(out, "concat")
    assert _alias(out, "s0") == {"value": "r", "axis": 2, "start": 0, "stop": 2}
    assert _alias(out, "s1") == {"value": "r", "axis": 2, "start": 2, "stop": 6}
    assert _alias(out, "t") is None


def test_split_of_graph_input_is_kept_and_stale_marks_are_cleared() -> None:
    nodes = [helper.make_node("Split", ["x"], ["s0", "s1"], axis=0, name="split"),
             helper.make_node("Relu", ["s0"], ["y0"], name="r0"),
             helper.make_node("Relu", ["s1"], ["y1"], name="r1")]
    g = build(nodes, {"x": (4, 3)}, ["y0", "y1"], opset=18)
    g.value("y0").meta["alias_of"] = {"value": "x", "axis": 0, "start": 0, "stop": 2}
    g.node("split").meta["noop"] = True
    out = check_pass(g, EliminateConcat())
    assert not _noop(out, "split") and _alias(out, "y0") is None


def test_conflict_goes_to_the_bigger_copy() -> None:
    # Inception-like: a Split of merged 1x1 convs feeds a wider Concat; the Concat wins
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Split", ["r", "sizes"], ["b1", "red"], axis=1, name="split"),
        helper.make_node("Conv", ["red", "w"], ["b2"], name="conv"),
        helper.make_node("Concat", ["b1", "b2"], ["y"], axis=1, name="concat"),
    ]
    inits = {"sizes": np.array([2, 2], np.int64), "w": rand(8, 2, 1, 1)}
    out = check_pass(build(nodes, {"x": (1, 4, 3, 3)}, ["y"], inits), EliminateConcat())
    assert _noop(out, "concat") and not _noop(out, "split")
    assert _alias(out, "b1") == {"value": "y", "axis": 1, "start": 0, "stop": 2}
    assert _alias(out, "red") is None
