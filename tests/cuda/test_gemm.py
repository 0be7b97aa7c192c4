"""kernels/gemm.cu: batched GEMM (FP32 SIMT, FP16 wmma) against the engine's Gemm/MatMul
reference kernels in float64, plus the fused activation; INT8 (wmma s8) against QGemm.

Tolerances: FP32 <= 1e-5 x the output scale; FP16 one FP16 ulp of the reference + 1e-5 x
the output scale (inputs are FP16 values, accumulation FP32, one rounding at the store);
INT8 as the INT8 convolutions (conv_support.check_int8): int8 and fp32 outputs equal to
QGemm's, fp16 one ulp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_infer.cuda.activations import encode
from edge_infer.cuda.params import gemm as pg
from edge_infer.engine.ops.fused import apply_activation
from edge_infer.engine.ops.linalg import gemm, matmul
from edge_infer.engine.ops.quantize import qgemm
from tests.cuda.conv_support import (
    ACTIVATION_CASES,
    X_SCALE,
    Y_SCALE,
    device_address,
    fp16_tolerance,
    skip_when_sanitized,
)

FLOAT = tuple(t for t in pg.TACTICS if t.precision != "int8")
INT8 = tuple(t for t in pg.TACTICS if t.precision == "int8")


@dataclass(frozen=True)
class GemmCase:
    """``act(alpha * op(A) @ op(B) + beta * C)``; ``c`` is ``none``, ``row`` (a bias of N,
    broadcast down the rows), ``col`` (one value per row) or ``full``."""

    m: int
    n: int
    k: int
    batch: int = 1
    trans_a: bool = False
    trans_b: bool = False
    broadcast_b: bool = False  # one B for every batch item (MatMul by a constant)
    alpha: float = 1.0
    beta: float = 1.0
    c: str = "none"
    activation: str = ""
    act_params: tuple[float, ...] = ()
    y_pad: int = 0  # extra columns per output row: Y is a slice of a wider buffer
    seed: int = 0


# fmt: off
CASES = [
    GemmCase(37, 45, 29, seed=1),
    GemmCase(20, 33, 40, trans_a=True, trans_b=True, alpha=0.5, beta=2.0, c="row",
             activation="relu", seed=2),
    GemmCase(9, 70, 17, batch=3, broadcast_b=True, c="col", activation="silu", y_pad=5,
             seed=3),
    GemmCase(70, 8, 100, trans_b=True, c="full", beta=0.25, activation="gelu",
             act_params=(1.0,), y_pad=3, seed=4),
]
# fmt: on


def _operand(
    rng: np.random.Generator, batch: int, rows: int, cols: int, trans: bool, dtype: type
) -> np.ndarray:
    """A [batch, rows, cols] operand, stored transposed (as a strided view) when ``trans``."""
    if trans:
        stored = rng.standard_normal((batch, cols, rows)).astype(dtype)
        return stored.transpose(0, 2, 1)
    return rng.standard_normal((batch, rows, cols)).astype(dtype)


def run_gemm(device: Any, tactic: pg.GemmTactic, case: GemmCase) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's Y and the float64 reference (FP16-rounded for FP16 tactics)."""
    dtype = np.float32 if tactic.precision == "fp32" else np.float16
    rng = np.random.default_rng(case.seed)
    a = _operand(rng, case.batch, case.m, case.k, case.trans_a, dtype)
    b = _operand(
        rng, 1 if case.broadcast_b else case.batch, case.k, case.n, case.trans_b, dtype
    ) / np.sqrt(case.k).astype(dtype)
    c_shape = {"none": None, "row": (case.n,), "col": (case.m, 1), "full": (case.m, case.n)}
    c = (
        None
        if c_shape[case.c] is None
        else (rng.standard_normal(c_shape[case.c]).astype(dtype).astype(np.float32))
    )

    # reference: the engine's Gemm per batch item (MatMul for the batched broadcast case)
    ref = np.empty((case.batch, case.m, case.n))
    for i in range(case.batch):
        bi = b[0 if case.broadcast_b else i].astype(np.float64)
        ai = a[i].astype(np.float64)
        if case.batch > 1 and c is None and case.alpha == 1.0:
            ref[i] = matmul(ai, bi)
        else:
            ref[i] = gemm(
                ai,
                bi,
                None if c is None else c.astype(np.float64),
                alpha=case.alpha,
                beta=case.beta,
            )
    ref = apply_activation(ref, case.activation, case.act_params)
    if dtype == np.float16:
        ref = ref.astype(np.float16).astype(np.float64)

    kept = [
        device.to_device(np.ascontiguousarray(a.transpose(0, 2, 1) if case.trans_a else a)),
        device.to_device(np.ascontiguousarray(b.transpose(0, 2, 1) if case.trans_b else b)),
    ]
    y_buffer = np.full((case.batch, case.m, case.n + case.y_pad), np.nan, dtype)
    y_dev = device.to_device(y_buffer)
    p = pg.GemmParams(
        m=case.m, n=case.n, k=case.k, batch=case.batch, alpha=case.alpha, beta=case.beta
    )
    p.a, p.b = device_address(kept[0]), device_address(kept[1])
    p.a_batch = case.m * case.k
    p.a_row, p.a_col = (1, case.m) if case.trans_a else (case.k, 1)
    p.b_batch = 0 if case.broadcast_b else case.k * case.n
    p.b_row, p.b_col = (1, case.k) if case.trans_b else (case.n, 1)
    if c is not None:
        kept.append(device.to_device(c))
        p.c = device_address(kept[-1])
        p.c_row, p.c_col = {"row": (0, 1), "col": (1, 0), "full": (case.n, 1)}[case.c]
    p.y, p.y_batch, p.y_row = (
        device_address(y_dev),
        case.m * (case.n + case.y_pad),
        (case.n + case.y_pad),
    )
    p.act, p.act_p0, p.act_p1 = encode(case.activation, case.act_params)
    device.run(tactic.call(p))
    y_buffer[...] = device.to_host(y_dev)
    assert np.isnan(y_buffer[:, :, case.n :]).all(), "the kernel wrote past its output rows"
    return y_buffer[:, :, : case.n].astype(np.float64), ref


def check(tactic: pg.GemmTactic, y: np.ndarray, ref: np.ndarray) -> None:
    scale = max(float(np.abs(ref).max()), 1e-30)
    err = np.abs(y - ref)
    if tactic.precision == "fp32":
        assert err.max() <= 1e-5 * scale, f"max error {err.max():.3g} (scale {scale:.3g})"
    else:
        assert (err <= fp16_tolerance(ref, scale)).all(), f"max error {err.max():.3g}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"seed{c.seed}")
@pytest.mark.parametrize("tactic", FLOAT, ids=lambda t: t.entry)
def test_gemm_matches_reference(
    device, tactic: pg.GemmTactic, case: GemmCase, sanitized: bool
) -> None:
    skip_when_sanitized(sanitized, case.seed)
    y, ref = run_gemm(device, tactic, case)
    check(tactic, y, ref)


@pytest.mark.parametrize("activation", ACTIVATION_CASES, ids=lambda a: a[0] + str(list(a[1])))
@pytest.mark.parametrize("tactic", FLOAT, ids=lambda t: t.entry)
def test_gemm_every_activation(device, tactic: pg.GemmTactic, activation, sanitized: bool) -> None:
    skip_when_sanitized(sanitized)
    case = GemmCase(5, 19, 11, c="row", activation=activation[0], act_params=activation[1], seed=5)
    y, ref = run_gemm(device, tactic, case)
    check(tactic, y, ref)


@st.composite
def gemm_cases(draw: st.DrawFn) -> GemmCase:
    """Small random GEMMs (the emulator runs every CUDA thread as an OS thread)."""
    name, params = draw(st.sampled_from(ACTIVATION_CASES))
    return GemmCase(
        draw(st.integers(1, 40)),
        draw(st.integers(1, 40)),
        draw(st.integers(1, 48)),
        draw(st.integers(1, 2)),
        draw(st.booleans()),
        draw(st.booleans()),
        draw(st.booleans()),
        draw(st.sampled_from((1.0, 0.5))),
        draw(st.sampled_from((1.0, -1.5))),
        draw(st.sampled_from(("none", "row", "col", "full"))),
        name,
        params,
        draw(st.integers(0, 3)),
        draw(st.integers(0, 2**16)),
    )


@settings(
    max_examples=10,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=gemm_cases(), index=st.integers(0, len(FLOAT) - 1))
def test_gemm_property(emu, case: GemmCase, index: int, sanitized: bool) -> None:
    skip_when_sanitized(sanitized)
    from tests.cuda.conftest import EmuDevice

    y, ref = run_gemm(EmuDevice(emu), FLOAT[index], case)
    check(FLOAT[index], y, ref)


# -- INT8 (QGemm) ----------------------------------------------------------------------------

QGEMM_CASES = [(37, 45, 29, True, 6), (70, 8, 100, False, 7), (5, 70, 300, True, 8)]


def run_qgemm(
    device: Any, tactic: pg.GemmTactic, m: int, n: int, k: int, bias: bool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's Y and QGemm's on int8 storage (out_precision int8/fp16/fp32)."""
    rng = np.random.default_rng(seed)
    xq = rng.integers(-128, 128, (m, k)).astype(np.int8)
    wq = rng.integers(-127, 128, (n, k)).astype(np.int8)  # QGemm's W_q [N, K]
    w_scale = (rng.uniform(0.5, 1.5, n) * 0.01).astype(np.float32)
    bq = rng.integers(-3000, 3000, n).astype(np.int32) if bias else None
    out_precision = {"s8": "int8", "f16": "fp16", "f32": "fp32"}[tactic.out]
    ref = qgemm(
        xq, wq, w_scale, bq, x_scale=X_SCALE, out_precision=out_precision, out_scale=Y_SCALE
    )

    out_dtype = {"s8": np.int8, "f16": np.float16, "f32": np.float32}[tactic.out]
    kept = [device.to_device(a) for a in (xq, wq, w_scale)]
    y_dev = device.to_device(np.zeros((m, n), out_dtype))
    p = pg.GemmParams(m=m, n=n, k=k, batch=1, a_row=k, a_col=1, b_row=1, b_col=k, y_row=n)
    p.a, p.b, p.w_scale = (device_address(a) for a in kept)
    if bq is not None:
        kept.append(device.to_device(bq))
        p.c, p.c_row, p.c_col = device_address(kept[-1]), 0, 1
    p.y, p.x_scale, p.y_scale = device_address(y_dev), X_SCALE, Y_SCALE
    device.run(tactic.call(p))
    return device.to_host(y_dev).astype(np.float64), np.asarray(ref, np.float64)


@pytest.mark.parametrize(("m", "n", "k", "bias", "seed"), QGEMM_CASES)
@pytest.mark.parametrize("tactic", INT8, ids=lambda t: t.entry)
def test_gemm_int8_matches_qgemm(
    device,
    tactic: pg.GemmTactic,
    m: int,
    n: int,
    k: int,
    bias: bool,
    seed: int,
    sanitized: bool,
) -> None:
    if seed != 7:  # the sanitized runs keep one INT8 GEMM case (two row tiles, no bias)
        skip_when_sanitized(sanitized)
    y, ref = run_qgemm(device, tactic, m, n, k, bias, seed)
    if tactic.out in ("s8", "f32"):
        assert (y == ref).all(), f"{int((y != ref).sum())} outputs differ from QGemm"
    else:
        scale = max(float(np.abs(ref).max()), 1e-30)
        assert (np.abs(y - ref) <= fp16_tolerance(ref, scale)).all()
