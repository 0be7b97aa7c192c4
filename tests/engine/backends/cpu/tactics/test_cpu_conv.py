"""Every CPU conv tactic equals the reference Conv (+ bias, residual, activation)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu.activations import apply_activation
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS
from edge_infer.engine.ops import get_registry
from edge_infer.engine.tactics.base import ConvSpec

CONV_TACTICS = CPU_TACTICS["conv"]

CONV = get_registry().resolve("", "Conv", 17).kernel

# x shape, w shape, strides, pads (t, l, b, r), dilations, group
CASES = [
    ((1, 8, 10, 12), (16, 8, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((2, 8, 9, 9), (16, 8, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((1, 8, 11, 10), (8, 1, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 8),
    ((2, 6, 11, 10), (12, 3, 3, 3), (2, 2), (1, 0, 1, 2), (1, 1), 2),
    ((1, 4, 13, 13), (5, 4, 5, 5), (1, 1), (2, 2, 2, 2), (2, 2), 1),
    ((2, 4, 7, 9), (6, 4, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((1, 3, 17, 15), (7, 3, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),
    ((1, 16, 6, 6), (16, 1, 5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 16),
]
ACTS = [
    ("", ()),
    ("silu", ()),
    ("relu", ()),
    ("leaky_relu", (0.1,)),
    ("clip", (0.0, 6.0)),
    ("hard_swish", ()),
    ("sigmoid", ()),
    ("mish", ()),
    ("gelu", ()),
]


def expected(
    conv: np.ndarray, z: np.ndarray | None, act: str, params: tuple, residual: str
) -> np.ndarray:
    y = conv.astype(np.float64)
    if residual == "pre":
        y = y + z
    y = y.astype(np.float32)
    apply_activation(y, act, params)
    if residual == "post":
        y = y + z
    return y


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"x{c[0]}w{c[1]}s{c[2]}g{c[5]}")
@pytest.mark.parametrize("act", ACTS, ids=lambda a: a[0] or "none")
@pytest.mark.parametrize("residual", ["none", "pre", "post"])
def test_tactics_match_reference(case, act, residual) -> None:
    xs, ws, strides, pads, dil, group = case
    rng = np.random.default_rng(hash((xs, ws)) % 2**32)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    conv = CONV(x, w, b, strides=list(strides), pads=list(pads), dilations=list(dil), group=group)
    z = rng.standard_normal(conv.shape).astype(np.float32)
    spec = ConvSpec(xs, conv.shape, w, b, strides, pads, dil, group, act[0], act[1], residual)
    want = expected(conv, z, act[0], act[1], residual)
    ran = 0
    for tactic in CONV_TACTICS:
        if not tactic.applicable(spec):
            continue
        out = np.full(conv.shape, np.nan, np.float32)
        ins = [x, w, b] + ([z] if residual != "none" else [])
        run = tactic(spec).bind(ins, [out], ScratchPool())
        run()
        run()  # twice: scratch reuse must not leak state between runs
        scale = max(float(np.abs(want).max()), 1.0)
        np.testing.assert_allclose(
            out, want, rtol=1e-4, atol=2e-5 * scale, err_msg=f"tactic {tactic.name}"
        )
        ran += 1
    assert ran >= 1


def test_strided_output_view_is_written_in_place() -> None:
    """Concat elimination hands a conv a channel slice of a bigger buffer (batch > 1)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    b = np.zeros(6, np.float32)
    conv = CONV(x, w, b, pads=[1, 1, 1, 1])
    spec = ConvSpec(x.shape, conv.shape, w, b, (1, 1), (1, 1, 1, 1), (1, 1), 1, "relu")
    for tactic in CONV_TACTICS:
        if not tactic.applicable(spec):
            continue
        big = np.full((2, 10, 8, 8), -7.0, np.float32)
        view = big[:, 2:8]
        tactic(spec).bind([x, w, b], [view], ScratchPool())()
        np.testing.assert_allclose(view, np.maximum(conv, 0), rtol=1e-4, atol=1e-4)
        assert (big[:, :2] == -7).all() and (big[:, 8:] == -7).all(), tactic.name


def test_every_tactic_is_exercised_by_some_case() -> None:
    names = set()
    for xs, ws, strides, pads, dil, group in CASES:
        spec = ConvSpec(xs, (1, 1, 1, 1), np.zeros(ws, np.float32), None, strides, pads, dil, group)
        names |= {t.name for t in CONV_TACTICS if t.applicable(spec)}
    assert names == {t.name for t in CONV_TACTICS}


@pytest.mark.parametrize("case", [CASES[2], CASES[7], CASES[0]], ids=["dw-s2", "dw-5x5", "3x3"])
def test_numpy_paths_without_numba(monkeypatch, case) -> None:
    """Machines without the ``fast`` extra run the numpy epilogue and depthwise loops."""
    from edge_infer.engine.backends.cpu import activations, jit

    monkeypatch.setattr(jit, "available", lambda: False)
    monkeypatch.setattr(activations, "_compiled_epilogue", lambda: None)
    xs, ws, strides, pads, dil, group = case
    rng = np.random.default_rng(5)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    conv = CONV(x, w, b, strides=list(strides), pads=list(pads), dilations=list(dil), group=group)
    spec = ConvSpec(xs, conv.shape, w, b, strides, pads, dil, group, "silu")
    want = expected(conv, None, "silu", (), "none")
    for tactic in CONV_TACTICS:
        if tactic.applicable(spec):
            out = np.zeros(conv.shape, np.float32)
            tactic(spec).bind([x, w, b], [out], ScratchPool())()
            np.testing.assert_allclose(
                out, want, rtol=1e-4, atol=2e-5 * np.abs(want).max(), err_msg=tactic.name
            )
