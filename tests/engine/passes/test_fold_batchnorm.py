"""FoldBatchNorm: BN and constant per-channel affine ops disappear into conv weights."""

from __future__ import annotations

import numpy as np
from onnx import helper

from edge_infer.engine.passes.fold_batchnorm import FoldBatchNorm
from tests.engine.passes.helpers import build, check_pass, ops, rand


def _bn_inits(c: int, seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "gamma": rng.uniform(0.5, 1.5, c).astype(np.float32),
        "beta": rng.standard_normal(c).astype(np.float32),
        "mean": rng.standard_normal(c).astype(np.float32),
        "var": rng.uniform(0.5, 2.0, c).astype(np.float32),
    }


def _bn(x: str, y: str, name: str = "bn") -> object:
    return helper.make_node(
        "BatchNormalization", [x, "gamma", "beta", "mean", "var"], [y], epsilon=1e-3, name=name
    )


def test_conv_bn_folds_into_weights() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        _bn("c", "n"),
        helper.make_node("Relu", ["n"], ["y"], name="relu"),
    ]
    inits = {"w": rand(4, 3, 3, 3), "b": rand(4, seed=1), **_bn_inits(4)}
    out = check_pass(build(nodes, {"x": (1, 3, 6, 6)}, ["y"], inits), FoldBatchNorm())
    assert ops(out) == ["Conv", "Relu"]
    conv = out.node("conv")
    assert conv.meta["members"] == ["conv", "bn"]
    assert conv.inputs[1].dtype == np.float32 and conv.inputs[2].dtype == np.float32


def test_conv_without_bias_then_mul_add_sub_constants() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        _bn("c", "n"),
        helper.make_node("Mul", ["scale", "n"], ["m"], name="mul"),
        helper.make_node("Add", ["m", "shift"], ["a"], name="add"),
        helper.make_node("Sub", ["a", "half"], ["s"], name="sub"),
        helper.make_node("Div", ["s", "two"], ["y"], name="div"),
    ]
    inits = {
        "w": rand(4, 3, 1, 1),
        "scale": rand(4, 1, 1, seed=5),
        "shift": rand(1, 4, 1, 1),
        "half": np.float32(0.5),
        "two": np.array([2.0], np.float32),
        **_bn_inits(4),
    }
    out = check_pass(build(nodes, {"x": (2, 3, 5, 5)}, ["y"], inits), FoldBatchNorm())
    assert ops(out) == ["Conv"]
    assert out.node("conv").meta["members"] == ["conv", "bn", "mul", "add", "sub", "div"]
    assert out.output_names() == ["y"]


def test_conv_transpose_grouped() -> None:
    nodes = [
        helper.make_node(
            "ConvTranspose", ["x", "w", "b"], ["c"], group=2, strides=[2, 2], name="deconv"
        ),
        _bn("c", "y"),
    ]
    inits = {"w": rand(4, 3, 2, 2), "b": rand(6, seed=2), **_bn_inits(6)}
    out = check_pass(build(nodes, {"x": (1, 4, 3, 3)}, ["y"], inits), FoldBatchNorm())
    assert ops(out) == ["ConvTranspose"]


def test_not_folded_when_conv_output_is_shared_or_not_per_channel() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        _bn("c", "y"),
        helper.make_node("Relu", ["c"], ["z"], name="relu"),  # second consumer of c
        helper.make_node("Conv", ["x", "w"], ["c2"], name="conv2"),
        helper.make_node("Mul", ["c2", "spatial"], ["u"], name="mul"),  # varies over space
        helper.make_node("Conv", ["x", "w"], ["c3"], name="conv3"),  # c3 is a graph output
        helper.make_node("Add", ["c3", "spatial"], ["v"], name="add"),
    ]
    inits = {"w": rand(4, 3, 1, 1), "spatial": rand(1, 1, 5, 5), **_bn_inits(4)}
    g = build(nodes, {"x": (1, 3, 5, 5)}, ["y", "z", "u", "c3", "v"], inits)
    check_pass(g, FoldBatchNorm(), modified=False)
    assert ops(g).count("Conv") == 3
