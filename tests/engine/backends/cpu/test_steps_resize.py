"""The Resize step (nearest upsampling by integer factors, the YOLO neck) against the reference
op: native kernels (float32, float16 and int8 storage) and the numpy path (no C compiler:
one strided copy per output phase), into whole buffers and into channel slices of a concat's
buffer. Nearest upsampling only copies values, so outputs are compared bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import edge_infer
from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.steps import STEPS
from edge_infer.engine.ir import Graph, TensorType
from edge_infer.engine.shape_inference import node_attrs, resolve_op

MODES = [  # coordinate_transformation_mode, nearest_mode: the ones the step takes
    ("asymmetric", "floor"),
    ("half_pixel", "round_prefer_floor"),
    ("pytorch_half_pixel", "round_prefer_floor"),
]
SHAPES = [  # input (n, c, h, w), factors (fh, fw)
    ((1, 3, 5, 7), (2, 2)),
    ((2, 4, 3, 9), (4, 2)),
    ((1, 2, 6, 17), (2, 4)),
    ((1, 5, 4, 3), (1, 1)),
    ((1, 2, 3, 4), (6, 4)),  # more phases than the per-phase copies take
    ((1, 3, 4, 5), (3, 2)),  # odd: asymmetric only (half-pixel modes pick other pixels)
]
CASES = [
    (shape, factors, mode)
    for shape, factors in SHAPES
    for mode in MODES
    if mode[0] == "asymmetric" or not (factors[0] % 2 or factors[1] % 2) or factors == (1, 1)
]


def _use_native(monkeypatch: pytest.MonkeyPatch, on: bool) -> None:
    if on and not native.available():
        pytest.skip("no C compiler on this machine")
    if not on:
        monkeypatch.setattr(native, "library", lambda: None)


def _resize(x: np.ndarray, factors: tuple[int, int], mode: tuple[str, str]) -> tuple:
    graph = Graph()
    xv = graph.add_input("x", TensorType(x.shape, x.dtype))
    scales = graph.add_constant("scales", np.array([1, 1, *factors], np.float32))
    attrs = {
        "mode": "nearest",
        "coordinate_transformation_mode": mode[0],
        "nearest_mode": mode[1],
    }
    node = graph.add_node("Resize", [xv, None, scales], 1, attrs, name="up")
    op = resolve_op(graph, node)
    want = op.kernel(x, None, scales.const, None, **node_attrs(op, node))
    return node, [x, None, scales.const], np.asarray(want)


def _input(shape: tuple[int, ...], dtype: type, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype is np.int8:
        return rng.integers(-128, 128, shape, dtype=np.int8)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("native_on", [True, False], ids=["native", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int8], ids=["f32", "f16", "s8"])
@pytest.mark.parametrize(("shape", "factors", "mode"), CASES)
@pytest.mark.parametrize("into", ["buffer", "concat_slice"])
def test_resize_step_is_the_reference(
    monkeypatch, native_on, dtype, mode, shape, factors, into
) -> None:
    _use_native(monkeypatch, native_on)
    x = _input(shape, dtype, seed=sum(shape) + factors[0])
    node, ins, want = _resize(x, factors, mode)
    n, c = want.shape[:2]
    sentinel = np.array(7, dtype)
    if into == "buffer":
        memory = np.full(want.shape, sentinel, dtype)
        out = memory
    else:  # channels [2, 2 + c) of a (n, c + 5, ...) concat buffer
        memory = np.full((n, c + 5, *want.shape[2:]), sentinel, dtype)
        out = memory[:, 2 : 2 + c]
    run = STEPS["Resize"](node, ins, [out], ScratchPool())
    assert run is not None, "the step declined a nearest upsampling it takes"
    kernel = getattr(run, "name", None)
    if native_on:
        assert kernel == ("upsample_nearest_s8_f32" if dtype is np.int8 else
                          "upsample_nearest_f32")  # fmt: skip
    else:
        assert kernel is None
    run()
    np.testing.assert_array_equal(out, want)
    if into == "concat_slice":  # nothing written outside the slice
        assert (memory[:, :2] == sentinel).all() and (memory[:, 2 + c :] == sentinel).all()
    x += np.ones((), dtype)  # the step reads its input at run time, not at bind
    run()
    np.testing.assert_array_equal(out, _resize(x, factors, mode)[2])


@pytest.mark.parametrize(
    ("mode", "factors", "resize_mode"),
    [
        (("half_pixel", "round_prefer_floor"), (3, 3), "nearest"),
        (("asymmetric", "round_prefer_ceil"), (2, 2), "nearest"),
        (("asymmetric", "floor"), (2, 2), "linear"),
    ],
)
def test_resize_step_declines_other_pixels(mode, factors, resize_mode) -> None:
    x = _input((1, 2, 4, 4), np.float32, seed=0)
    node, ins, want = _resize(x, factors, mode)
    node.attrs["mode"] = resize_mode
    assert STEPS["Resize"](node, ins, [np.zeros_like(want)], ScratchPool()) is None


def _neck() -> bytes:
    graph = helper.make_graph(
        [
            helper.make_node(
                "Resize",
                ["x", "", "scales"],
                ["up"],
                mode="nearest",
                coordinate_transformation_mode="asymmetric",
                nearest_mode="floor",
            ),
            helper.make_node("Concat", ["up", "y"], ["cat"], axis=1),
        ],
        "neck",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 5, 6]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 10, 12]),
        ],
        [helper.make_tensor_value_info("cat", TensorProto.FLOAT, None)],
        [helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize("native_on", [True, False], ids=["native", "numpy"])
def test_engine_binds_the_resize_step(monkeypatch, native_on) -> None:
    """The engine runs the step (native kernel or the numpy copies), not the reference op."""
    _use_native(monkeypatch, native_on)
    bound: list[object] = []
    inner = STEPS["Resize"]

    def factory(node, ins, outs, scratch):
        run = inner(node, ins, outs, scratch)
        bound.append(run)
        return run

    monkeypatch.setitem(STEPS, "Resize", factory)
    rng = np.random.default_rng(3)
    feeds = {
        "x": rng.standard_normal((1, 8, 5, 6)).astype(np.float32),
        "y": rng.standard_normal((1, 3, 10, 12)).astype(np.float32),
    }
    got = edge_infer.build(_neck(), tune=False).create_context().execute(feeds)["cat"]
    assert bound and all(run is not None for run in bound)
    up = np.repeat(np.repeat(feeds["x"], 2, 2), 2, 3)
    np.testing.assert_array_equal(got, np.concatenate([up, feeds["y"]], axis=1))
