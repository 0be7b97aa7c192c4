"""FP16 recurrent layers (``fp16_recurrent_native``, ``fp16_recurrent_gemm``:
tactics/cpu_fp16.py): an Fp16Layer wrapping an LSTM/GRU/RNN runs the FP32 recurrent tactic
between the conversions — exactly the FP32 tactic on the widened inputs with its outputs
rounded to nearest even float16, within the self-check's FP16 tolerance of the reference
``fp16_layer``, and chosen by an FP16 engine's build."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS
from edge_infer.engine.backends.cpu.tactics.cpu_recurrent import RecurrentGemm, RecurrentNative
from edge_infer.engine.builder import BuildOptions, build
from edge_infer.engine.tactics import candidates
from edge_infer.engine.tactics.verify import (
    _tolerance,
    disagreement,
    layer_inputs,
    reference_outputs,
)
from tests.engine.backends.cpu.tactics.test_cpu_recurrent import CASES, _engine_case
from tests.engine.ops.test_recurrent import layer_inputs as recurrent_inputs

F16, F32 = np.dtype(np.float16), np.dtype(np.float32)
INNER = {"fp16_recurrent_native": RecurrentNative, "fp16_recurrent_gemm": RecurrentGemm}


def _fp16_engine(case: int) -> tuple[object, dict]:
    op, make, attrs = CASES[case]
    inputs = recurrent_inputs(op, seed=case, **make)
    model, feeds = _engine_case(op, inputs, {"hidden_size": 6, **attrs})
    shapes = {k: v.shape for k, v in feeds.items()}
    return build(model, options=BuildOptions(shapes=shapes, precision="fp16")), feeds


def _layer(engine: object) -> object:
    graph = engine.graph(engine.profile.opt_batch)  # type: ignore[attr-defined]
    (node,) = [n for n in graph.nodes if n.op_type == "Fp16Layer"]
    return node


def _rounded(a: np.ndarray, like: np.ndarray) -> np.ndarray:
    """float32 values rounded to float16 (nearest even), stored as ``like`` is."""
    r = a.astype(F16)
    return r if like.dtype == F16 else r.astype(F32)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_the_fp16_forms_are_the_fp32_tactic_rounded_and_within_the_reference(case: int) -> None:
    engine, _ = _fp16_engine(case)
    node = _layer(engine)
    tactics, spec = candidates(node, CPU_TACTICS)
    names = {t.name for t in tactics}
    want_names = {"fp16_recurrent_gemm"} | (
        {"fp16_recurrent_native"} if CASES[case][0] == "LSTM" else set()
    )
    assert want_names <= names
    assert spec.recurrent is not None
    ins = layer_inputs(node, seed=case)
    want = reference_outputs(node, ins)
    wide = [a.astype(F32) if isinstance(a, np.ndarray) and a.dtype == F16 else a for a in ins]
    for k, a in spec.consts.items():
        wide[k] = a
    for k in spec.round_inputs:  # float32 inputs the layer rounds to float16's values
        if isinstance(wide[k], np.ndarray) and k not in spec.consts:
            wide[k] = wide[k].astype(F16).astype(F32)
    for tactic in tactics:
        if tactic.name not in want_names:
            continue
        outs = [np.full(v.shape, np.nan, v.dtype) for v in node.outputs]
        tactic(spec).bind(ins, outs, ScratchPool())()
        f32 = [np.full(v.shape, np.nan, F32) for v in node.outputs]
        INNER[tactic.name](spec.recurrent).bind(wide, f32, ScratchPool())()
        for k, (got, ref, raw) in enumerate(zip(outs, want, f32, strict=True)):
            assert not np.isnan(got).any(), f"{tactic.name} output {k} unwritten"
            assert got.dtype in (F16, F32)
            np.testing.assert_array_equal(got, _rounded(raw, got))
            why = disagreement(got, ref, _tolerance(node, got))
            assert why is None, f"{tactic.name} output {k}: {why}"


def test_an_fp16_lstm_engine_picks_an_fp16_recurrent_tactic() -> None:
    engine, feeds = _fp16_engine(0)  # a bidirectional LSTM with peepholes
    assert _layer(engine).meta.get("tactic") in ("fp16_recurrent_native", "fp16_recurrent_gemm")
    ctx = engine.create_context()  # type: ignore[attr-defined]
    got = ctx.execute(feeds)
    assert all(np.isfinite(np.asarray(v, np.float64)).all() for v in got.values())
