"""``fp16_step`` (tactics/cpu_fp16.py): the wrapped op's FP32 step gets the FP16 layer's
constant inputs as constants (so a step lays a constant operand out once, at bind) and the
other inputs typed as the float32 arrays it is given; ``edge_infer::Pointwise`` chains take
their FP32 step too. Results: the reference ``fp16_layer`` within the FP16 self-check
tolerance."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import steps
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics.cpu_fp16 import Fp16Kernel, Fp16Step
from edge_infer.engine.ops.quantize import fp16_layer
from edge_infer.engine.tactics.fp16 import Fp16Spec
from edge_infer.engine.tactics.verify import TOLERANCES, disagreement

F16, F32 = np.dtype(np.float16), np.dtype(np.float32)


def _spec(op: str, domain: str, attrs: dict, ins: list[np.ndarray], consts: dict, out) -> Fp16Spec:
    return Fp16Spec(
        op=op,
        op_domain=domain,
        opset=17,
        op_attrs=attrs,
        round_inputs=(),
        fp16_outputs=(0,),
        inputs=tuple((a.shape, a.dtype.name) for a in ins),
        outputs=((out, "float16"),),
        consts={k: v.astype(F32) for k, v in consts.items()},
    )


def _spy(monkeypatch: pytest.MonkeyPatch, key: str) -> list[tuple[Any, Any]]:
    """Records (node, run) of each call of STEPS[key]."""
    seen: list[tuple[Any, Any]] = []
    inner = steps.STEPS[key]

    def factory(node, ins, outs, scratch):  # type: ignore[no-untyped-def]
        run = inner(node, ins, outs, scratch)
        seen.append((node, run))
        return run

    monkeypatch.setitem(steps.STEPS, key, factory)
    return seen


def _check(spec: Fp16Spec, ins: list[np.ndarray], attrs: dict) -> None:
    out = np.full(spec.outputs[0][0], np.nan, F16)  # type: ignore[index]
    Fp16Step(spec).bind(list(ins), [out], ScratchPool())()
    want = fp16_layer(*ins, op=spec.op, op_domain=spec.op_domain, op_attrs=attrs, fp16_outputs=(0,))
    assert disagreement(out, want, TOLERANCES["float16"]) is None


def test_a_matmul_step_gets_its_constant_b_as_a_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 5, 8)).astype(F16)
    b = rng.standard_normal((8, 6)).astype(F16)
    spec = _spec("MatMul", "", {}, [a, b], {1: b}, (2, 5, 6))
    seen = _spy(monkeypatch, "MatMul")
    _check(spec, [a, b], {})
    ((node, run),) = seen
    assert run is not None  # the step, not the reference
    assert node.inputs[0].const is None and node.inputs[0].dtype == F32
    np.testing.assert_array_equal(node.inputs[1].const, b.astype(F32))


def test_a_pointwise_chain_takes_its_step(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, 5, 6)).astype(F16)
    c = rng.standard_normal((1, 4, 1, 1)).astype(F16)
    z = rng.standard_normal((1, 4, 5, 6)).astype(F16)
    attrs = {
        "steps": [
            {"op": "Mul", "args": ["$acc", 1]},
            {"op": "Add", "args": ["$acc", 2]},
            {"op": "Tanh", "args": ["$acc"]},
        ],
        "opset": 17,
    }
    spec = _spec("Pointwise", "edge_infer", attrs, [x, c, z], {1: c}, x.shape)
    assert Fp16Step.applicable(spec)
    seen = _spy(monkeypatch, "edge_infer::Pointwise")
    _check(spec, [x, c, z], attrs)
    ((node, run),) = seen
    assert run is not None and node.domain == "edge_infer"
    assert node.inputs[1].const is not None and node.inputs[2].const is None


def test_other_domain_ops_keep_the_kernel() -> None:
    x = np.ones((1, 4, 5, 5), F16)
    spec = _spec("Reformat", "edge_infer", {}, [x], {}, x.shape)
    assert not Fp16Step.applicable(spec)
    assert Fp16Kernel.applicable(spec)
