"""ONNX import: valid models become IR; bad ones get a clear error before anything is built."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_infer.engine.onnx_import import import_model
from edge_infer.engine.reference import run_onnx
from edge_infer.errors import ExternalDataError, ModelLoadError, UnsupportedOpError
from tests.engine.conftest import small_model, small_model_expected


def test_import_builds_ir_with_symbolic_batch(model_file) -> None:
    g = import_model(model_file)
    g.verify()
    assert [v.name for v in g.inputs] == ["x"]
    assert g.inputs[0].shape == ("N", 3, 8, 8)
    assert g.output_names() == ["y"]
    assert [n.op_type for n in g.nodes][:3] == ["Conv", "Abs", "Add"]
    assert len(g.meta["model_sha256"]) == 64


def test_shape_subgraph_folds_and_matches_onnxruntime() -> None:
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    (y,) = run_onnx(small_model(), {"x": x})
    np.testing.assert_allclose(y, small_model_expected(x), rtol=1e-5, atol=1e-5)


def test_not_an_onnx_file(tmp_path) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"this is a text file, not a protobuf\n" * 10)
    with pytest.raises(ModelLoadError, match="not a valid ONNX model|not an ONNX model"):
        import_model(path)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="no such model file"):
        import_model(tmp_path / "nope.onnx")


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_truncated_onnx_file(tmp_path, keep: float) -> None:
    data = small_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelLoadError):
        import_model(path)


def test_unsupported_ops_are_all_listed_at_once() -> None:
    nodes = [
        helper.make_node("Abs", ["x"], ["a"], name="fine"),
        helper.make_node("NonMaxSuppression", ["a"], ["b"], name="nms_1"),
        helper.make_node("RoiAlign", ["b"], ["c"], name="roi"),
        helper.make_node("MyOp", ["c"], ["y"], domain="com.acme", name="custom"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.acme", 1)]
    )
    with pytest.raises(UnsupportedOpError) as info:
        import_model(model)
    message = str(info.value)
    for text in (
        "3 node(s)",
        "nms_1",
        "NonMaxSuppression",
        "roi",
        "RoiAlign",
        "custom",
        "com.acme::MyOp",
    ):
        assert text in message
    assert [u[0] for u in info.value.unsupported] == ["nms_1", "roi", "custom"]


def _external_model(tmp_path, location: str) -> str:
    model = small_model()
    w = model.graph.initializer[0]
    raw = numpy_helper.to_array(w).tobytes()
    (tmp_path / "weights.bin").write_bytes(raw)
    w.ClearField("float_data")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(raw)))):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    path = tmp_path / "ext.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)


def test_external_data_inside_the_folder_loads(tmp_path) -> None:
    g = import_model(_external_model(tmp_path, "weights.bin"))
    w = g.value("w").const
    assert w.shape == (4, 3, 3, 3)
    np.testing.assert_array_equal(w, numpy_helper.to_array(small_model().graph.initializer[0]))


@pytest.mark.parametrize("location", ["../weights.bin", "/etc/passwd", "sub/../../weights.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path, location: str) -> None:
    with pytest.raises(ExternalDataError, match="inside the model's folder"):
        import_model(_external_model(tmp_path, location))


def test_external_data_symlink_is_refused(tmp_path) -> None:
    path = _external_model(tmp_path, "link.bin")
    os.symlink(tmp_path / "weights.bin", tmp_path / "link.bin")
    with pytest.raises(ExternalDataError, match="symlinks"):
        import_model(path)


def test_unsupported_opset_is_explained() -> None:
    model = small_model(opset=5)
    with pytest.raises(ModelLoadError, match="opset 5.*version_converter"):
        import_model(model)


def test_undefined_input_is_located() -> None:
    graph = helper.make_graph(
        [helper.make_node("Abs", ["ghost"], ["y"], name="lonely")],
        "g",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ModelLoadError, match="node 'lonely' .*'ghost'"):
        import_model(model)


def test_onnx_checker_agrees_model_is_valid() -> None:
    onnx.checker.check_model(small_model())
