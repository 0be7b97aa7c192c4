"""BuildOptions: validated when constructed; build() takes options= or keywords, not both."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edge_infer.engine import BuildOptions, build
from edge_infer.engine.network import Network
from edge_infer.errors import BuildError


def tiny() -> Network:
    net = Network("tiny", seed=0)
    x = net.add_input("x", ("N", 3, 8, 8))
    net.mark_output(net.add_activation(net.add_convolution(x, 4, 3, padding=1), "relu"), "y")
    return net


def test_defaults_and_normalization() -> None:
    opts = BuildOptions(
        precision="FP16", layer_precision="conv_0:INT8, head:fp32", shapes={"x": [2, 3, 8, 8]}
    )
    assert opts.precision == "fp16" and opts.int8_fallback == "fp32"
    assert opts.layer_precision == {"conv_0": "int8", "head": "fp32"}
    assert opts.shapes == {"x": (2, 3, 8, 8)}
    assert opts.needs_calibration and not BuildOptions().needs_calibration
    assert BuildOptions().record()["backend_options"] == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "int4"}, "precision must be one of fp32, fp16, int8"),
        ({"int8_fallback": "int8"}, "int8_fallback must be fp32 or fp16"),
        ({"layer_precision": {"a": "bf16"}}, "layer_precision"),
        ({"layer_precision": "a"}, "NAME:PREC"),
        ({"shapes": {"x": (1, 3, 0, 8)}}, "every dimension must be ≥ 1"),
        ({"shapes": {"x": "1x3"}}, "sequence of integers"),
        ({"shapes": [1, 3, 8, 8]}, "must map input names to shapes"),
        ({"min_shapes": {"x": (1, 3, 8, 8)}}, "together"),
        (
            {
                "shapes": {"x": (1, 3, 8, 8)},
                "min_shapes": {"x": (1, 3, 8, 8)},
                "opt_shapes": {"x": (2, 3, 8, 8)},
                "max_shapes": {"x": (4, 3, 8, 8)},
            },
            "not both",
        ),
        (
            {
                "min_shapes": {"x": (4, 3, 8, 8)},
                "opt_shapes": {"x": (2, 3, 8, 8)},
                "max_shapes": {"x": (8, 3, 8, 8)},
            },
            "min ≤ opt ≤ max",
        ),
        (
            {
                "min_shapes": {"x": (1, 3, 8, 8)},
                "opt_shapes": {"x": (2, 3, 8, 8)},
                "max_shapes": {"x": (4, 3, 16, 16)},
            },
            "only the batch dimension",
        ),
        (
            {
                "min_shapes": {"x": (1, 3, 8, 8)},
                "opt_shapes": {"x": (2, 3, 8, 8)},
                "max_shapes": {"y": (4, 3, 8, 8)},
            },
            "same inputs",
        ),
        ({"extra": {"tactics": ["gemm"]}}, "unknown extra build options"),
        ({"calibration": {"scales": 1}}, "must be a CalibrationCache"),
        ({"backend_options": [("threads", 2)]}, "backend_options must be a mapping"),
        ({"backend": ""}, "backend must be a backend name"),
    ],
)
def test_invalid_options_fail_when_made(kwargs: dict, message: str) -> None:
    with pytest.raises(BuildError, match=message):
        BuildOptions(**kwargs)


def test_replace_validates_again_and_options_are_frozen() -> None:
    opts = BuildOptions(precision="fp16")
    assert opts.replace(tune=False).precision == "fp16"
    with pytest.raises(BuildError, match="precision must be"):
        opts.replace(precision="fp8")
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.precision = "int8"  # type: ignore[misc]


def test_build_refuses_options_together_with_keywords() -> None:
    opts = BuildOptions(shapes={"x": (1, 3, 8, 8)}, tune=False)
    with pytest.raises(BuildError, match="options= or keywords, not both.*shapes"):
        build(tiny(), options=opts, shapes={"x": (2, 3, 8, 8)})
    with pytest.raises(BuildError, match="must be a BuildOptions"):
        build(tiny(), options={"tune": False})  # type: ignore[arg-type]


def test_keywords_and_options_build_the_same_engine() -> None:
    a = build(tiny(), shapes={"x": (2, 3, 8, 8)}, tune=False)
    b = build(tiny(), options=BuildOptions(shapes={"x": (2, 3, 8, 8)}, tune=False))
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    ya = a.create_context().execute({"x": x})["y"]
    yb = b.create_context().execute({"x": x})["y"]
    np.testing.assert_array_equal(ya, yb)
    assert a.build_record["options"] == b.build_record["options"]


def test_unknown_backend_option_fails_before_any_work() -> None:
    from edge_infer.errors import BackendError

    with pytest.raises(BackendError, match="unknown CPU backend options"):
        build(tiny(), options=BuildOptions(backend_options={"streams": 2}))
