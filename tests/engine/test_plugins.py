"""Custom layers: a registered plugin is resolved by the importer and runs in engines."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import edge_infer
from edge_infer.engine import plugins
from edge_infer.engine.ops.registry import same_as_input
from edge_infer.errors import PluginError, UnsupportedOpError

DOMAIN = "com.example"


def swish_beta(x: np.ndarray, beta: float = 1.0) -> np.ndarray:
    return (x / (1.0 + np.exp(-beta * x))).astype(x.dtype)


def model():
    node = helper.make_node("SwishBeta", ["x"], ["y"], domain=DOMAIN, beta=2.0, name="swish")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)]
    )


@pytest.fixture
def registered():
    plugins.register_plugin(
        "SwishBeta", domain=DOMAIN, infer=same_as_input(0), kernels={"cpu": swish_beta}
    )
    yield
    plugins.unregister_plugin("SwishBeta", domain=DOMAIN)


def test_unknown_custom_op_is_reported_before_registration() -> None:
    with pytest.raises(UnsupportedOpError, match="com.example::SwishBeta"):
        edge_infer.build(model())


def test_plugin_runs_in_an_engine(registered, tmp_path) -> None:
    engine = edge_infer.build(model(), tmp_path / "p.engine")
    x = np.linspace(-3, 3, 10, dtype=np.float32).reshape(2, 5)
    y = edge_infer.Engine.load(tmp_path / "p.engine").create_context().execute({"x": x})["y"]
    np.testing.assert_allclose(y, x / (1 + np.exp(-2 * x)), rtol=1e-6)
    assert engine.graph(engine.profile.opt_batch).nodes[0].domain == DOMAIN
    assert plugins.plugin_kernel(DOMAIN, "SwishBeta", "cpu") is swish_beta


def test_bad_registrations_are_refused(registered) -> None:
    with pytest.raises(PluginError, match="registered twice"):
        plugins.register_plugin(
            "SwishBeta", domain=DOMAIN, infer=same_as_input(0), kernels={"cpu": swish_beta}
        )
    with pytest.raises(PluginError, match="own domain"):
        plugins.register_plugin(
            "Relu", domain="", infer=same_as_input(0), kernels={"cpu": swish_beta}
        )
    with pytest.raises(PluginError, match="'cpu' kernel"):
        plugins.register_plugin(
            "Other", domain=DOMAIN, infer=same_as_input(0), kernels={"cuda": swish_beta}
        )
    with pytest.raises(PluginError, match="no plugin"):
        plugins.unregister_plugin("Missing", domain=DOMAIN)
