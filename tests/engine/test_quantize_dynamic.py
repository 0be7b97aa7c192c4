"""Models quantized by ``onnxruntime.quantization.quantize_dynamic`` from the zoo's CRNN build
and match onnxruntime's own output of the quantized model.

Every quantized Conv becomes DynamicQuantizeLinear → ConvInteger → Cast → Mul (→ Add, Relu);
the classifier MatMul a MatMulInteger. The integer layers are bit-exact with onnxruntime, and
so is every float op of the conv stack (Mul, Add, Relu, MaxPool), so:

- **Conv quantized**: the features entering the LSTMs are *identical* to onnxruntime's, and the
  logits match within the FP32 criterion (``max |ours - ort| ≤ 1e-4 · max |ort|``).
- **Conv and MatMul quantized**: the classifier's DynamicQuantizeLinear reads the float LSTM
  output, which differs from onnxruntime's by an ulp or so (onnxruntime evaluates sigmoid and
  tanh with its own approximations). Where such a value sits on a rounding boundary of the
  uint8 grid it lands one step away, and the logit moves by that step times a weight. The
  test therefore requires ≥ 99 % of the logits within 1e-4 of the scale and every logit within
  three such steps (``3 · (2/255) · max |W|``: LSTM outputs lie in (-1, 1), a range ≤ 2).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

import edge_infer
from edge_infer.zoo import build_model

FP32_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("quantize_dynamic") / "crnn.onnx"
    onnx.save(build_model("crnn", batch=None, width=None, seed=3), path)
    return path


def _quantize(source: Path, op_types: list[str]) -> Path:
    target = source.with_name(f"crnn.{'-'.join(op_types)}.int8.onnx")
    if not target.exists():
        # LSTM stays float: quantizing it would write com.microsoft::DynamicQuantizeLSTM, an
        # onnxruntime contrib op, not a standard one
        quantize_dynamic(
            source, target, op_types_to_quantize=op_types, weight_type=QuantType.QUInt8
        )
    return target


def _image(batch: int, width: int) -> np.ndarray:
    return np.random.default_rng(width).standard_normal((batch, 3, 32, width)).astype(np.float32)


def _run_both(model: Path, x: np.ndarray, extra: str | None = None) -> tuple[list, list]:
    proto = onnx.load(model)
    if extra is not None:  # expose an intermediate value as a second output of both
        proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(extra))
    engine = edge_infer.build(proto, shapes={"image": x.shape}, tune=False)
    result = engine.create_context().execute({"image": x})
    names = [o.name for o in proto.graph.output]
    ours = [result[n] for n in names]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return ours, session.run(names, {"image": x})


@pytest.mark.parametrize(("batch", "width"), [(1, 96), (4, 160)])
def test_conv_quantized_model_matches_onnxruntime(source: Path, batch: int, width: int) -> None:
    model = _quantize(source, ["Conv"])
    ops = Counter(n.op_type for n in onnx.load(model).graph.node)
    assert ops["DynamicQuantizeLinear"] == 7 and ops["ConvInteger"] == 7
    lstm_input = next(n.input[0] for n in onnx.load(model).graph.node if n.op_type == "LSTM")
    (logits, features), (want_logits, want_features) = _run_both(
        model, _image(batch, width), extra=lstm_input
    )
    np.testing.assert_array_equal(features, want_features, "conv stack vs onnxruntime")
    scale = float(np.abs(want_logits).max())
    error = float(np.abs(logits - want_logits).max())
    assert error <= FP32_TOLERANCE * scale, f"max abs error {error:.3g}, scale {scale:.3g}"


@pytest.mark.parametrize(("batch", "width"), [(1, 96), (4, 160)])
def test_conv_and_matmul_quantized_model_matches_onnxruntime(
    source: Path, batch: int, width: int
) -> None:
    model = _quantize(source, ["Conv", "MatMul"])
    proto = onnx.load(model)
    ops = Counter(n.op_type for n in proto.graph.node)
    assert ops["ConvInteger"] == 7 and ops["MatMulInteger"] == 1 and ops["LSTM"] == 2
    (logits,), (expected,) = _run_both(model, _image(batch, width))
    matmul = next(n for n in proto.graph.node if n.op_type == "MatMulInteger")
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    w_q, w_zp = inits[matmul.input[1]].astype(np.float64), inits[matmul.input[3]]
    w_scale = inits[matmul.input[1].replace("_quantized", "_scale")]  # "fc.weight_scale"
    step_bound = 3 * (2.0 / 255.0) * float(np.abs((w_q - w_zp) * w_scale).max())
    scale = float(np.abs(expected).max())
    error = np.abs(logits - expected)
    assert float(error.max()) <= step_bound, (float(error.max()), step_bound)
    assert float((error <= FP32_TOLERANCE * scale).mean()) >= 0.99
