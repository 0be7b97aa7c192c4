"""Glue layers of the detectors' heads run by steps, not the reference kernels: Slice with
constant bounds (a view of the input, copied) and float32 edge_infer::Pointwise chains
(ufuncs in place). Both compute exactly the reference's numbers (the same index; the same
float32 ufuncs in the same order), so outputs are compared bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import edge_infer
from edge_infer.engine.backends.cpu.program import CpuProgram, ScratchPool
from edge_infer.engine.backends.cpu.steps import STEPS
from edge_infer.engine.ir import Graph, TensorType
from edge_infer.engine.ops.slice_pad import slice_
from edge_infer.engine.reference import execute_graph

SLICES = [  # starts, ends, axes, steps
    ([0], [2], [1], None),  # the demo detector's box split
    ([2], [4], [1], [1]),
    ([-3], [1 << 62], [2], [1]),  # clamped end
    ([5, 0], [-(1 << 62), 3], [2, 0], [-2, 1]),  # backwards, clamped
    ([1, 1], [3, 7], [-1, -2], [2, 1]),
]


def _slice_node(x: np.ndarray, bounds: tuple) -> tuple:
    graph = Graph()
    xv = graph.add_input("x", TensorType(x.shape, x.dtype))
    consts = [None if b is None else graph.add_constant(f"c{k}", np.array(b, np.int64))
              for k, b in enumerate(bounds)]  # fmt: skip
    while consts and consts[-1] is None:
        consts.pop()
    node = graph.add_node("Slice", [xv, *consts], 1, name="slice")
    ins = [x, *[None if c is None else c.const for c in consts]]
    return node, ins


@pytest.mark.parametrize("bounds", SLICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int8])
def test_slice_step_is_the_reference(bounds, dtype) -> None:
    x = (np.arange(2 * 9 * 11) % 100).astype(dtype).reshape(2, 9, 11)
    node, ins = _slice_node(x, bounds)
    want = slice_(x, *[np.array(b, np.int64) if b is not None else None for b in bounds]).copy()
    out = np.zeros(want.shape, dtype)
    run = STEPS["Slice"](node, ins, [out], ScratchPool())
    assert run is not None
    run()
    np.testing.assert_array_equal(out, want)
    x += 1  # the step reads its input at run time, not at bind
    run()
    np.testing.assert_array_equal(out, want + 1)


def test_slice_step_declines_changing_bounds() -> None:
    x = np.ones((2, 4), np.float32)
    graph = Graph()
    xv = graph.add_input("x", TensorType(x.shape, x.dtype))
    sv = graph.add_input("s", TensorType((1,), np.dtype(np.int64)))
    ev = graph.add_constant("e", np.array([3], np.int64))
    node = graph.add_node("Slice", [xv, sv, ev], 1, name="slice")
    out = np.zeros((2, 3), np.float32)
    assert STEPS["Slice"](node, [x, np.array([0]), ev.const], [out], ScratchPool()) is None


def _head() -> bytes:
    """The detectors' box decode tail: a Slice of the distances and (a + b) / 2."""
    n = 37
    nodes = [
        helper.make_node("Slice", ["d", "s0", "s1", "ax"], ["lt"]),
        helper.make_node("Slice", ["d", "s1", "s2", "ax"], ["rb"]),
        helper.make_node("Sub", ["anchors", "lt"], ["x1y1"]),
        helper.make_node("Add", ["anchors", "rb"], ["x2y2"]),
        helper.make_node("Add", ["x1y1", "x2y2"], ["s"]),
        helper.make_node("Div", ["s", "two"], ["c"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(v, np.int64), k)
        for k, v in (("s0", [0]), ("s1", [2]), ("s2", [4]), ("ax", [1]))
    ]
    inits.append(numpy_helper.from_array(np.array(2.0, np.float32), "two"))
    inits.append(
        numpy_helper.from_array(
            np.random.default_rng(1).standard_normal((1, 2, n), dtype=np.float32), "anchors"
        )
    )
    graph = helper.make_graph(
        nodes,
        "head",
        [helper.make_tensor_value_info("d", TensorProto.FLOAT, [1, 4, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_head_engine_runs_slice_and_pointwise_steps(monkeypatch) -> None:
    bound: list[str] = []
    for op in ("Slice", "edge_infer::Pointwise"):
        inner = STEPS[op]

        def factory(node, ins, outs, scratch, inner=inner):
            run = inner(node, ins, outs, scratch)
            if run is not None:
                bound.append(node.op_type)
            return run

        monkeypatch.setitem(STEPS, op, factory)
    engine = edge_infer.build(_head(), tune=False)
    graph = engine.graph(1)
    x = np.random.default_rng(0).standard_normal((1, 4, 37), dtype=np.float32)
    program = CpuProgram(graph)
    state = program.new_state()
    try:
        got = program.run(state, {"d": x})["c"]
    finally:
        state.close()
    ops = {n.op_type for n in graph.nodes}
    assert "Pointwise" in ops and "Pointwise" in bound, (ops, bound)
    assert bound.count("Slice") == sum(n.op_type == "Slice" for n in graph.nodes), bound
    np.testing.assert_array_equal(got, execute_graph(graph, {"d": x})["c"])


def test_pointwise_step_with_an_input_in_the_output_memory() -> None:
    """The memory plan may give a chain's output the buffer of one of its inputs: a step
    that reads that input after an earlier step wrote the output would read its own result
    (LayerNorm's expanded form: 1 - m·m + eps, with the output in the second input's
    buffer). The step must give the reference's numbers — here by declining."""
    from edge_infer.engine.ops.fused import pointwise

    steps = [
        {"op": "Mul", "args": ["$acc", "$acc"], "attrs": {}},
        {"op": "Sub", "args": [1, "$acc"], "attrs": {}},
        {"op": "Add", "args": ["$acc", 2], "attrs": {}},
        {"op": "Sqrt", "args": ["$acc"], "attrs": {}},
    ]
    rng = np.random.default_rng(3)
    m = rng.random((3, 5), dtype=np.float32)
    shared = (rng.random((3, 5), dtype=np.float32) + 2).astype(np.float32)
    eps = np.array(1e-5, np.float32)
    want = pointwise(m, shared.copy(), eps, steps=steps)
    graph = Graph()
    vals = [graph.add_input(k, TensorType(a.shape, a.dtype)) for k, a in (("m", m), ("v", shared))]
    node = graph.add_node(
        "Pointwise", [*vals, graph.add_constant("eps", eps)], 1, domain="edge_infer",
        name="chain", attrs={"steps": steps},
    )  # fmt: skip
    out = shared  # the output in the second input's buffer
    run = STEPS["edge_infer::Pointwise"](node, [m, shared, eps], [out], ScratchPool())
    if run is None:
        return  # declined: the reference kernel runs it (what the step does now)
    run()
    np.testing.assert_array_equal(out, want)
