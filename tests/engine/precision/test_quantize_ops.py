"""INT8 arithmetic is exact; Q/DQ ops match onnxruntime; weights quantize per channel."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_infer.engine.ops.quantize import (
    dequantize_linear,
    int8_conv_accumulate,
    qconv,
    quantize_activation,
    quantize_linear,
)
from edge_infer.engine.precision.lower import quantize_bias, quantize_weights
from edge_infer.engine.reference import run_onnx


def brute_force_int8_conv(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int, pad: int, group: int
) -> np.ndarray:
    """Integer convolution with int32 accumulation, loop by loop (the oracle)."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2 * pad, wd + 2 * pad), np.int32)
    xp[:, :, pad : pad + h, pad : pad + wd] = x
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, m, ho, wo), np.int32)
    per_group = m // group
    for oc in range(m):
        g = oc // per_group
        for i in range(ho):
            for j in range(wo):
                win = xp[
                    :,
                    g * cg : (g + 1) * cg,
                    i * stride : i * stride + kh,
                    j * stride : j * stride + kw,
                ]
                out[:, oc, i, j] = np.sum(
                    win * w[oc].astype(np.int32), axis=(1, 2, 3), dtype=np.int32
                )
        if b is not None:
            out[:, oc] += b[oc]
    return out


@pytest.mark.parametrize(("stride", "pad", "group"), [(1, 1, 1), (2, 0, 1), (1, 1, 4), (2, 1, 8)])
def test_int8_conv_accumulator_is_bit_exact(stride: int, pad: int, group: int) -> None:
    rng = np.random.default_rng(stride * 10 + group)
    x = rng.integers(-128, 128, (2, 8, 7, 9)).astype(np.int8)
    w = rng.integers(-127, 128, (8, 8 // group, 3, 3)).astype(np.int8)
    b = rng.integers(-(1 << 20), 1 << 20, 8).astype(np.int32)
    got = int8_conv_accumulate(x, w, b, strides=[stride] * 2, pads=[pad] * 4, group=group)
    want = brute_force_int8_conv(x, w, b, stride, pad, group)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)


def test_large_fan_in_stays_exact() -> None:
    # 512 channels x 3x3 of extreme values: |sum| near 2**26, beyond float32's 2**24
    x = np.full((1, 512, 3, 3), -128, np.int8)
    w = np.full((2, 512, 3, 3), -127, np.int8)
    got = int8_conv_accumulate(x, w)
    assert int(got[0, 0, 0, 0]) == 512 * 9 * 128 * 127


def test_qconv_equals_integer_pipeline() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    x_scale = float(np.abs(x).max() / 127)
    wq, w_scale = quantize_weights(w)
    bq = quantize_bias(b, x_scale, w_scale)
    y = qconv(x, wq, w_scale, bq, x_scale=x_scale, pads=[1, 1, 1, 1], activation="relu")
    xq = quantize_activation(x, x_scale).astype(np.int8)
    acc = brute_force_int8_conv(xq, wq, bq, 1, 1, 1)
    want = np.maximum(acc * (x_scale * w_scale.astype(np.float64)).reshape(1, -1, 1, 1), 0)
    np.testing.assert_array_equal(y, want.astype(np.float32))


def test_per_channel_weight_scales() -> None:
    rng = np.random.default_rng(2)
    w = rng.standard_normal((6, 3, 3, 3)).astype(np.float32) * np.arange(1, 7).reshape(-1, 1, 1, 1)
    wq, scale = quantize_weights(w)
    assert wq.dtype == np.int8 and scale.shape == (6,)
    np.testing.assert_allclose(scale, np.abs(w).reshape(6, -1).max(1) / 127, rtol=1e-6)
    assert (np.abs(wq).reshape(6, -1).max(1) == 127).all()
    err = np.abs(wq * scale.reshape(-1, 1, 1, 1) - w)
    assert (err <= scale.reshape(-1, 1, 1, 1) / 2 + 1e-7).all()
    zero = quantize_weights(np.zeros((2, 1, 1, 1), np.float32))
    assert (zero[1] == 1.0).all() and not zero[0].any()


def test_int32_bias_saturates() -> None:
    q = quantize_bias(np.array([1e30, -1e30, 1.0], np.float32), 1e-3, np.array([1e-3] * 3))
    assert q.dtype == np.int32 and q[0] == np.iinfo(np.int32).max and q[2] == 1_000_000


def _one_node(
    op: str, inputs: dict[str, np.ndarray], out_type: int, **attrs: object
) -> onnx.ModelProto:
    x = inputs.pop("x")
    node = helper.make_node(op, ["x", *inputs], ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        op,
        [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)],
        [helper.make_tensor_value_info("y", out_type, None)],
        [numpy_helper.from_array(v, k) for k, v in inputs.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("zp_dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("per_axis", [False, True])
def test_quantize_dequantize_match_onnxruntime(zp_dtype: type, per_axis: bool) -> None:
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 3, 4, 4)) * 3).astype(np.float32)
    x[0, 0, 0, :2] = [0.5, 1.5]  # ties: round half to even
    scale = np.array([0.05, 0.1, 0.02], np.float32) if per_axis else np.float32(0.05)
    zp = (
        (np.array([0, 3, -2]) if per_axis else np.array(4)).astype(zp_dtype)
        if zp_dtype == np.int8
        else (np.array([128, 120, 130]) if per_axis else np.array(128)).astype(zp_dtype)
    )
    otype = helper.np_dtype_to_tensor_dtype(np.dtype(zp_dtype))
    qm = _one_node("QuantizeLinear", {"x": x, "s": scale, "z": zp}, otype, axis=1)
    want_q = ort.InferenceSession(qm.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(run_onnx(qm, {"x": x})[0], want_q)
    np.testing.assert_array_equal(quantize_linear(x, scale, zp, axis=1), want_q)
    dm = _one_node(
        "DequantizeLinear", {"x": want_q, "s": scale, "z": zp}, TensorProto.FLOAT, axis=1
    )
    want_d = ort.InferenceSession(dm.SerializeToString()).run(None, {"x": want_q})[0]
    np.testing.assert_array_equal(dequantize_linear(want_q, scale, zp, axis=1), want_d)


@pytest.mark.parametrize("group", [1, 2])
def test_chunked_and_wide_accumulation_is_bit_exact(group: int) -> None:
    # fan-in 256*9 (group 1: float32 chunks) and 128*9 (group 2: float64) with extreme values
    rng = np.random.default_rng(7)
    x = rng.choice(np.array([-128, 127, -127, 126], np.int8), (1, 256, 5, 5))
    w = rng.choice(np.array([-127, 127, 126], np.int8), (4, 256 // group, 3, 3))
    got = int8_conv_accumulate(x, w, pads=[1, 1, 1, 1], group=group)
    want = brute_force_int8_conv(x, w, None, 1, 1, group)
    np.testing.assert_array_equal(got, want)


def test_qgemm_is_the_integer_matmul() -> None:
    from edge_infer.engine.ops.quantize import int8_matmul_accumulate, qgemm

    rng = np.random.default_rng(8)
    xq = rng.integers(-128, 128, (3, 2500)).astype(np.int8)  # K > 1024: chunked float32
    wq = rng.integers(-127, 128, (5, 2500)).astype(np.int8)
    want = xq.astype(np.int64) @ wq.astype(np.int64).T
    np.testing.assert_array_equal(int8_matmul_accumulate(xq, wq), want)
    x = rng.standard_normal((2, 3, 8)).astype(np.float32)
    w = rng.standard_normal((4, 8)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    x_scale = float(np.abs(x).max() / 127)
    wq8, w_scale = quantize_weights(w)
    bq = quantize_bias(b, x_scale, w_scale)
    y = qgemm(x, wq8, w_scale, bq, x_scale=x_scale)
    xi = quantize_activation(x, x_scale).reshape(-1, 8).astype(np.int64)
    acc = xi @ wq8.astype(np.int64).T + bq
    np.testing.assert_array_equal(
        y, (acc * (x_scale * w_scale.astype(np.float64))).astype(np.float32).reshape(2, 3, 4)
    )
