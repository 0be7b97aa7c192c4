"""The CPU recurrent tactics (``recurrent_native`` for LSTMs with the default activations,
``recurrent_gemm`` for every LSTM/GRU/RNN): chosen by timing and equal to the reference kernel
in every form (their no-allocation promise is tested in tests/engine/test_memory.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import edge_infer
from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS
from edge_infer.engine.onnx_import import import_model
from edge_infer.engine.reference import run_onnx
from edge_infer.engine.shape_inference import bind_input_shapes, infer_shapes
from edge_infer.engine.tactics import candidates
from tests.engine.ops.harness import make_node_model
from tests.engine.ops.test_recurrent import OUTPUTS, layer_inputs

#: the tactic computes what the reference computes, in another order only for the biases
FP32 = 1e-5


def _engine_case(op: str, inputs: list, attrs: dict) -> tuple[onnx.ModelProto, dict]:
    model, feeds = make_node_model(
        op, inputs, attrs, num_outputs=OUTPUTS[op], opset=14, const_inputs=[1, 2, 3, 4, 7]
    )
    return model, feeds


def _tactics(engine: object, batch: int) -> list[str | None]:
    return [n.meta.get("tactic") for n in engine.graph(batch).nodes]  # type: ignore[attr-defined]


CASES = [
    ("LSTM", {"directions": 2, "peepholes": True, "initial": True}, {"direction": "bidirectional"}),
    ("LSTM", {"lens": [5, 2, 4], "layout": 1}, {"layout": 1, "clip": 1.5}),
    ("LSTM", {"directions": 1}, {"direction": "reverse", "input_forget": 1}),
    ("GRU", {"directions": 2, "initial": True}, {"direction": "bidirectional"}),
    ("GRU", {"lens": [1, 5, 0]}, {"linear_before_reset": 1}),
    ("RNN", {"directions": 2}, {"direction": "bidirectional", "activations": ["Relu", "Tanh"]}),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_tactic_is_chosen_and_matches_the_reference(case: int) -> None:
    op, make, attrs = CASES[case]
    inputs = layer_inputs(op, seed=case, **make)
    model, feeds = _engine_case(op, inputs, {"hidden_size": 6, **attrs})
    engine = edge_infer.build(model, shapes={k: v.shape for k, v in feeds.items()}, tune=True)
    allowed = {"recurrent_gemm", "recurrent_native"} if op == "LSTM" else {"recurrent_gemm"}
    (chosen,) = _tactics(engine, engine.profile.opt_batch)
    assert chosen in allowed
    ctx = engine.create_context()
    want = run_onnx(model, feeds)
    for _ in range(2):  # the state of one run must not leak into the next
        got = ctx.execute(feeds)
        for k, expected in enumerate(want):
            np.testing.assert_allclose(
                got[f"y{k}"],
                expected,
                rtol=FP32,
                atol=FP32 * max(1.0, float(np.abs(expected).max())),
            )


def test_runtime_sequence_lens_keeps_the_reference_kernel() -> None:
    """sequence_lens fed at run time: no tactic (the reference kernel validates the lengths
    on every call), and the engine still matches the reference."""
    model, feeds = make_node_model(
        "RNN",
        layer_inputs("RNN", lens=[5, 3, 1], seed=9),
        {"hidden_size": 6},
        num_outputs=2,
        const_inputs=[1, 2, 3],
    )
    graph = import_model(model)
    bind_input_shapes(graph, {k: v.shape for k, v in feeds.items()})
    infer_shapes(graph)
    (node,) = graph.nodes
    assert candidates(node, CPU_TACTICS) == ([], None)
    engine = edge_infer.build(model, shapes={k: v.shape for k, v in feeds.items()})
    got = engine.create_context().execute(feeds)
    for k, expected in enumerate(run_onnx(model, feeds)):
        np.testing.assert_allclose(got[f"y{k}"], expected, rtol=FP32, atol=FP32)
