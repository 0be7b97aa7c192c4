"""Storage precision: activations kept in fp16 / int8 between layers, reformats where needed."""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import onnx
import pytest

from edge_infer.engine.builder import BuildOptions, build
from edge_infer.engine.calibration import calibrate
from edge_infer.engine.network import Network
from edge_infer.engine.ops.fused import apply_activation
from edge_infer.engine.ops.quantize import int8_conv_accumulate, quantize_activation
from edge_infer.engine.runtime import Engine
from edge_infer.errors import EngineCompatibilityError
from tests.engine.precision.conftest import SIZE, frames

SHAPES = {"x": (1, 3, SIZE, SIZE)}


@pytest.fixture(scope="module")
def calibrated(model: onnx.ModelProto):
    return calibrate(model, frames(6), calibrator="entropy")


def _build(model, **kw: object) -> Engine:
    return build(model, options=BuildOptions(shapes=SHAPES, tune=False, **kw))


def _activations(engine: Engine) -> dict[str, tuple[str, dict]]:
    graph = engine.graph(1)
    return {
        v.name: (v.dtype.name, v.meta.get("storage", {})) for n in graph.nodes for v in n.outputs
    }


def test_fp16_engine_keeps_fp16_activations(model) -> None:
    fp32, fp16 = _build(model), _build(model, precision="fp16")
    graph = fp16.graph(1)
    output = graph.outputs[0][1].name
    for name, (dtype, storage) in _activations(fp16).items():
        want = "float32" if name == output else "float16"  # the bindings stay float32
        assert dtype == want and storage["dtype"] == {"float32": "fp32"}.get(dtype, "fp16")
    # the float32 input is rounded as the first layer reads it: no second copy of it
    assert not [n for n in graph.nodes if n.op_type == "Reformat"]
    arena = {e: e.graph(1).meta["arena"]["bytes"] for e in (fp32, fp16)}
    assert arena[fp16] <= 0.55 * arena[fp32]


def test_int8_engine_keeps_int8_between_int8_layers(model, calibrated) -> None:
    engine = _build(model, precision="int8", calibration=calibrated.cache)
    acts = _activations(engine)
    scales = calibrated.cache.scales
    # conv1 → conv2 (input and residual) → conv3: int8 at the calibrated scales; conv3's
    # output feeds an FP32 Mul, so it is stored in FP32
    assert acts["r1"] == ("int8", {"dtype": "int8", "scale": scales["r1"]})
    assert acts["a2"] == ("int8", {"dtype": "int8", "scale": scales["a2"]})
    assert acts["s3"][0] == "float32"
    nodes = {n.name: n for n in engine.graph(1).nodes}
    assert nodes["conv2"].attrs["z_scale"] == scales["r1"]
    assert nodes["conv1"].attrs["out_precision"] == "int8"
    assert nodes["conv1"].attrs["out_scale"] == scales["r1"]
    assert (
        engine.graph(1).meta["arena"]["bytes"]
        <= 0.3 * _build(model).graph(1).meta["arena"]["bytes"]
    )


def test_reformat_layers_where_a_consumer_takes_another_format(model, calibrated) -> None:
    engine = _build(
        model, precision="int8", calibration=calibrated.cache, layer_precision={"conv2": "fp32"}
    )
    graph = engine.graph(1)
    reformats = [n for n in graph.nodes if n.op_type == "Reformat"]
    # conv2 (FP32) reads r1 and writes a2 in float32; conv3 (INT8) needs a2 in int8
    assert [(n.inputs[0].name, n.attrs["to"]) for n in reformats] == [("a2", "int8")]
    assert reformats[0].attrs["y_scale"] == calibrated.cache.scales["a2"]
    assert graph.value("r1").dtype == np.float32  # an FP32 layer reads it
    assert graph.meta["storage"]["reformats"] == [reformats[0].name]
    x = frames(1, seed=4)[0][None]
    y = engine.create_context().execute({"x": x})["y"]
    ref = _build(model).create_context().execute({"x": x})["y"]
    assert np.abs(y - ref).max() < 0.05 * np.abs(ref).max()


def _qconv(node, x_q: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
    """One INT8 layer of the emulation: exact int32 accumulation, requantization, epilogue."""
    a = node.attrs
    w, w_scale, b = (v.const for v in node.inputs[1:4])
    acc = int8_conv_accumulate(
        x_q,
        w,
        b,
        group=a.get("group", 1),
        strides=a.get("strides"),
        pads=a.get("pads"),
        kernel_shape=a.get("kernel_shape"),
    )
    y = acc * (a["x_scale"] * w_scale.astype(np.float64)).reshape(1, -1, 1, 1)
    y = y.astype(np.float32)
    if a.get("residual") == "pre":
        y = y + z
    y = np.asarray(
        apply_activation(y, a.get("activation", ""), a.get("activation_params", [])), np.float32
    )
    return y + z if a.get("residual") == "post" else y


def test_int8_numbers_are_the_stored_int8_pipeline(model, calibrated) -> None:
    """The engine computes exactly: input quantized, int8 between the layers (each output
    requantized with its tensor's scale), the residual dequantized from int8."""
    engine = _build(model, precision="int8", calibration=calibrated.cache)
    nodes = {n.name: n for n in engine.graph(1).nodes}
    s = calibrated.cache.scales
    x = frames(1, seed=3)[0][None]
    r1 = quantize_activation(_qconv(nodes["conv1"], quantize_activation(x, s["x"])), s["r1"])
    r1_real = (r1.astype(np.float32) * np.float32(s["r1"])).astype(np.float32)
    a2 = quantize_activation(_qconv(nodes["conv2"], r1, r1_real), s["a2"])
    assert r1.min() >= -128 and a2.max() <= 127  # saturated to the int8 range
    y = _qconv(nodes["conv3"], a2) * np.float32(2.0)
    got = engine.create_context().execute({"x": x})["y"]
    np.testing.assert_allclose(got, y, rtol=1e-6, atol=1e-7)


def test_concat_pieces_share_its_scale() -> None:
    net = Network("cat", seed=1)
    x = net.add_input("x", (1, 4, 12, 12))
    a = net.add_activation(net.add_convolution(x, 8, 3, padding=1), "relu")
    b = net.add_activation(net.add_convolution(x, 8, 1), "relu")
    c = net.add_concatenation([a, b], axis=1)
    p = net.add_pooling(c, "max", 3, stride=1, padding=1)
    net.mark_output(net.add_convolution(p, 4, 1), "y")
    cal = calibrate(
        net,
        [np.random.default_rng(k).random((4, 12, 12), np.float32) for k in range(4)],
        calibrator="minmax",
    )
    engine = build(
        net,
        options=BuildOptions(
            shapes={"x": (1, 4, 12, 12)}, tune=False, precision="int8", calibration=cal.cache
        ),
    )
    graph = engine.graph(1)
    concat = next(n for n in graph.nodes if n.op_type == "Concat")
    assert concat.meta.get("noop")  # concat elimination still holds
    pool = next(n for n in graph.nodes if n.op_type == "MaxPool")
    tensors = [*concat.inputs, concat.outputs[0], pool.outputs[0]]
    assert {v.dtype.name for v in tensors} == {"int8"}
    assert len({v.meta["storage"]["scale"] for v in tensors}) == 1
    ref = build(net, options=BuildOptions(shapes={"x": (1, 4, 12, 12)}, tune=False))
    xin = np.random.default_rng(9).random((1, 4, 12, 12), np.float32)
    want = ref.create_context().execute({"x": xin})["y"]
    got = engine.create_context().execute({"x": xin})["y"]
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


def test_engine_file_keeps_storage_and_refuses_format_1(model, calibrated, tmp_path) -> None:
    path = tmp_path / "int8.engine"
    engine = _build(model, precision="int8", calibration=calibrated.cache)
    engine.save(path)
    loaded = Engine.load(path)
    assert _activations(loaded) == _activations(engine)
    data = bytearray(path.read_bytes())
    data[8:12] = struct.pack("<I", 1)  # a file from before activations had storage dtypes
    data[-32:] = hashlib.sha256(bytes(data[:-32])).digest()
    old = tmp_path / "old.engine"
    old.write_bytes(bytes(data))
    with pytest.raises(EngineCompatibilityError, match="format version 1, older.*rebuild"):
        Engine.load(old)


def test_inspect_shows_storage_and_reformats(model, calibrated, tmp_path, capsys) -> None:
    import argparse

    from edge_infer.commands import inspect

    path = tmp_path / "mixed.engine"
    _build(
        model, precision="int8", calibration=calibrated.cache, layer_precision={"conv2": "fp32"}
    ).save(path)
    args = argparse.Namespace(engine=str(path), json=False, batch=None, no_device_check=False)
    assert inspect.run(args) == 0
    out = capsys.readouterr().out
    scale = f"{calibrated.cache.scales['a2']:.6g}"
    assert "reformat layers: 1" in out and "reformat a2 fp32->int8" in out
    assert f"fp32 -> int8 (scale {scale})" in out
    conv3 = next(line for line in out.splitlines() if line.strip().startswith("QConv"))
    assert "→ " in conv3
    assert "MB activations + " in out and "int8 " in out.split("arena:")[1]
    report = inspect.engine_report(Engine.load(path), None)
    stored = {layer["name"]: layer["storage"] for layer in report["layers"]}
    assert stored["conv1"] == ["fp32"] and stored["reformat a2 fp32->int8"] == [f"int8@{scale}"]


def test_per_layer_compare_reads_stored_tensors_as_reals(model, calibrated) -> None:
    from edge_infer.engine.precision.metrics import per_layer_errors

    fp32 = _build(model).graph(1)
    feeds = {"x": frames(1, seed=6)[0][None]}
    for kw in ({"precision": "fp16"}, {"precision": "int8", "calibration": calibrated.cache}):
        other = _build(model, **kw).graph(1)
        rows = {name: err for name, _, err in per_layer_errors(fp32, other, feeds)}
        assert {"r1", "a2", "y"} <= set(rows)  # fp16 / int8 tensors compared too
        for err in rows.values():
            assert err.cosine > 0.999 and err.max_abs < 0.1 * max(err.peak, 1e-3)


def test_int8_layer_reading_a_view_of_the_engine_input() -> None:
    """A Focus-like stem (slices of the image concatenated) before the first INT8 conv: the
    input group stays float32 and the conv quantizes it as it reads it."""
    net = Network("focus", seed=2)
    x = net.add_input("x", (1, 3, 8, 8))
    a = net.add_layer(
        "Slice", [x, *(net.add_constant(np.array(v, np.int64)) for v in ([0], [4], [2]))]
    )
    b = net.add_layer(
        "Slice", [x, *(net.add_constant(np.array(v, np.int64)) for v in ([4], [8], [2]))]
    )
    c = net.add_concatenation([a, b], axis=1)
    net.mark_output(net.add_activation(net.add_convolution(c, 4, 3, padding=1), "relu"), "y")
    data = [np.random.default_rng(k).random((3, 8, 8), np.float32) for k in range(3)]
    cal = calibrate(net, data, calibrator="minmax")
    shapes = {"x": (1, 3, 8, 8)}
    engine = build(
        net,
        options=BuildOptions(shapes=shapes, tune=False, precision="int8", calibration=cal.cache),
    )
    graph = engine.graph(1)
    assert [n.op_type for n in graph.nodes if n.meta.get("precision") == "int8"] == ["QConv"]
    assert not [n for n in graph.nodes if n.op_type == "Reformat"]
    ref = build(net, options=BuildOptions(shapes=shapes, tune=False))
    xin = data[0][None]
    want = ref.create_context().execute({"x": xin})["y"]
    got = engine.create_context().execute({"x": xin})["y"]
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


@pytest.mark.parametrize(
    "kw",
    [{"precision": "fp16"}, {"precision": "int8"}, {"precision": "int8", "int8_fallback": "fp16"}],
)
def test_stored_types_are_what_shape_inference_gives(model, calibrated, kw) -> None:
    """The IR does not lie about storage: re-inferring a lowered plan (as a loader checking an
    engine file does) gives every tensor the dtype it is stored in."""
    from edge_infer.engine.shape_inference import infer_shapes

    graph = _build(model, calibration=calibrated.cache, **kw).graph(1)
    again = graph.copy()
    infer_shapes(again, fold=False)
    for node in again.nodes:
        for out in node.outputs:
            assert out.type == graph.value(out.name).type, (node.name, out.name)
    # and the kernels return what is stored (run on zeros of the stored input types)
    from edge_infer.engine.shape_inference import node_attrs, resolve_op

    for node in graph.nodes:
        if node.domain != "edge_infer" or node.op_type == "FusedConv":
            continue
        op = resolve_op(graph, node)
        args = [
            None if v is None else v.const if v.const is not None else np.zeros(v.shape, v.dtype)
            for v in node.inputs
        ]
        result = op.kernel(*args, **node_attrs(op, node))
        assert np.asarray(result).dtype == node.outputs[0].dtype, node.name
