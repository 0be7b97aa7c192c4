"""Recurrent layers: ONNX LSTM, GRU and RNN (versions 7, 14 and 22 — the ones in the
importer's opset range; 14 added ``layout``, 22 only more types).

Every form the schema allows: forward, reverse and bidirectional; ``sequence_lens``; initial
hidden (and cell) states; LSTM peepholes and ``input_forget``; ``layout`` 0 (time-major) and 1
(batch-major); ``clip``; the activation lists with their alpha/beta; GRU's
``linear_before_reset``; all outputs (``Y``, ``Y_h``, ``Y_c``). The arithmetic lives in
:mod:`edge_infer.engine.ops.recurrent_cells` (shared with the CPU tactic); float16 runs in
float32 and is rounded once at the end, as onnxruntime does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edge_infer.engine.ir import TensorType
from edge_infer.engine.ops.conv import accumulation_dtype
from edge_infer.engine.ops.recurrent_cells import GATES, RecurrentRunner, cell_spec
from edge_infer.engine.ops.registry import InferContext, OpDef, OpList
from edge_infer.errors import EdgeInferError

OPS = OpList()

#: ONNX versions of each op inside the importer's opset range (7–22)
VERSIONS = {"LSTM": (7, 14, 22), "GRU": (7, 14, 22), "RNN": (7, 14, 22)}

#: input index of each optional input, per op (after X, W, R, B, sequence_lens, initial_h)
_INITIAL_C, _PEEPHOLES = 6, 7


def output_types(
    op: str, x: tuple[Any, ...], directions: int, hidden: int, layout: int, dtype: np.dtype
) -> list[TensorType]:
    """Types of ``Y``, ``Y_h`` (and LSTM's ``Y_c``) for input shape ``x``."""
    if layout == 0:
        steps, batch = x[0], x[1]
        y, state = (steps, directions, batch, hidden), (directions, batch, hidden)
    else:
        batch, steps = x[0], x[1]
        y, state = (batch, steps, directions, hidden), (batch, directions, hidden)
    types = [TensorType(y, dtype), TensorType(state, dtype)]
    if op == "LSTM":
        types.append(TensorType(state, dtype))
    return types


def _infer(op: str) -> Callable[[InferContext], list[TensorType]]:
    def infer(ctx: InferContext) -> list[TensorType]:
        a = ctx.attrs
        x, w, r = ctx.shape(0), ctx.shape(1), ctx.shape(2)
        if ctx.dtype(0).kind != "f":
            ctx.fail(f"X must be a float tensor, got {ctx.dtype(0)}")
        if len(x) != 3 or len(w) != 3 or len(r) != 3:
            ctx.fail(f"X, W and R must be 3-D, got {x}, {w} and {r}")
        try:
            spec = cell_spec(op, hidden_size=a.get("hidden_size"), R_shape=r, **_spec_attrs(a))
        except EdgeInferError as exc:
            ctx.fail(str(exc))
        d, g, h, layout = spec.directions, GATES[op], spec.hidden, spec.layout
        batch = x[1] if layout == 0 else x[0]
        if w != (d, g * h, x[2]):
            ctx.fail(f"W must be [{d}, {g * h}, input_size={x[2]}], got {w}")
        expected = {3: (d, 2 * g * h), 4: (batch,)}
        state = (d, batch, h) if layout == 0 else (batch, d, h)
        expected[5] = state
        if op == "LSTM":
            expected[_INITIAL_C] = state
            expected[_PEEPHOLES] = (d, 3 * h)
        names = {3: "B", 4: "sequence_lens", 5: "initial_h", 6: "initial_c", 7: "P"}
        for index, shape in expected.items():
            if ctx.has(index) and ctx.shape(index) != shape:
                ctx.fail(f"{names[index]} must have shape {shape}, got {ctx.shape(index)}")
        if ctx.has(4) and ctx.dtype(4) != np.int32:
            ctx.fail(f"sequence_lens must be int32, got {ctx.dtype(4)}")
        return output_types(op, x, d, h, layout, ctx.dtype(0))

    return infer


def _spec_attrs(a: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "direction",
        "layout",
        "activations",
        "activation_alpha",
        "activation_beta",
        "clip",
        "input_forget",
        "linear_before_reset",
    )
    return {k: a[k] for k in keys if k in a and a[k] is not None}


def run_recurrent(
    op: str,
    X: np.ndarray,
    W: np.ndarray,
    R: np.ndarray,
    B: np.ndarray | None,
    sequence_lens: np.ndarray | None,
    initial_h: np.ndarray | None,
    initial_c: np.ndarray | None,
    P: np.ndarray | None,
    attrs: dict[str, Any],
) -> tuple[np.ndarray, ...]:
    """Run one recurrent layer with freshly allocated buffers; returns all its outputs."""
    X = np.asarray(X)
    spec = cell_spec(
        op, hidden_size=attrs.get("hidden_size"), R_shape=np.shape(R), **_spec_attrs(attrs)
    )
    if sequence_lens is not None:
        lens = np.asarray(sequence_lens)
        steps = X.shape[0] if spec.layout == 0 else X.shape[1]
        if lens.size and (lens.min() < 0 or lens.max() > steps):
            raise EdgeInferError(
                f"{op}: sequence_lens must be in [0, {steps}], got {lens.tolist()}"
            )
    acc = accumulation_dtype(X.dtype)
    runner = RecurrentRunner(spec, X.shape, acc, lambda shape, dtype: np.empty(shape, dtype))

    def cast(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.asarray(a, acc)

    runner.load_weights(cast(W), cast(R), cast(B), cast(P))  # type: ignore[arg-type]
    types = output_types(op, X.shape, spec.directions, spec.hidden, spec.layout, acc)
    outs = [np.empty(t.shape, acc) for t in types]
    runner.run(
        cast(X),
        sequence_lens,
        cast(initial_h),
        cast(initial_c),  # type: ignore[arg-type]
        *outs,
        *([None] if op != "LSTM" else []),
    )
    return tuple(o.astype(X.dtype, copy=False) for o in outs)


def lstm(
    X: np.ndarray,
    W: np.ndarray,
    R: np.ndarray,
    B: np.ndarray | None = None,
    sequence_lens: np.ndarray | None = None,
    initial_h: np.ndarray | None = None,
    initial_c: np.ndarray | None = None,
    P: np.ndarray | None = None,
    *,
    activation_alpha: Sequence[float] | None = None,
    activation_beta: Sequence[float] | None = None,
    activations: Sequence[str] | None = None,
    clip: float | None = None,
    direction: str = "forward",
    hidden_size: int | None = None,
    input_forget: int = 0,
    layout: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ONNX LSTM: returns ``(Y, Y_h, Y_c)``."""
    attrs = dict(
        activation_alpha=activation_alpha,
        activation_beta=activation_beta,
        activations=activations,
        clip=clip,
        direction=direction,
        hidden_size=hidden_size,
        input_forget=input_forget,
        layout=layout,
    )
    return run_recurrent("LSTM", X, W, R, B, sequence_lens, initial_h, initial_c, P, attrs)  # type: ignore[return-value]


def gru(
    X: np.ndarray,
    W: np.ndarray,
    R: np.ndarray,
    B: np.ndarray | None = None,
    sequence_lens: np.ndarray | None = None,
    initial_h: np.ndarray | None = None,
    *,
    activation_alpha: Sequence[float] | None = None,
    activation_beta: Sequence[float] | None = None,
    activations: Sequence[str] | None = None,
    clip: float | None = None,
    direction: str = "forward",
    hidden_size: int | None = None,
    linear_before_reset: int = 0,
    layout: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """ONNX GRU: returns ``(Y, Y_h)``."""
    attrs = dict(
        activation_alpha=activation_alpha,
        activation_beta=activation_beta,
        activations=activations,
        clip=clip,
        direction=direction,
        hidden_size=hidden_size,
        linear_before_reset=linear_before_reset,
        layout=layout,
    )
    return run_recurrent("GRU", X, W, R, B, sequence_lens, initial_h, None, None, attrs)  # type: ignore[return-value]


def rnn(
    X: np.ndarray,
    W: np.ndarray,
    R: np.ndarray,
    B: np.ndarray | None = None,
    sequence_lens: np.ndarray | None = None,
    initial_h: np.ndarray | None = None,
    *,
    activation_alpha: Sequence[float] | None = None,
    activation_beta: Sequence[float] | None = None,
    activations: Sequence[str] | None = None,
    clip: float | None = None,
    direction: str = "forward",
    hidden_size: int | None = None,
    layout: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """ONNX RNN (a simple recurrent layer): returns ``(Y, Y_h)``."""
    attrs = dict(
        activation_alpha=activation_alpha,
        activation_beta=activation_beta,
        activations=activations,
        clip=clip,
        direction=direction,
        hidden_size=hidden_size,
        layout=layout,
    )
    return run_recurrent("RNN", X, W, R, B, sequence_lens, initial_h, None, None, attrs)  # type: ignore[return-value]


_KERNELS = {"LSTM": lstm, "GRU": gru, "RNN": rnn}
for _op, _versions in VERSIONS.items():
    for _version in _versions:
        # never folded: a recurrent layer is real work even when its inputs are constants
        OPS.add(OpDef(_op, _version, _KERNELS[_op], _infer(_op), foldable=False))
