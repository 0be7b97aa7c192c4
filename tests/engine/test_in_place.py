"""In-place layers in the memory plan: an activation, elementwise layer or Softmax writes its
output over an input that dies at it — and only then; the engine's numbers do not change."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from edge_infer.engine import memory
from edge_infer.engine.backends.cpu import native
from edge_infer.engine.builder import BuildOptions, build
from edge_infer.engine.calibration import calibrate
from edge_infer.engine.ir import TensorType
from edge_infer.engine.memory import plan_memory, root_of
from edge_infer.engine.runtime import Engine
from tests.engine.precision.conftest import SIZE, frames

SHAPES = {"x": (1, 3, SIZE, SIZE)}
HW = SIZE * SIZE


def _model(nodes: list, outputs: dict[str, list[int]], weights: dict[str, tuple]) -> bytes:
    rng = np.random.default_rng(3)
    inits = [
        numpy_helper.from_array(
            (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32), name
        )
        for name, shape in weights.items()
    ]
    inits += [
        numpy_helper.from_array(np.array([1, 4, 16, HW], np.int64), "dfl_shape"),
        numpy_helper.from_array(np.float32(0.5), "half"),
        numpy_helper.from_array(np.array([8, 8], np.int64), "halves"),
    ]
    graph = helper.make_graph(
        [helper.make_node(op, ins, outs, name=outs[0], **attrs) for op, ins, outs, attrs in nodes],
        "in_place",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items()],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def dfl_model() -> bytes:
    """A YOLO head's DFL in small: conv → reshape → transpose → Softmax → 1×1 conv, then an
    elementwise chain (Sigmoid, ×0.5) and a last conv."""
    nodes = [
        ("Conv", ["x", "w1", "b1"], ["c1"], {}),
        ("Reshape", ["c1", "dfl_shape"], ["r"], {}),
        ("Transpose", ["r"], ["t"], {"perm": [0, 2, 1, 3]}),
        ("Softmax", ["t"], ["s"], {"axis": 1}),
        ("Conv", ["s", "w2"], ["d"], {}),
        ("Sigmoid", ["d"], ["g"], {}),
        ("Mul", ["g", "half"], ["m"], {}),
        ("Conv", ["m", "w3", "b3"], ["y"], {}),
    ]
    weights = {"w1": (64, 3, 1, 1), "b1": (64,), "w2": (8, 16, 1, 1), "w3": (4, 8, 1, 1),
               "b3": (4,)}  # fmt: skip
    return _model(nodes, {"y": [1, 4, 4, HW]}, weights)


def softmax_model(*, read_later: bool = False, extra_output: bool = False) -> bytes:
    """conv → Softmax → conv; ``read_later``: the Softmax's input is added to its output
    afterwards; ``extra_output``: the Softmax's input is an engine output too."""
    nodes = [("Conv", ["x", "w1", "b1"], ["c"], {}), ("Softmax", ["c"], ["s"], {"axis": 1})]
    last = "s"
    if read_later:
        nodes.append(("Add", ["s", "c"], ["a"], {}))
        last = "a"
    nodes.append(("Conv", [last, "w2"], ["y"], {}))
    outputs = {"y": [1, 2, SIZE, SIZE]} | ({"c": [1, 16, SIZE, SIZE]} if extra_output else {})
    return _model(nodes, outputs, {"w1": (16, 3, 1, 1), "b1": (16,), "w2": (2, 16, 1, 1)})


def _build(model: bytes, **kw: object) -> Engine:
    return build(model, options=BuildOptions(shapes=SHAPES, tune=False, **kw))


def _no_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "IN_PLACE_OPS", frozenset())


def _run(engine: Engine, x: np.ndarray) -> np.ndarray:
    return engine.create_context().execute({"x": x})["y"]


def _op_output(graph, op: str) -> str:
    """The output of the (one) layer that is, or wraps, ``op``."""
    (name,) = [n.outputs[0].name for n in graph.nodes if op in (n.op_type, n.attrs.get("op"))]
    return name


def _assert_live_buffers_apart(graph, plan) -> None:
    """No two buffers whose lifetimes (through views and in-place outputs) meet overlap."""
    life: dict[str, list[int]] = {}
    for step, node in enumerate(graph.nodes):
        for v in [*node.inputs, *node.outputs]:
            if v is not None and v.const is None:
                span = life.setdefault(root_of(v.name, plan.links), [step, step])
                span[0], span[1] = min(span[0], step), max(span[1], step)
    roots = [r for r in plan.offsets if r in life]
    for i, a in enumerate(roots):
        for b in roots[i + 1 :]:
            if life[a][1] < life[b][0] or life[b][1] < life[a][0]:
                continue
            lo, hi = sorted((a, b), key=plan.offsets.get)
            assert plan.offsets[lo] + plan.sizes[lo] <= plan.offsets[hi], (a, b)


@pytest.fixture(scope="module")
def calibrated():
    return calibrate(dfl_model(), frames(4), calibrator="minmax")


@pytest.mark.parametrize("native_on", [True, False], ids=["native", "numpy"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_in_place_layers_share_the_input_address_and_change_no_number(
    monkeypatch, calibrated, precision: str, native_on: bool
) -> None:
    if native_on and not native.available():
        pytest.skip("no C compiler on this machine")
    if not native_on:
        monkeypatch.setattr(native, "library", lambda: None)
    kw = {} if precision == "fp32" else {"precision": precision}
    if precision == "int8":
        kw["calibration"] = calibrated.cache
    x = np.random.default_rng(1).standard_normal(SHAPES["x"]).astype(np.float32) * 4
    engine = _build(dfl_model(), **kw)
    graph = engine.graph(1)
    plan = plan_memory(graph)
    softmax = _op_output(graph, "Softmax")
    assert softmax in plan.in_place, plan.in_place
    for out, x_name in plan.in_place.items():
        assert plan.addresses[out] == plan.addresses[x_name]
        assert out not in plan.offsets  # owns no memory
        assert graph.value(out).dtype == graph.value(x_name).dtype
    assert engine.graph(1).meta["arena"]["in_place"] == len(plan.in_place)
    _assert_live_buffers_apart(graph, plan)
    # the bound step really writes over its input
    context = engine.create_context()
    ours = context.execute({"x": x})["y"]
    program = engine.program(1)
    views = context._states[1].views
    assert np.shares_memory(views[softmax], views[plan.in_place[softmax]])

    with monkeypatch.context() as m:
        _no_in_place(m)
        plain = _build(dfl_model(), **kw)
        assert not plan_memory(plain.graph(1)).in_place
        expected = _run(plain, x)
    np.testing.assert_array_equal(ours, expected)  # bit for bit: in place changes nothing
    assert program.plan.in_place == plan.in_place
    if precision == "fp32":
        (ref,) = ReferenceEvaluator(onnx.load_from_string(dfl_model())).run(None, {"x": x})
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_in_place_shrinks_the_arena(monkeypatch) -> None:
    engine = _build(softmax_model())
    plan = plan_memory(engine.graph(1))
    assert list(plan.in_place.values()) == ["c"]
    with monkeypatch.context() as m:
        _no_in_place(m)
        before = plan_memory(engine.graph(1))
    # conv → softmax kept two 16 KB buffers; in place, one
    assert before.arena_bytes == 2 * 16 * HW * 4
    assert plan.arena_bytes == 16 * HW * 4
    assert engine.graph(1).meta["arena"]["bytes"] == plan.arena_bytes


def test_not_in_place_when_the_input_is_read_later() -> None:
    plan = plan_memory(_build(softmax_model(read_later=True)).graph(1))
    assert "s" not in plan.in_place
    # the Add reads both and both die there: it may overwrite one of them
    assert set(plan.in_place.values()) <= {"s", "c"}


def test_not_in_place_over_an_engine_input_or_output() -> None:
    plan = plan_memory(_build(softmax_model(extra_output=True)).graph(1))
    assert "s" not in plan.in_place  # its input is an engine output
    nodes = [("Softmax", ["x"], ["s"], {"axis": 1}), ("Sigmoid", ["s"], ["y"], {})]
    graph = _build(_model(nodes, {"y": [1, 3, SIZE, SIZE]}, {})).graph(1)
    assert not plan_memory(graph).in_place  # over the engine input; onto the engine output


def test_not_in_place_over_a_view_or_into_a_concat_piece() -> None:
    """Split pieces are views of their input, and a layer writing into a concat writes a
    piece of its output: neither owns a whole buffer of its own."""
    nodes = [
        ("Conv", ["x", "w1", "b1"], ["c"], {}),
        ("Split", ["c", "halves"], ["a", "b"], {"axis": 1}),
        ("Sigmoid", ["a"], ["sa"], {}),  # over a piece of c
        ("Conv", ["b", "w2"], ["d"], {}),
        ("Softmax", ["d"], ["td"], {"axis": 1}),  # d dies here, but td is a piece of k
        ("Concat", ["sa", "td"], ["k"], {"axis": 1}),
        ("Conv", ["k", "w3"], ["y"], {}),
    ]
    weights = {"w1": (16, 3, 1, 1), "b1": (16,), "w2": (8, 8, 1, 1), "w3": (2, 16, 1, 1)}
    model = _model(nodes, {"y": [1, 2, SIZE, SIZE]}, weights)
    engine = _build(model)
    graph = engine.graph(1)
    plan = plan_memory(graph)
    assert {"a", "b", "sa", "td"} <= set(plan.aliases), plan.aliases
    assert not plan.in_place
    x = np.random.default_rng(2).standard_normal(SHAPES["x"]).astype(np.float32)
    (ref,) = ReferenceEvaluator(onnx.load_from_string(model)).run(None, {"x": x})
    np.testing.assert_allclose(_run(engine, x), ref, rtol=1e-5, atol=1e-6)


def test_not_in_place_across_storage_dtypes() -> None:
    graph = _build(softmax_model()).graph(1)
    s = graph.value("s")
    # as a float32 → float16 layer writes it; and a same-size reinterpretation
    for dtype in (np.float16, np.int32):
        s.type = TensorType(s.type.shape, dtype)
        assert not plan_memory(graph).in_place


def test_not_in_place_beside_a_layer_of_the_same_step() -> None:
    """Branch-parallel stages share a time step: a layer may not overwrite a buffer that a
    layer running beside it reads."""
    nodes = [
        ("Conv", ["x", "w1", "b1"], ["c"], {}),
        ("Softmax", ["c"], ["s"], {"axis": 1}),
        ("Sigmoid", ["c"], ["h"], {}),
        ("Conv", ["s", "w2"], ["ys"], {}),
        ("Conv", ["h", "w2"], ["yh"], {}),
        ("Add", ["ys", "yh"], ["y"], {}),
    ]
    model = _model(nodes, {"y": [1, 2, SIZE, SIZE]}, {"w1": (16, 3, 1, 1), "b1": (16,),
                                                     "w2": (2, 16, 1, 1)})  # fmt: skip
    graph = _build(model).graph(1)
    writer = {n.outputs[0].name: n.name for n in graph.nodes}
    # in sequence, the later of the two readers of c overwrites it
    assert len(set(plan_memory(graph).in_place) & {"s", "h"}) == 1
    times = {n.name: k for k, n in enumerate(graph.nodes)}
    times[writer["h"]] = times[writer["s"]]
    parallel = plan_memory(graph, times)
    assert not set(parallel.in_place) & {"s", "h"}
    assert all(root_of(x, parallel.links) != "c" for x in parallel.in_place.values())
