"""The non-conv layers of INT8 engines on their native fast paths, against the reference:
edge_infer::Reformat (kernels/reformat.c: every storage conversion, bit for bit),
edge_infer::QGemm (kernels/qgemm_packed.c), nearest Resize and MaxPool on int8 storage
(upsample_nearest_s8, maxpool_s8), and a whole small INT8 engine whose depthwise layers run
qdepthwise_native equal to the same engine on the reference kernels."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.steps import STEPS
from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS
from edge_infer.engine.backends.cpu.tactics.cpu_qdepthwise import QDepthwiseNative
from edge_infer.engine.builder import BuildOptions, build
from edge_infer.engine.calibration import calibrate
from edge_infer.engine.ir import Node
from edge_infer.engine.ops import get_registry
from edge_infer.engine.ops.quantize import qgemm, reformat
from tests.engine.backends.cpu.test_qdepthwise_native import _BUILDS, runnable_build

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

STORAGE = {"fp32": np.float32, "fp16": np.float16, "int8": np.int8}
CONVERSIONS = [
    ("int8", "fp32"),
    ("int8", "fp16"),
    ("int8", "int8"),
    ("fp32", "int8"),
    ("fp16", "int8"),
    ("fp32", "fp16"),
    ("fp16", "fp32"),
]


def _source(dtype: str, size: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    if dtype == "int8":
        return rng.integers(-128, 128, size).astype(np.int8)
    x = rng.standard_normal(size) * 60 * scale  # some saturate
    x[::5] = (np.round(x[::5] / scale) + 0.5) * scale  # ties at half steps
    x[1::97] = 70000.0  # past float16's range
    with np.errstate(over="ignore"):
        return x.astype(STORAGE[dtype])


def _reformat_run(x: np.ndarray, to: str, attrs: dict, workers: int = 1) -> np.ndarray:
    out = np.full(x.shape, 77, STORAGE[to])
    node = Node("Reformat", "r", "edge_infer", {"to": to, **attrs})
    pool = WorkPool(workers) if workers > 1 else None
    try:
        run = STEPS["edge_infer::Reformat"](node, [x], [out], ScratchPool(pool))
        assert run is not None
        run()
    finally:
        if pool is not None:
            pool.close()
    return out


@pytest.mark.parametrize("src,to", CONVERSIONS)
def test_reformat_every_conversion_bit_for_bit(src: str, to: str) -> None:
    rng = np.random.default_rng(len(src) + 3 * len(to))
    attrs = {"x_scale": 0.0371, "y_scale": 0.0523}
    for size, workers in ((37, 1), (200_003, 2)):
        x = _source(src, size, 0.0523, rng)
        with np.errstate(over="ignore"):
            want = reformat(x, to=to, **attrs)
        got = _reformat_run(x, to, attrs, workers)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want, err_msg=f"{src}->{to} n={size}")


@pytest.mark.parametrize("name", sorted(_BUILDS))
def test_reformat_and_qgemm_on_every_vector_path(name: str, monkeypatch) -> None:
    """Each x86 build of test_qdepthwise_native's that this CPU can run."""
    rng = np.random.default_rng(5)
    lib = runnable_build(name)
    monkeypatch.setattr(native, "library", lambda: lib)
    for src, to in CONVERSIONS:
        x = _source(src, 301, 0.0523, rng)
        attrs = {"x_scale": 0.0371, "y_scale": 0.0523}
        with np.errstate(over="ignore"):
            want = reformat(x, to=to, **attrs)
        np.testing.assert_array_equal(_reformat_run(x, to, attrs), want, err_msg=name)
    for k, case in enumerate(QGEMMS):
        ins, attrs, want = qgemm_case(case, k)
        np.testing.assert_array_equal(qgemm_run(ins, attrs, want), want, err_msg=name)


# rows (leading shape), K, N, X storage, output storage, with bias
QGEMMS = [
    ((1,), 1280, 1000, "int8", "fp32", True),
    ((2, 3), 77, 13, "int8", "int8", False),
    ((2,), 2000, 9, "fp32", "fp16", True),
    ((3,), 40, 17, "fp16", "int8", True),
    # qgemm_packed.c: CRNN's fc (8-row tiles, k % 4 = 2, a 5-output block tail; threads
    # split the rows), 3 tail rows and k % 4 = 1, two rows split by 16-output blocks
    ((256,), 258, 37, "fp32", "fp32", True),
    ((19,), 61, 33, "int8", "fp16", False),
    ((2,), 2000, 600, "int8", "int8", True),
]


def qgemm_case(case: tuple, seed: int) -> tuple[list, dict, np.ndarray]:
    lead, k, n, x_storage, out_precision, with_bias = case
    rng = np.random.default_rng(seed)
    x = _source(x_storage, int(np.prod(lead)) * k, 0.02, rng).reshape(*lead, k)
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    w_scale = rng.uniform(1e-4, 1e-3, n).astype(np.float32)
    bias = rng.integers(-9000, 9000, n).astype(np.int32) if with_bias else None
    attrs = {"x_scale": 0.02, "out_precision": out_precision, "out_scale": 0.05}
    with np.errstate(over="ignore"):
        want = qgemm(x, w, w_scale, bias, **attrs)
    return [x, w, w_scale, bias], attrs, want


def qgemm_run(ins: list, attrs: dict, want: np.ndarray, workers: int = 1) -> np.ndarray:
    out = np.full(want.shape, 55, want.dtype)
    node = Node("QGemm", "fc", "edge_infer", attrs)
    pool = WorkPool(workers) if workers > 1 else None
    try:
        run = STEPS["edge_infer::QGemm"](node, [a for a in ins if a is not None], [out],
                                         ScratchPool(pool))  # fmt: skip
        assert run is not None
        run()
    finally:
        if pool is not None:
            pool.close()
    return out


@pytest.mark.parametrize("case", QGEMMS, ids=lambda c: f"{c[1]}x{c[2]}-{c[3]}-{c[4]}")
def test_qgemm_bit_for_bit(case: tuple) -> None:
    ins, attrs, want = qgemm_case(case, 1)
    for workers in (1, 2):
        np.testing.assert_array_equal(qgemm_run(ins, attrs, want, workers), want)


def test_resize_on_int8_storage_is_the_native_copy() -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, (2, 5, 7, 9)).astype(np.int8)
    attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric"}
    for fh, fw in ((2, 2), (3, 1)):
        big = np.zeros((2, 8, 7 * fh, 9 * fw), np.int8)  # the output is a concat's slice
        out = big[:, 2:7]
        node = Node("Resize", "up", "", {**attrs, "nearest_mode": "floor"})
        scales = np.array([1, 1, fh, fw], np.float32)
        run = STEPS["Resize"](node, [x, None, scales], [out], ScratchPool())
        assert isinstance(run, native.NativeCall) and run.name == "upsample_nearest_s8_f32"
        run()
        np.testing.assert_array_equal(out, x.repeat(fh, axis=2).repeat(fw, axis=3))
        assert not big[:, :2].any() and not big[:, 7:].any()


# (h, w), kernel, strides, pads (t, l, b, r), dilations
POOLS = [
    ((10, 10), (5, 5), (1, 1), (2, 2, 2, 2), (1, 1)),  # SPPF
    ((13, 11), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    ((9, 14), (2, 3), (1, 2), (0, 1, 0, 1), (1, 1)),
    ((17, 15), (3, 3), (2, 1), (2, 2, 2, 2), (2, 2)),
    ((8, 33), (2, 1), (2, 1), (0, 0, 0, 0), (1, 1)),  # CRNN's: straight from the rows
    ((11, 13), (3, 2), (1, 1), (1, 1, 1, 0), (2, 1)),  # column stride 1, rows 2 apart
]


def pool_case(case: tuple, seed: int) -> tuple[Node, np.ndarray, np.ndarray, np.ndarray]:
    """An int8 MaxPool whose input and output are channel slices of bigger buffers."""
    (h, w), k, s, p, d = case
    rng = np.random.default_rng(seed)
    big = rng.integers(-128, 128, (2, 7, h, w)).astype(np.int8)
    x = big[:, 1:6]
    attrs = {"kernel_shape": list(k), "strides": list(s), "pads": list(p), "dilations": list(d)}
    want = get_registry().resolve("", "MaxPool", 17).kernel(x, **attrs)
    want = np.asarray(want[0] if isinstance(want, tuple | list) else want)
    out = np.full((2, 8, *want.shape[2:]), 3, np.int8)[:, 2:7]
    return Node("MaxPool", "mp", "", attrs), x, out, want


@pytest.mark.parametrize("case", POOLS, ids=str)
def test_maxpool_on_int8_storage_is_the_native_pass(case: tuple) -> None:
    node, x, out, want = pool_case(case, 4)
    run = STEPS["MaxPool"](node, [x], [out], ScratchPool())
    assert run is not None
    sppf = out.shape == x.shape  # separable numpy maxima there, the native pass elsewhere
    assert sppf or (isinstance(run, native.NativeCall) and run.name == "maxpool_s8_f32")
    run()
    np.testing.assert_array_equal(out, want)


def _init(name: str, a: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(a, name)


def depthwise_net(seed: int = 0) -> onnx.ModelProto:
    """conv + relu, depthwise 3x3 + clip, depthwise 5x5 stride 2 + relu, nearest 2x resize,
    concat, SPPF-style max pool, 1x1 conv."""
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)

    inits = [
        _init("w0", w(16, 3, 3, 3)),
        _init("b0", w(16)),
        _init("w1", w(16, 1, 3, 3)),
        _init("b1", w(16)),
        _init("w2", w(16, 1, 5, 5)),
        _init("b2", w(16)),
        _init("w3", w(8, 32, 1, 1)),
        _init("lo", np.array(0.0, np.float32)),
        _init("hi", np.array(6.0, np.float32)),
        _init("sc", np.array([1, 1, 2, 2], np.float32)),
    ]
    conv = lambda i, o, wn, bn, **kw: helper.make_node("Conv", [i, wn, bn], [o], **kw)  # noqa: E731
    nodes = [
        conv("x", "c0", "w0", "b0", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["a"]),
        conv("a", "c1", "w1", "b1", pads=[1, 1, 1, 1], group=16),
        helper.make_node("Clip", ["c1", "lo", "hi"], ["d"]),
        conv("d", "c2", "w2", "b2", pads=[2, 2, 2, 2], strides=[2, 2], group=16),
        helper.make_node("Relu", ["c2"], ["e"]),
        helper.make_node(
            "Resize",
            ["e", "", "sc"],
            ["u"],
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        ),
        helper.make_node("Concat", ["u", "a"], ["c"], axis=1),
        helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[5, 5], pads=[2, 2, 2, 2]),
        helper.make_node("Conv", ["p", "w3"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "dw",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 24, 24])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 24, 24])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_int8_engine_with_native_depthwise_equals_the_reference(monkeypatch) -> None:
    model = depthwise_net()
    rng = np.random.default_rng(1)
    frames = [rng.uniform(0, 1, (3, 24, 24)).astype(np.float32) for _ in range(4)]
    cal = calibrate(model, frames, calibrator="minmax")
    opts = BuildOptions(
        shapes={"x": (1, 3, 24, 24)}, tune=False, precision="int8", calibration=cal.cache
    )
    reference = build(model, options=opts)
    # the first applicable candidate is each layer's tactic when not tuned
    monkeypatch.setitem(CPU_TACTICS, "qconv", (QDepthwiseNative, *CPU_TACTICS["qconv"]))
    native_dw = build(model, options=opts)
    tactics = [n.meta.get("tactic") for n in native_dw.graph(1).nodes if n.op_type == "QConv"]
    assert tactics.count("qdepthwise_native") == 2, tactics
    x = frames[0][None]
    want = reference.create_context().execute({"x": x})["y"]
    got = native_dw.create_context().execute({"x": x})["y"]
    np.testing.assert_array_equal(got, want)


def test_an_int8_engine_runs_its_domain_layers_through_their_steps(monkeypatch) -> None:
    """The engine binds ``edge_infer::Reformat`` to its step (steps are keyed
    ``domain::op``), not to the reference kernel."""
    rng = np.random.default_rng(2)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((4, 8, 3, 3)).astype(np.float32), "w2"),
    ]
    nodes = [  # r is read by an INT8 conv and a float Sigmoid: stored in float, reformatted
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["y"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["r"], ["s"]),
    ]
    graph = helper.make_graph(
        nodes,
        "reformat_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 12, 12]),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 8, 12, 12]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    data = [rng.uniform(0, 1, (3, 12, 12)).astype(np.float32) for _ in range(4)]
    cal = calibrate(model, data, calibrator="minmax")
    opts = BuildOptions(
        shapes={"x": (1, 3, 12, 12)}, tune=False, precision="int8", calibration=cal.cache
    )
    engine = build(model, options=opts)
    reformats = [n for n in engine.graph(1).nodes if n.op_type == "Reformat"]
    assert reformats, "the INT8 engine has no Reformat layer to check"
    calls: list[str] = []
    step = STEPS["edge_infer::Reformat"]

    def counted(node, ins, outs, scratch):  # type: ignore[no-untyped-def]
        calls.append(node.name)
        return step(node, ins, outs, scratch)

    monkeypatch.setitem(STEPS, "edge_infer::Reformat", counted)
    engine.create_context().execute({"x": data[0][None]})
    assert sorted(calls) == sorted(n.name for n in reformats)
