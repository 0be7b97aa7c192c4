"""QConv layers are tunable: their spec, the "qconv" tactic table, the reference default."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS
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


def test_qconv_layers_have_a_spec_and_the_reference_default(int8_engines) -> None:
    untuned, tuned = (e.graph(1) for e in int8_engines)
    qconvs = [n for n in untuned.nodes if n.op_type == "QConv"]
    assert len(qconvs) == 3
    for node in qconvs:
        kind, spec = layer_kind(node)  # type: ignore[misc]
        assert kind == "qconv"
        assert spec.weight.dtype == np.int8 and spec.x_shape[0] == 1
        assert spec.signature().startswith("qconv x[1, ")
        assert CPU_TACTICS["qconv"][0].name == "qconv_reference"
        assert node.meta["tactic"] == "qconv_reference"
    assert qconvs[0].inputs[0].dtype == np.float32  # the first reads the engine input
    assert qconvs[1].inputs[0].dtype == np.int8
    for node in tuned.nodes:
        if node.op_type == "QConv":
            assert node.meta["tactic"] in {t.name for t in CPU_TACTICS["qconv"]}
            assert not node.meta.get("rejected_tactics")


def test_tuned_int8_engine_equals_the_reference(int8_engines) -> None:
    x = frames(1, seed=3)[0][None]
    untuned, tuned = (e.create_context().execute({"x": x})["y"] for e in int8_engines)
    np.testing.assert_array_equal(untuned, tuned)
