"""LSTM, GRU and RNN against onnxruntime and the ONNX reference evaluator.

The reference evaluator ignores ``sequence_lens``, ``clip``, ``input_forget`` and the
activation lists (its kernels hard-code the defaults), so cases that use them are checked
against onnxruntime alone; every other case against both. Random weights and shapes, seeded.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.ops.recurrent import VERSIONS, gru, lstm, rnn
from edge_infer.engine.ops.recurrent_activations import parse_activations
from edge_infer.errors import EdgeInferError, ShapeInferenceError
from tests.engine.ops.harness import (
    assert_close,
    check_op,
    make_node_model,
    run_onnxruntime,
)

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
OUTPUTS = {"LSTM": 3, "GRU": 2, "RNN": 2}
ORT_ONLY = ("onnxruntime",)


def layer_inputs(
    op: str,
    *,
    steps: int = 5,
    batch: int = 3,
    inputs: int = 4,
    hidden: int = 6,
    directions: int = 1,
    layout: int = 0,
    seed: int = 0,
    bias: bool = True,
    lens: list[int] | None = None,
    initial: bool = False,
    peepholes: bool = False,
    dtype: str = "float32",
) -> list[np.ndarray | None]:
    """X, W, R, [B, sequence_lens, initial_h, (initial_c, P)] with well-scaled values."""
    rng = np.random.default_rng(seed)
    g = GATES[op]

    def rand(*shape: int, scale: float = 1.0) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(dtype)

    x_shape = (steps, batch, inputs) if layout == 0 else (batch, steps, inputs)
    state = (directions, batch, hidden) if layout == 0 else (batch, directions, hidden)
    values: list[np.ndarray | None] = [
        rand(*x_shape),
        rand(directions, g * hidden, inputs, scale=0.5),
        rand(directions, g * hidden, hidden, scale=0.5),
        rand(directions, 2 * g * hidden, scale=0.3) if bias else None,
        None if lens is None else np.array(lens, np.int32),
        rand(*state, scale=0.5) if initial else None,
    ]
    if op == "LSTM":
        values.append(rand(*state, scale=0.5) if initial else None)
        values.append(rand(directions, 3 * hidden, scale=0.5) if peepholes else None)
    while values[-1] is None:
        values.pop()
    return values


DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}


def check_recurrent(
    op: str,
    inputs: list[np.ndarray | None],
    attrs: dict,
    *,
    opset: int = 14,
    oracles: tuple[str, ...] = ("onnxruntime", "reference"),
) -> None:
    """check_op, except that onnxruntime refuses ``layout=1`` (batch-major): such a case is
    checked against onnxruntime by running the time-major twin there (X and the initial
    states transposed in, the outputs transposed back)."""
    layout = attrs.get("layout", 0)
    n = OUTPUTS[op]
    if layout == 0:
        check_op(op, inputs, attrs, num_outputs=n, opset=opset, oracles=oracles)
        return
    rest = tuple(o for o in oracles if o != "onnxruntime")
    ours = check_op(op, inputs, attrs, num_outputs=n, opset=opset, oracles=rest)
    if "onnxruntime" not in oracles:
        return
    twin = list(inputs)
    twin[0] = np.ascontiguousarray(np.swapaxes(twin[0], 0, 1))  # type: ignore[arg-type]
    for k in (5, 6):  # initial_h, initial_c: [B, D, H] -> [D, B, H]
        if k < len(twin) and twin[k] is not None:
            twin[k] = np.ascontiguousarray(np.swapaxes(twin[k], 0, 1))  # type: ignore[arg-type]
    model, feeds = make_node_model(op, twin, {**attrs, "layout": 0}, num_outputs=n, opset=opset)
    expected = run_onnxruntime(model, feeds)
    expected[0] = np.transpose(expected[0], (2, 0, 1, 3))
    expected[1:] = [np.swapaxes(e, 0, 1) for e in expected[1:]]
    for k, (got, want) in enumerate(zip(ours, expected, strict=True)):
        assert_close(got, want, f"{op} layout=1 output {k} vs onnxruntime (time-major twin)")


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", list(DIRECTIONS))
@pytest.mark.parametrize("layout", [0, 1])
def test_directions_and_layouts(op: str, direction: str, layout: int) -> None:
    d = DIRECTIONS[direction]
    inputs = layer_inputs(
        op, directions=d, layout=layout, initial=True, peepholes=op == "LSTM", seed=layout * 7 + d
    )
    check_recurrent(op, inputs, {"hidden_size": 6, "direction": direction, "layout": layout})


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("opset", [7, 14, 22])
def test_every_version(op: str, opset: int) -> None:
    assert opset in VERSIONS[op]
    check_op(
        op,
        layer_inputs(op, seed=opset, bias=opset != 14),
        {"hidden_size": 6},
        num_outputs=OUTPUTS[op],
        opset=opset,
    )


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", list(DIRECTIONS))
@pytest.mark.parametrize("layout", [0, 1])
def test_sequence_lens(op: str, direction: str, layout: int) -> None:
    d = DIRECTIONS[direction]
    inputs = layer_inputs(
        op,
        steps=6,
        batch=5,
        directions=d,
        layout=layout,
        lens=[6, 1, 3, 0, 5],  # 0: an empty sequence (Y zeros, zero final state)
        initial=True,
        seed=11 + d,
    )
    check_recurrent(
        op, inputs, {"hidden_size": 6, "direction": direction, "layout": layout}, oracles=ORT_ONLY
    )


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_clip(op: str) -> None:
    inputs = layer_inputs(op, directions=2, seed=5)
    inputs[0] = inputs[0] * 4  # type: ignore[operator]
    check_op(
        op,
        inputs,
        {"hidden_size": 6, "direction": "bidirectional", "clip": 0.7},
        num_outputs=OUTPUTS[op],
        oracles=ORT_ONLY,
    )


ACTIVATION_CASES = {
    "LSTM": [
        (["Relu", "Tanh", "Sigmoid"], None, None),
        (["HardSigmoid", "LeakyRelu", "Softsign"], [0.3, 0.05], [0.4]),
        (
            ["Sigmoid", "Elu", "Softplus", "Affine", "ScaledTanh", "ThresholdedRelu"],
            [1.3, 0.8, 0.7, 0.1],
            [0.2, 1.5],
        ),
    ],
    "GRU": [
        (["Relu", "Tanh"], None, None),
        (["HardSigmoid", "Elu"], [0.25, 0.9], [0.45]),
        (["Sigmoid", "Softsign", "HardSigmoid", "Softplus"], [0.3], None),
    ],
    "RNN": [
        (["Relu"], None, None),
        (["ScaledTanh"], [0.8], [1.2]),
        (["Affine", "ThresholdedRelu"], [0.6, 0.3], [0.1]),
    ],
}


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("case", [0, 1, 2])
def test_activation_lists(op: str, case: int) -> None:
    names, alphas, betas = ACTIVATION_CASES[op][case]
    per_direction = len(GATES) and {"LSTM": 3, "GRU": 2, "RNN": 1}[op]
    directions = len(names) // per_direction
    attrs: dict = {
        "hidden_size": 6,
        "activations": names,
        "direction": "bidirectional" if directions == 2 else "forward",
    }
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    check_op(
        op,
        layer_inputs(op, directions=directions, seed=20 + case),
        attrs,
        num_outputs=OUTPUTS[op],
        oracles=ORT_ONLY,
    )


@pytest.mark.parametrize("linear_before_reset", [0, 1])
@pytest.mark.parametrize("layout", [0, 1])
def test_gru_linear_before_reset(linear_before_reset: int, layout: int) -> None:
    inputs = layer_inputs("GRU", directions=2, layout=layout, initial=True, seed=30 + layout)
    check_recurrent(
        "GRU",
        inputs,
        {
            "hidden_size": 6,
            "direction": "bidirectional",
            "layout": layout,
            "linear_before_reset": linear_before_reset,
        },
    )


def test_lstm_input_forget_with_peepholes() -> None:
    inputs = layer_inputs("LSTM", directions=2, initial=True, peepholes=True, seed=40)
    check_op(
        "LSTM",
        inputs,
        {"hidden_size": 6, "direction": "bidirectional", "input_forget": 1},
        num_outputs=3,
        oracles=ORT_ONLY,
    )


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_only_some_outputs(op: str) -> None:
    """A layer whose Y_h alone is used (Y left unnamed), as exporters write them."""
    from tests.engine.ops.harness import run_ours

    model, feeds = make_node_model(op, layer_inputs(op, seed=50), {"hidden_size": 6}, num_outputs=2)
    node = model.graph.node[0]
    node.output[0] = ""
    del model.graph.output[0]
    (ours,) = run_ours(model, feeds)
    (expected,) = run_onnxruntime(model, feeds)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_float64_and_float16(op: str) -> None:
    check_op(
        op,
        layer_inputs(op, seed=60, dtype="float64"),
        {"hidden_size": 6},
        num_outputs=OUTPUTS[op],
        oracles=("reference",),
    )  # onnxruntime: float32 only
    x16 = layer_inputs(op, seed=61, dtype="float16")
    x32 = [None if a is None else a.astype(np.float32) for a in x16]
    kernel = {"LSTM": lstm, "GRU": gru, "RNN": rnn}[op]
    got, want = kernel(*x16, hidden_size=6), kernel(*x32, hidden_size=6)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == np.float16
        np.testing.assert_allclose(g.astype(np.float32), w, rtol=2e-3, atol=2e-3)


def test_bigger_layer_as_crnn_uses_it() -> None:
    """CRNN-sized: 40 steps, batch 8, 128 inputs, 96 hidden, bidirectional."""
    inputs = layer_inputs("LSTM", steps=40, batch=8, inputs=128, hidden=96, directions=2, seed=70)
    check_op("LSTM", inputs, {"hidden_size": 96, "direction": "bidirectional"}, num_outputs=3)


def test_errors_are_located() -> None:
    inputs = layer_inputs("LSTM", seed=80)
    with pytest.raises(ShapeInferenceError, match="hidden_size=5"):
        check_op("LSTM", inputs, {"hidden_size": 5}, num_outputs=3)
    with pytest.raises(EdgeInferError, match="activation 'Swish'"):
        parse_activations("RNN", 1, ["Swish"], None, None)
    with pytest.raises(EdgeInferError, match="need 3 per direction"):
        parse_activations("LSTM", 1, ["Tanh", "Tanh"], None, None)
    with pytest.raises(EdgeInferError, match="sequence_lens"):
        lstm(*inputs[:3], None, np.array([6, 5, 5], np.int32))  # 5 steps only
