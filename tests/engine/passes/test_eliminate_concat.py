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
    g = build(
        nodes, {"x": (1, 4, 2)}, ["c1", "c2", "c3", "c4", "c5", "n"], {"k": rand(1, 4, 2)}, opset=18
    )
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
    nodes = [
        helper.make_node("Split", ["x"], ["s0", "s1"], axis=0, name="split"),
        helper.make_node("Relu", ["s0"], ["y0"], name="r0"),
        helper.make_node("Relu", ["s1"], ["y1"], name="r1"),
    ]
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


def _c2f_nodes(pieces: str) -> list:
    """YOLOv8's C2f: a 1x1 conv's output in two halves (Split, or two Slices), the second
    through a bottleneck, all concatenated with the bottleneck's output."""
    if pieces == "split":
        cut = [helper.make_node("Split", ["a", "sizes"], ["h0", "h1"], axis=1, name="cut")]
    else:
        cut = [
            helper.make_node("Slice", ["a", "s0", "e0", "ax"], ["h0"], name="cut0"),
            helper.make_node("Slice", ["a", "e0", "e1", "ax"], ["h1"], name="cut1"),
        ]
    return [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="cv1"),
        *cut,
        helper.make_node("Conv", ["h1", "w2"], ["m"], name="m0", pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["h0", "h1", "m"], ["cat"], axis=1, name="concat"),
        helper.make_node("Conv", ["cat", "w3"], ["y"], name="cv2"),
    ]


C2F_INITS = {
    "w1": rand(8, 3, 1, 1),
    "w2": rand(4, 4, 3, 3),
    "w3": rand(5, 12, 1, 1),
    "sizes": np.array([4, 4], np.int64),
    "s0": np.array([0], np.int64),
    "e0": np.array([4], np.int64),
    "e1": np.array([8], np.int64),
    "ax": np.array([1], np.int64),
}


def test_pieces_of_one_value_stay_in_place_in_the_concat() -> None:
    for pieces in ("split", "slices"):
        g = build(_c2f_nodes(pieces), {"x": (2, 3, 5, 5)}, ["y"], C2F_INITS)
        out = check_pass(g, EliminateConcat())
        assert _alias(out, "a") == {"value": "cat", "axis": 1, "start": 0, "stop": 8}, pieces
        assert _alias(out, "m") == {"value": "cat", "axis": 1, "start": 8, "stop": 12}
        assert _alias(out, "h0") == {"value": "a", "axis": 1, "start": 0, "stop": 4}
        assert _alias(out, "h1") == {"value": "a", "axis": 1, "start": 4, "stop": 8}
        cut = ["cut"] if pieces == "split" else ["cut0", "cut1"]
        assert all(_noop(out, n) for n in [*cut, "concat"])


def test_pieces_that_do_not_cover_their_source_are_not_put_in_place() -> None:
    nodes = [
        helper.make_node("Concat", ["h1", "h0", "m"], ["cat"], axis=1, name="concat")
        if n.name == "concat"
        else n
        for n in _c2f_nodes("slices")
    ]
    g = build(nodes, {"x": (2, 3, 5, 5)}, ["y"], C2F_INITS)
    out = check_pass(g, EliminateConcat())
    assert _alias(out, "a") is None  # out of order: the Slices copy into the Concat
    assert _alias(out, "h1") == {"value": "cat", "axis": 1, "start": 0, "stop": 4}
    assert not _noop(out, "cut0") and _noop(out, "concat")


def test_c2f_in_place_runs_right_in_the_engine() -> None:
    """The layout contract end to end: cv1 writes into the Concat's buffer, the halves are
    views of it, the bottleneck reads one and writes its own slice — matches onnxruntime."""
    import onnxruntime as ort

    import edge_infer
    from tests.engine.passes.helpers import make_model

    x = np.random.default_rng(3).standard_normal((2, 3, 5, 5)).astype(np.float32)
    for pieces in ("split", "slices"):
        model = make_model(_c2f_nodes(pieces), {"x": (2, 3, 5, 5)}, ["y"], C2F_INITS)
        engine = edge_infer.build(model, tune=False)
        graph = engine.graph(2)
        got = engine.create_context().execute({"x": x})["y"]
        want = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        ).run(None, {"x": x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
        cut = "Split" if pieces == "split" else "Slice"
        noops = sorted(n.op_type for n in graph.nodes if n.meta.get("noop"))
        assert noops == sorted(["Concat", cut] + ([cut] if cut == "Slice" else [])), pieces
