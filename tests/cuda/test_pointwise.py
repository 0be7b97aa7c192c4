"""kernels/pointwise.cu: the IR's Pointwise chains against the engine's reference kernel
(fused.py ``pointwise``, run in float64): every op the fusion pass fuses, operands from the
running value, inputs of the output's shape and broadcast constants, on either side of a
binary op, Clip bounds as attributes or inputs. FP32: within 1e-5 of the output scale; FP16
(fp16 tensors, float arithmetic, one rounding): half an fp16 ulp plus that bound."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.cuda.params import pointwise as pw
from edge_infer.engine.ops.fused import pointwise as reference
from edge_infer.engine.passes.fuse_pointwise import BINARY, UNARY
from edge_infer.errors import BackendError

SHAPE = (2, 3, 5, 7)
ATTRS = {
    "LeakyRelu": {"alpha": 0.2},
    "Elu": {"alpha": 0.5},
    "Celu": {"alpha": 1.5},
    "HardSigmoid": {"alpha": 0.3, "beta": 0.4},
    "ThresholdedRelu": {"alpha": 0.25},
    "Selu": {},
}


def _step(op: str, *args, **attrs) -> dict:
    return {"op": op, "args": list(args), "attrs": attrs}


def _unary_chain(op: str) -> list[dict]:
    # Log, Sqrt and Reciprocal see positive values
    head = (
        [_step("Abs", "$acc"), _step("Add", "$acc", 1)]
        if op in {"Log", "Sqrt", "Reciprocal"}
        else []
    )
    return [*head, _step(op, "$acc", **ATTRS.get(op, {}))]


def _chains() -> list[tuple[str, list[dict], int]]:
    """(name, steps, opset); inputs are always [x, 0.5 scalar, per-channel, full tensor]."""
    chains = [(op, _unary_chain(op), 20) for op in sorted(UNARY - {"Clip"})]
    chains += [(f"{op}-acc-first", [_step(op, "$acc", 2)], 17) for op in sorted(BINARY - {"Pow"})]
    chains += [(f"{op}-acc-second", [_step(op, 3, "$acc")], 17) for op in ("Sub", "Div", "Max")]
    chains += [
        ("Pow", [_step("Abs", "$acc"), _step("Pow", "$acc", 1)], 17),
        ("silu", [_step("Sigmoid", "$acc"), _step("Mul", "$acc", 0)], 17),
        (
            "affine-relu",
            [_step("Mul", "$acc", 2), _step("Add", "$acc", 1), _step("Relu", "$acc")],
            17,
        ),
        ("gelu-tanh", [_step("Gelu", "$acc", approximate="tanh")], 20),
        ("clip-attrs", [_step("Clip", "$acc", min=-0.5, max=0.75)], 6),
        ("clip-inputs", [_step("Clip", "$acc", 1, 1)], 13),  # min > max: all become max
        ("clip-min-only", [_step("Clip", "$acc", 1, None)], 13),
        ("clip-max-only", [_step("Clip", "$acc", None, 1)], 13),
        (
            "long",
            [
                _step("Mul", "$acc", 1),
                _step("Tanh", "$acc"),
                _step("Add", "$acc", 3),
                _step("HardSwish", "$acc"),
                _step("Sub", 2, "$acc"),
                _step("Abs", "$acc"),
                _step("Min", "$acc", 3),
                _step("Neg", "$acc"),
            ],
            17,
        ),
    ]
    return chains


CHAINS = _chains()


def _inputs(dtype) -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(SHAPE) * 2).astype(dtype)
    half = np.array(0.5, dtype)
    channel = (rng.standard_normal((SHAPE[1], 1, 1)) + 0.5).astype(dtype)
    full = rng.standard_normal(SHAPE).astype(dtype)
    return [x, half, channel, full]


def _bound(ref: np.ndarray) -> float:
    finite = ref[np.isfinite(ref)]
    return 1e-5 * max(1.0, float(np.abs(finite).max()) if finite.size else 1.0)


def _run(device, inputs, steps, opset, out_dtype):
    out = device.empty(SHAPE, out_dtype)
    dev_inputs = [device.to_device(a) for a in inputs]
    device.run(pw.pointwise(dev_inputs, out, steps, opset))
    return device.to_host(out)


@pytest.mark.parametrize(("name", "steps", "opset"), CHAINS, ids=[c[0] for c in CHAINS])
def test_pointwise_fp32(device, name, steps, opset) -> None:
    inputs = _inputs(np.float32)
    with np.errstate(all="ignore"):
        ref = reference(*(a.astype(np.float64) for a in inputs), steps=steps, opset=opset)
    got = _run(device, inputs, steps, opset, np.float32)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    ok = ~np.isnan(ref)
    np.testing.assert_allclose(got[ok], ref[ok], rtol=0, atol=_bound(ref))


@pytest.mark.parametrize(("name", "steps", "opset"), CHAINS[-5:], ids=[c[0] for c in CHAINS[-5:]])
def test_pointwise_fp16(device, name, steps, opset) -> None:
    inputs = _inputs(np.float16)
    inputs[2] = inputs[2].astype(np.float32)  # an fp32 constant beside fp16 tensors
    with np.errstate(all="ignore"):
        ref = reference(*(a.astype(np.float64) for a in inputs), steps=steps, opset=opset)
    got = _run(device, inputs, steps, opset, np.float16).astype(np.float64)
    assert (np.abs(got - ref) <= np.abs(ref) * 2.0**-11 + _bound(ref)).all()


def test_pointwise_refuses_what_it_cannot_run() -> None:
    x = np.zeros(SHAPE, np.float32)
    with pytest.raises(BackendError, match="1-8 steps"):
        pw.pointwise([x], x, [_step("Relu", "$acc")] * 9)
    with pytest.raises(BackendError, match="does not broadcast"):
        pw.pointwise([x, np.zeros(4, np.float32)], x, [_step("Add", "$acc", 1)])
    with pytest.raises(BackendError, match="no CUDA kernel code"):
        pw.pointwise([x], x, [_step("IsNaN", "$acc")], 17)
