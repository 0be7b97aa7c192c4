"""SplitDetectHead: a YOLO-style head's concat–split cancelled and its DFL decoded per scale."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from edge_infer.engine.builder import build as build_engine
from edge_infer.engine.memory import plan_memory
from edge_infer.engine.options import BuildOptions
from edge_infer.engine.passes import PassManager, default_passes
from edge_infer.engine.passes.split_detect_head import SplitDetectHead
from edge_infer.engine.reference import run_onnx
from tests.engine.passes.helpers import build, check_pass, make_model, rand

BINS, CLASSES = 4, 3


def _head(
    batch: int = 1,
    *,
    perm: tuple[int, ...] = (0, 2, 1, 3),
    softmax_axis: int = 1,
    dfl_out: int = 1,
    opset: int = 17,
):
    """Two scales (4×4, 2×2) of box (4·BINS) and class (CLASSES) logits, concatenated,
    split, decoded by a DFL chain (as YOLOv8 exports it) and a sigmoid."""
    c = 4 * BINS + CLASSES
    nodes, inits = [], {}
    for i in range(2):
        inits |= {f"wb{i}": rand(4 * BINS, 5, 1, 1, seed=i), f"wc{i}": rand(CLASSES, 5, 1, 1)}
        inits[f"shape{i}"] = np.array([batch, c, -1], np.int64)
        nodes += [
            helper.make_node("Conv", [f"x{i}", f"wb{i}"], [f"box{i}"], name=f"box{i}"),
            helper.make_node("Conv", [f"x{i}", f"wc{i}"], [f"cls{i}"], name=f"cls{i}"),
            helper.make_node("Concat", [f"box{i}", f"cls{i}"], [f"p{i}"], axis=1, name=f"p{i}"),
            helper.make_node("Reshape", [f"p{i}", f"shape{i}"], [f"r{i}"], name=f"r{i}"),
        ]
    anchors = 4 * 4 + 2 * 2
    inits |= {
        "sizes": np.array([4 * BINS, CLASSES], np.int64),
        "dfl_shape": np.array([batch, 4, BINS, anchors], np.int64),
        "dfl_w": np.arange(dfl_out * BINS, dtype=np.float32).reshape(dfl_out, BINS, 1, 1),
        "out_shape": np.array([batch, 4 * dfl_out, anchors], np.int64),
    }
    nodes += [
        helper.make_node("Concat", ["r0", "r1"], ["all"], axis=2, name="all"),
        helper.make_node("Split", ["all", "sizes"], ["boxes", "scores"], axis=1, name="split"),
        helper.make_node("Reshape", ["boxes", "dfl_shape"], ["d4"], name="dfl_reshape"),
        helper.make_node("Transpose", ["d4"], ["dt"], perm=list(perm), name="dfl_transpose"),
        helper.make_node("Softmax", ["dt"], ["ds"], axis=softmax_axis, name="dfl_softmax"),
        helper.make_node("Conv", ["ds", "dfl_w"], ["dc"], name="dfl_conv"),
        helper.make_node("Reshape", ["dc", "out_shape"], ["dist"], name="dfl_out"),
        helper.make_node("Sigmoid", ["scores"], ["prob"], name="sigmoid"),
    ]
    inputs = {"x0": (batch, 5, 4, 4), "x1": (batch, 5, 2, 2)}
    return nodes, inputs, ["dist", "prob"], inits, opset


def _ops(graph) -> list[str]:
    return [n.op_type for n in graph.nodes]


@pytest.mark.parametrize("batch", [1, 2])
def test_head_is_decoded_per_scale_with_the_same_numbers(batch: int) -> None:
    nodes, inputs, outputs, inits, opset = _head(batch)
    out = check_pass(build(nodes, inputs, outputs, inits, opset), SplitDetectHead())
    ops = _ops(out)
    assert "Transpose" not in ops and "Split" not in ops
    assert ops.count("Softmax") == 2 and ops.count("Conv") == 2 + 2 + 2  # heads, DFL per scale
    for node in out.nodes:
        if node.op_type == "Softmax":  # over the bins, where they lie: (4N, bins, 1, HW)
            assert node.inputs[0].shape[:3] == (4 * batch, BINS, 1)
            assert node.meta["members"] == ["dfl_softmax"]
    decoders = [n for n in out.nodes if n.meta.get("members") == ["dfl_conv"]]
    assert [n.op_type for n in decoders] == ["Conv", "Conv"]  # overrides by name find them
    # no anchor-wide logits: the widest box tensor is one scale's conv output
    widest = max(v.type.nbytes for v in out.values.values() if v.const is None)
    assert widest == batch * 4 * BINS * 16 * 4


@pytest.mark.parametrize(
    "change",
    [{"perm": (0, 1, 2, 3)}, {"softmax_axis": 2}, {"dfl_out": 2}, {"opset": 12}],
    ids=["other-perm", "other-softmax-axis", "two-output-channels", "legacy-softmax"],
)
def test_other_chains_keep_their_dfl(change: dict) -> None:
    nodes, inputs, outputs, inits, opset = _head(**change)
    out = check_pass(build(nodes, inputs, outputs, inits, opset), SplitDetectHead())
    assert "Split" not in _ops(out)  # the concat–split still cancels: pure data movement
    assert _ops(out).count("Softmax") == 1  # the DFL chain is left as it is


def test_split_sizes_not_matching_the_pieces_are_left_alone() -> None:
    nodes, inputs, outputs, inits, opset = _head()
    inits["sizes"] = np.array([4 * BINS - 1, CLASSES + 1], np.int64)
    inits["dfl_shape"] = np.array([1, 3, 5, 20], np.int64)
    inits["dfl_w"] = np.arange(5, dtype=np.float32).reshape(1, 5, 1, 1)
    inits["out_shape"] = np.array([1, 3, 20], np.int64)
    check_pass(build(nodes, inputs, outputs, inits, opset), SplitDetectHead(), modified=False)


def test_engine_matches_the_reference_and_the_plan_shrinks() -> None:
    nodes, inputs, outputs, inits, opset = _head(batch=2)
    model = make_model(nodes, inputs, outputs, inits, opset)
    rng = np.random.default_rng(3)
    feeds = {k: rng.standard_normal(s).astype(np.float32) for k, s in inputs.items()}
    engine = build_engine(model, options=BuildOptions(shapes=inputs, tune=False))
    got = engine.create_context().execute(feeds)
    for name, want in zip(outputs, run_onnx(model, feeds), strict=True):
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-5)
    passes = [p for p in default_passes() if not isinstance(p, SplitDetectHead)]
    without = PassManager(passes).run(build(nodes, inputs, outputs, inits, opset))
    with_ = PassManager(default_passes()).run(build(nodes, inputs, outputs, inits, opset))
    assert plan_memory(with_).arena_bytes < plan_memory(without).arena_bytes
