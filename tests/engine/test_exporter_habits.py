"""Models written the way other exporters write them, built and matched against onnxruntime.

Built with ``onnx.helper`` at the opsets those exporters used (torch and paddle2onnx are not
installed here; the graphs are what their exports contain):

- **PyTorch 1.x** (opset 11–12): ``nn.LSTM`` called without ``(h0, c0)`` exports its zero
  states as ``Shape → Gather → Unsqueeze → Concat → ConstantOfShape`` of the input's batch,
  and a unidirectional LSTM's ``Y`` goes through ``Squeeze(axis 1)``; YOLOv5's Focus stem is
  four strided ``Slice`` (step 2, ``ends = INT64_MAX``) and a ``Concat``; ``nn.Upsample``
  exports ``Resize`` with ``scales`` (and an empty ``roi`` at opset 11).
- **Paddle2ONNX**: dynamic dims written as ``dim_value: -1`` (and ``0``, which onnxruntime
  reads as a fixed 0 and edge_infer as unknown) on inputs, outputs and ``value_info``;
  ``hard_swish`` as ``HardSigmoid(alpha=1/6) * x`` below opset 14 and ``HardSwish`` from 14;
  ``HardSigmoid`` with Paddle's slope 0.2; ``ConvTranspose`` upsampling (DB text detectors).

Criterion (FP32): ``max |ours - ort| ≤ 1e-4 · max |ort|``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import edge_infer
from edge_infer.commands.inspect import model_report
from edge_infer.engine.onnx_import import import_model
from edge_infer.errors import BuildError

RNG = np.random.default_rng(12)
INT64_MAX = 9223372036854775807


def weights(*shape: int, scale: float | None = None) -> np.ndarray:
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    std = scale if scale is not None else np.sqrt(1.0 / fan_in)
    return (RNG.standard_normal(shape) * std).astype(np.float32)


def make_model(
    nodes: list,
    inputs: list,
    outputs: list,
    inits: dict[str, np.ndarray],
    opset: int,
    value_info: list | None = None,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "habit",
        inputs,
        outputs,
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
        value_info=value_info or [],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7 if opset <= 12 else 8
    return model


def float_info(name: str, dims: list) -> onnx.ValueInfoProto:
    """A float tensor declaration; ints < 1 are written as ``dim_value`` (-1, 0) exactly as
    Paddle2ONNX writes them (helper.make_tensor_value_info would drop them)."""
    info = helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
    shape = info.type.tensor_type.shape
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, str):
            dim.dim_param = d
        else:
            dim.dim_value = d
    return info


def check(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray], oracle: onnx.ModelProto | None = None
) -> None:
    """Build ``model`` at the feeds' shapes and compare every output with onnxruntime running
    ``oracle`` (default: the same model)."""
    onnx.checker.check_model(model)
    engine = edge_infer.build(model, shapes={k: v.shape for k, v in feeds.items()}, tune=False)
    ours = engine.create_context().execute(feeds)
    oracle = oracle or model
    session = ort.InferenceSession(oracle.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in model.graph.output]
    for name, expected in zip(names, session.run(names, feeds), strict=True):
        got = ours[name]
        assert got.shape == expected.shape, name
        scale = max(float(np.abs(expected).max()), 1e-30)
        error = float(np.abs(got - expected).max())
        assert error <= 1e-4 * scale, f"{name}: max abs error {error:.3g}, scale {scale:.3g}"


# -- PyTorch 1.x ---------------------------------------------------------------------------------


def torch_lstm_model(
    opset: int, bidirectional: bool, hidden: int = 16, features: int = 8
) -> onnx.ModelProto:
    """``y, _ = nn.LSTM(features, hidden, bidirectional=...)(x)`` on a time-major input."""
    d = 2 if bidirectional else 1
    inits = {
        "W": weights(d, 4 * hidden, features),
        "R": weights(d, 4 * hidden, hidden),
        "B": weights(d, 8 * hidden, scale=0.1),
        "one": np.array(1, np.int64),
        "dirs": np.array([d], np.int64),
        "hid": np.array([hidden], np.int64),
    }
    unsq = (
        helper.make_node("Unsqueeze", ["batch"], ["batch1"], axes=[0])
        if opset < 13
        else helper.make_node("Unsqueeze", ["batch", "axes0"], ["batch1"])
    )
    if opset >= 13:
        inits["axes0"] = np.array([0], np.int64)
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["batch"], axis=0),
        unsq,
        helper.make_node("Concat", ["dirs", "batch1", "hid"], ["state_shape"], axis=0),
        helper.make_node(
            "ConstantOfShape",
            ["state_shape"],
            ["h0"],
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]),
        ),
        helper.make_node(
            "ConstantOfShape",
            ["state_shape"],
            ["c0"],
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]),
        ),
        helper.make_node(
            "LSTM",
            ["x", "W", "R", "B", "", "h0", "c0"],
            ["Y", "Y_h", "Y_c"],
            hidden_size=hidden,
            direction="bidirectional" if bidirectional else "forward",
        ),
    ]
    if bidirectional:  # [T, 2, B, H] -> [T, B, 2H]
        inits["shape3"] = np.array([0, 0, -1], np.int64)
        nodes += [
            helper.make_node("Transpose", ["Y"], ["Yt"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", ["Yt", "shape3"], ["y"]),
        ]
    else:  # [T, 1, B, H] -> [T, B, H]
        nodes.append(
            helper.make_node("Squeeze", ["Y"], ["y"], axes=[1])
            if opset < 13
            else helper.make_node("Squeeze", ["Y", "one_axis"], ["y"])
        )
        if opset >= 13:
            inits["one_axis"] = np.array([1], np.int64)
    return make_model(
        nodes,
        [float_info("x", ["seq", "batch", features])],
        [float_info("y", ["seq", "batch", d * hidden]), float_info("Y_h", [d, "batch", hidden])],
        inits,
        opset,
    )


@pytest.mark.parametrize("opset", [11, 12])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_torch_lstm_with_shape_built_zero_states(opset: int, bidirectional: bool) -> None:
    model = torch_lstm_model(opset, bidirectional)
    for batch in (1, 3):
        x = RNG.standard_normal((7, batch, 8)).astype(np.float32)
        check(model, {"x": x})


@pytest.mark.parametrize("opset", [11, 12])
def test_focus_stem_strided_slices(opset: int) -> None:
    """YOLOv5's Focus: space-to-depth by four step-2 Slices, Concat, then a Conv."""
    inits = {
        "w": weights(16, 12, 3, 3),
        "b": weights(16, scale=0.1),
        "axes": np.array([2, 3], np.int64),
        "ends": np.array([INT64_MAX] * 2, np.int64),
        "steps": np.array([2, 2], np.int64),
    }
    nodes, pieces = [], []
    for k, (r, c) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
        inits[f"s{k}"] = np.array([r, c], np.int64)
        nodes.append(helper.make_node("Slice", ["x", f"s{k}", "ends", "axes", "steps"], [f"p{k}"]))
        pieces.append(f"p{k}")
    nodes += [
        helper.make_node("Concat", pieces, ["cat"], axis=1),
        helper.make_node(
            "Conv", ["cat", "w", "b"], ["conv"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Sigmoid", ["conv"], ["sig"]),
        helper.make_node("Mul", ["conv", "sig"], ["y"]),
    ]
    model = make_model(
        nodes,
        [float_info("x", ["batch", 3, "h", "w"])],
        [float_info("y", ["batch", 16, "h2", "w2"])],
        inits,
        opset,
    )
    check(model, {"x": RNG.standard_normal((2, 3, 64, 96)).astype(np.float32)})


@pytest.mark.parametrize("opset", [11, 12])
@pytest.mark.parametrize(
    ("mode", "transform"),
    [("nearest", "asymmetric"), ("linear", "pytorch_half_pixel"), ("linear", "align_corners")],
)
def test_resize_with_scales(opset: int, mode: str, transform: str) -> None:
    """nn.Upsample(scale_factor=2) / F.interpolate: Resize(X, roi, scales) with an empty roi."""
    inits = {
        "roi": np.array([], np.float32),
        "scales": np.array([1, 1, 2, 2], np.float32),
        "w": weights(4, 4, 3, 3),
    }
    extra = {"nearest_mode": "floor"} if mode == "nearest" else {}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node(
            "Resize",
            ["c", "roi", "scales"],
            ["y"],
            mode=mode,
            coordinate_transformation_mode=transform,
            **extra,
        ),
    ]
    model = make_model(
        nodes, [float_info("x", [1, 4, 10, 14])], [float_info("y", [1, 4, 20, 28])], inits, opset
    )
    check(model, {"x": RNG.standard_normal((1, 4, 10, 14)).astype(np.float32)})


# -- Paddle2ONNX ---------------------------------------------------------------------------------


def paddle_model(opset: int, batch_dim: int = -1) -> onnx.ModelProto:
    """conv → hard_swish → ConvTranspose (x2) → HardSigmoid(slope 0.2) with -1 dims."""
    inits = {
        "w": weights(8, 3, 3, 3),
        "b": weights(8, scale=0.1),
        "wt": weights(8, 4, 2, 2, scale=0.3),
        "bt": weights(4, scale=0.1),
    }
    if opset >= 14:
        swish = [helper.make_node("HardSwish", ["c"], ["hs"])]
    else:  # paddle2onnx's hard_swish below opset 14: x * HardSigmoid(x, 1/6, 0.5)
        swish = [
            helper.make_node("HardSigmoid", ["c"], ["hsig"], alpha=1.0 / 6, beta=0.5),
            helper.make_node("Mul", ["c", "hsig"], ["hs"]),
        ]
    nodes = [
        helper.make_node(
            "Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]
        ),
        *swish,
        helper.make_node(
            "ConvTranspose", ["hs", "wt", "bt"], ["up"], kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("HardSigmoid", ["up"], ["y"], alpha=0.2, beta=0.5),
    ]
    value_info = [float_info("c", [batch_dim, 8, -1, -1]), float_info("hs", [-1, 8, 0, 0])]
    return make_model(
        nodes,
        [float_info("x", [batch_dim, 3, -1, -1])],
        [float_info("y", [batch_dim, 4, -1, -1])],
        inits,
        opset,
        value_info,
    )


@pytest.mark.parametrize("opset", [11, 12, 14])
@pytest.mark.parametrize("shape", [(1, 3, 48, 192), (2, 3, 32, 100)])
def test_paddle_minus_one_dims_hardswish_convtranspose(opset: int, shape: tuple[int, ...]) -> None:
    model = paddle_model(opset)
    check(model, {"x": RNG.standard_normal(shape).astype(np.float32)})


def test_zero_dims_are_dynamic_too() -> None:
    """A 0 dim is read as unknown (the engine never runs zero-size tensors, so that is the
    only reading under which the model builds). onnxruntime reads it as a fixed 0 and refuses
    other sizes, so it runs the same graph with -1 there."""
    model = paddle_model(12, batch_dim=0)
    graph = import_model(model)
    assert all(isinstance(d, str) for k, d in enumerate(graph.inputs[0].shape) if k != 1)
    x = RNG.standard_normal((3, 3, 40, 64)).astype(np.float32)
    oracle = onnx.ModelProto()
    oracle.CopyFrom(model)
    for info in (*oracle.graph.input, *oracle.graph.output, *oracle.graph.value_info):
        for dim in info.type.tensor_type.shape.dim:
            if dim.HasField("dim_value") and dim.dim_value == 0:
                dim.dim_value = -1
    check(model, {"x": x}, oracle=oracle)


def test_minus_one_dims_need_shapes_and_inspect_shows_them(tmp_path: Path) -> None:
    path = tmp_path / "paddle.onnx"
    onnx.save(paddle_model(12), path)
    with pytest.raises(BuildError, match=r"--shapes x:1x3xD2xD3"):
        edge_infer.build(str(path))
    report = model_report(str(path))
    assert report["inputs"] == [{"name": "x", "shape": ["?", 3, "?", "?"], "dynamic": [0, 2, 3]}]
    assert report["outputs"][0]["dynamic"] == [0, 2, 3]
    cli = [sys.executable, "-m", "edge_infer", "inspect", str(path)]
    text = subprocess.run(cli, capture_output=True, text=True, check=True).stdout
    assert "input  x: [?x3x?x?]  (dynamic dims [0, 2, 3]: bind them with --shapes)" in text
    as_json = subprocess.run([*cli, "--json"], capture_output=True, text=True, check=True)
    assert json.loads(as_json.stdout)["inputs"][0]["dynamic"] == [0, 2, 3]
