"""QConv layers are tunable: their spec, the "qconv" tactic table, the defaults, whole INT8
engines against the reference op."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS
from edge_infer.engine.backends.cpu.tactics.cpu_qconv import QConvNative, QConvReference
from edge_infer.engine.builder import BuildOptions, build
from edge_infer.engine.calibration import calibrate
from edge_infer.engine.tactics import layer_kind
from tests.engine.precision.conftest import SIZE, conv_net, frames

SHAPES = {"x": (1, 3, SIZE, SIZE)}


@pytest.fixture(scope="module")
def int8_engines():
    model = conv_net()
    cal = calibrate(model, frames(6), calibrator="entropy")
    return [
        build(
            model,
            options=BuildOptions(shapes=SHAPES, tune=tune, precision="int8", calibration=cal.cache),
        )
        for tune in (False, True)
    ]


def test_qconv_layers_have_a_spec_and_a_default(int8_engines) -> None:
    """The default (untuned) is the native kernel where it applies, else the reference."""
    untuned, tuned = (e.graph(1) for e in int8_engines)
    qconvs = [n for n in untuned.nodes if n.op_type == "QConv"]
    assert len(qconvs) == 3
    default = "qconv_native" if native.available() else "qconv_reference"
    for node in qconvs:
        kind, spec = layer_kind(node)  # type: ignore[misc]
        assert kind == "qconv"
        assert spec.weight.dtype == np.int8 and spec.x_shape[0] == 1
        assert spec.signature().startswith("qconv x[1, ")
        assert CPU_TACTICS["qconv"][0].name == "qconv_reference"
        assert node.meta["tactic"] == default
        assert QConvReference.applicable(spec) != QConvNative.applicable(spec)
    assert qconvs[0].inputs[0].dtype == np.float32  # the first reads the engine input
    assert qconvs[1].inputs[0].dtype == np.int8
    for node in tuned.nodes:
        if node.op_type == "QConv":
            assert node.meta["tactic"] in {t.name for t in CPU_TACTICS["qconv"]}
            assert not node.meta.get("rejected_tactics")


def test_tuned_int8_engine_equals_the_reference(int8_engines) -> None:
    """conv_net's last layer has a sigmoid: the native kernel's float32 exp may differ from
    numpy's in the last bit (see test_qconv_native.py)."""
    x = frames(1, seed=3)[0][None]
    untuned, tuned = (e.create_context().execute({"x": x})["y"] for e in int8_engines)
    np.testing.assert_allclose(untuned, tuned, rtol=1e-6, atol=1e-7)


def exact_net(seed: int = 0) -> onnx.ModelProto:
    """x[2,3,20,20] → Conv3x3+Relu → Conv3x3/2+Clip → Conv1x1 + residual → Conv1x1 → y: only
    activations computed without exp, so an INT8 engine is bit-exact whatever its tactics."""
    rng = np.random.default_rng(seed)

    def w(name: str, *shape: int) -> onnx.TensorProto:
        data = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]) if len(shape) > 1 else 4)
        return numpy_helper.from_array(data.astype(np.float32), name)

    inits = [w("w1", 12, 3, 3, 3), w("b1", 12), w("w2", 24, 12, 3, 3), w("b2", 24)]
    inits += [w("w3", 24, 24, 1, 1), w("b3", 24), w("w4", 5, 24, 1, 1), w("b4", 5)]
    inits += [numpy_helper.from_array(np.float32(v), n) for n, v in (("lo", 0), ("hi", 6))]
    node = helper.make_node
    nodes = [
        node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        node("Relu", ["c1"], ["r1"], name="relu1"),
        node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv2"),
        node("Clip", ["c2", "lo", "hi"], ["r2"], name="clip2"),
        node("Conv", ["r2", "w3", "b3"], ["c3"], name="conv3"),
        node("Add", ["c3", "r2"], ["a3"], name="add3"),
        node("Conv", ["a3", "w4", "b4"], ["y"], name="conv4"),
    ]
    graph = helper.make_graph(
        nodes,
        "exact_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 20, 20])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5, 10, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_native_int8_engine_is_bit_exact(caplog) -> None:
    model = exact_net()
    rng = np.random.default_rng(1)
    cal = calibrate(model, [rng.random((3, 20, 20), dtype=np.float32) for _ in range(4)])
    engines = [
        build(
            model,
            options=BuildOptions(
                shapes={"x": (2, 3, 20, 20)}, tune=tune, precision="int8", calibration=cal.cache
            ),
        )
        for tune in (False, True)
    ]
    x = rng.random((2, 3, 20, 20), dtype=np.float32)
    tuned = engines[1].create_context().execute({"x": x})["y"]
    graph = engines[1].graph(2)
    if native.available():
        # native kernels only (the 1x1 layers may take qpointwise_native and, on AVX2, any
        # layer qconv_native_oc, timed against qconv_native)
        tactics = {n.meta["tactic"] for n in graph.nodes if n.op_type == "QConv"}
        native_conv = {"qconv_native", "qconv_native_oc"}
        assert tactics & native_conv and tactics <= native_conv | {"qpointwise_native"}
    with pytest.MonkeyPatch.context() as mp:  # every layer by its reference op
        mp.setattr(native, "available", lambda: False)
        want = engines[0].create_context().execute({"x": x})["y"]
    if native.available():  # the reference context really ran the reference op
        assert "running qconv_reference instead" in caplog.text
    np.testing.assert_array_equal(tuned, want)
