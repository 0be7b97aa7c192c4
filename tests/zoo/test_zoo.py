"""Tests of the model zoo: every model is valid ONNX, runs in onnxruntime with sane outputs,
and YOLOv8n has the ultralytics export's structure and decode semantics."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest

from edge_infer.zoo import (
    MODELS,
    build_inception_module,
    build_model,
    build_yolov8n,
)

ort = pytest.importorskip("onnxruntime")


def _session(model: onnx.ModelProto, extra_outputs: tuple[str, ...] = ()) -> ort.InferenceSession:
    if extra_outputs:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        copy.graph.output.extend(vi for vi in copy.graph.value_info if vi.name in extra_outputs)
        model = copy
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _input(model: onnx.ModelProto, batch: int, seed: int = 0) -> np.ndarray:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = [batch, *(d.dim_value for d in dims[1:])]
    rng = np.random.default_rng(seed)
    if model.graph.input[0].name == "images":  # YOLO takes 0..1 pixels
        return rng.uniform(0.0, 1.0, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _assert_sane(y: np.ndarray) -> None:
    assert np.isfinite(y).all()
    scale = float(np.abs(y).mean())
    assert scale > 0.0
    assert float(y.std()) > 1e-3 * scale, "output is (nearly) constant"
    assert float(np.abs(y).max()) < 1e4, "output exploded"


# (name, builder kwargs, batches to run) -- kept small: the whole file runs in well under a
# minute on 2 cores (YOLOv8n at 640 only at batch 1).
CASES = {
    "googlenet": ({"batch": None}, (1, 2)),
    "resnet50": ({"batch": None}, (1,)),
    "mobilenetv2": ({"batch": None}, (1, 2)),
    "yolov8n": ({"batch": None, "imgsz": 320}, (1, 2)),
    "yolov8n-640": ({"batch": None, "imgsz": 640}, (1,)),
}


@pytest.fixture(scope="module")
def built() -> dict[str, onnx.ModelProto]:
    cache: dict[str, onnx.ModelProto] = {}
    for key, (kw, _) in CASES.items():
        cache[key] = build_model(key.split("-")[0], **kw)
    cache["inception_3a"] = build_inception_module(batch=None)
    return cache


def test_registry_lists_the_models() -> None:
    assert set(MODELS) == {"googlenet", "resnet50", "mobilenetv2", "yolov8n", "crnn"}
    with pytest.raises(ValueError, match="unknown zoo model 'vgg'"):
        build_model("vgg")


@pytest.mark.parametrize("key", [*CASES, "inception_3a"])
def test_model_is_valid_onnx(built: dict[str, onnx.ModelProto], key: str) -> None:
    model = built[key]
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    assert len(inferred.graph.value_info) > 0
    names = [n.name for n in model.graph.node]
    assert len(names) == len(set(names)), "node names must be unique"
    assert _dims(model.graph.input[0])[0] == "batch"


@pytest.mark.parametrize("key", list(CASES))
def test_runs_in_onnxruntime_with_sane_outputs(built: dict[str, onnx.ModelProto], key: str) -> None:
    model = built[key]
    sess = _session(model)
    name = model.graph.input[0].name
    results = {}
    for batch in CASES[key][1]:
        (y,) = sess.run(None, {name: _input(model, batch)})
        assert y.shape[0] == batch
        _assert_sane(y)
        results[batch] = y
    if 2 in results:  # sample 0 of the batch-2 run is the batch-1 run on the same image
        ref = results[1][0]
        np.testing.assert_allclose(results[2][0], ref, atol=1e-4 * np.abs(ref).max())


def test_inception_module_shapes(built: dict[str, onnx.ModelProto]) -> None:
    model = built["inception_3a"]
    assert _dims(model.graph.output[0]) == ["batch", 256, 28, 28]
    (y,) = _session(model).run(None, {"input": _input(model, 2)})
    assert y.shape == (2, 256, 28, 28)
    _assert_sane(y)
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["Conv"] == 6 and ops["Concat"] == 1 and ops["MaxPool"] == 1


def test_structure_of_classifiers(built: dict[str, onnx.ModelProto]) -> None:
    g = Counter(n.op_type for n in built["googlenet"].graph.node)
    assert g["Concat"] == 9 and g["LRN"] == 2 and g["Conv"] == 57
    assert g["AveragePool"] == 1 and g["Softmax"] == 1 and g["Gemm"] == 1
    r = Counter(n.op_type for n in built["resnet50"].graph.node)
    assert r["Conv"] == 53 and r["BatchNormalization"] == 53 and r["Add"] == 16
    mnet = built["mobilenetv2"].graph
    depthwise = [n for n in mnet.node if n.op_type == "Conv" and _attr(n, "group") > 1]
    assert len(depthwise) == 17
    clips = [n for n in mnet.node if n.op_type == "Clip"]
    assert clips and all(len(n.input) == 3 for n in clips)  # min/max as inputs
    for key in ("googlenet", "resnet50", "mobilenetv2"):
        assert _dims(built[key].graph.output[0]) == ["batch", 1000]


def _attr(node: onnx.NodeProto, name: str) -> int:
    return next((a.i for a in node.attribute if a.name == name), 1)


@pytest.mark.parametrize(("key", "anchors"), [("yolov8n", 2100), ("yolov8n-640", 8400)])
def test_yolov8n_io_and_shape_subgraphs(
    built: dict[str, onnx.ModelProto], key: str, anchors: int
) -> None:
    model = built[key]
    size = 320 if anchors == 2100 else 640
    assert [i.name for i in model.graph.input] == ["images"]
    assert _dims(model.graph.input[0]) == ["batch", 3, size, size]
    assert [o.name for o in model.graph.output] == ["output0"]
    assert _dims(model.graph.output[0]) == ["batch", 84, anchors]
    ops = Counter(n.op_type for n in model.graph.node)
    for op in ("Shape", "Gather", "Range", "Expand", "ConstantOfShape", "Resize", "Split"):
        assert ops[op] > 0, op
    assert ops["Conv"] == 64 and ops["MaxPool"] == 3 and ops["Softmax"] == 1
    # 57 Conv-BN-SiLU blocks (SiLU = Sigmoid + Mul), 7 plain convs (head outputs and DFL).
    assert ops["BatchNormalization"] == 57 and ops["Sigmoid"] == 57 + 1  # + the scores


def test_yolov8n_static_batch_has_no_shape_ops_and_same_outputs(
    built: dict[str, onnx.ModelProto],
) -> None:
    static = build_yolov8n(batch=2, imgsz=320)
    assert not {"Shape", "Range"} & {n.op_type for n in static.graph.node}
    assert _dims(static.graph.output[0]) == [2, 84, 2100]
    x = _input(static, 2)
    (want,) = _session(built["yolov8n"]).run(None, {"images": x})
    (got,) = _session(static).run(None, {"images": x})
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())


def test_yolov8n_variants_match() -> None:
    """fold_bn, dynamic H/W and other opsets give the same network (same seed)."""
    base = build_yolov8n(imgsz=320, opset=17)
    x = _input(base, 1)
    (want,) = _session(base).run(None, {"images": x})
    for kw in ({"fold_bn": True}, {"dynamic_hw": True}, {"opset": 11}, {"opset": 21}):
        model = build_yolov8n(imgsz=320, **kw)
        if kw.get("fold_bn"):
            assert not any(n.op_type == "BatchNormalization" for n in model.graph.node)
        if kw.get("dynamic_hw"):
            assert _dims(model.graph.output[0]) == ["batch", 84, "anchors"]
        (got,) = _session(model).run(None, {"images": x})
        np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max(), err_msg=str(kw))


def test_yolov8n_decode_matches_ultralytics_semantics(built: dict[str, onnx.ModelProto]) -> None:
    """DFL + make_anchors + dist2bbox(xywh) * stride, recomputed in numpy from the head."""
    heads = [f"/model.22/Concat{s}_output_0" for s in ("", "_1", "_2")]
    model = built["yolov8n"]
    x = _input(model, 2)
    out = _session(model, tuple(heads)).run(["output0", *heads], {"images": x})
    y, feats = out[0], out[1:]
    b = x.shape[0]
    xcat = np.concatenate([f.reshape(b, 144, -1) for f in feats], axis=2).astype(np.float64)
    logits = xcat[:, :64].reshape(b, 4, 16, -1)
    p = np.exp(logits - logits.max(axis=2, keepdims=True))
    dist = (p / p.sum(axis=2, keepdims=True) * np.arange(16)[:, None]).sum(axis=2)
    points, strides = [], []
    for f, s in zip(feats, (8, 16, 32)):
        h, w = f.shape[2:]
        gy, gx = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
        points.append(np.stack([gx, gy], -1).reshape(-1, 2))
        strides.append(np.full(h * w, s))
    anchor, stride = np.concatenate(points).T[None], np.concatenate(strides)
    x1y1, x2y2 = anchor - dist[:, :2], anchor + dist[:, 2:]
    boxes = np.concatenate([(x1y1 + x2y2) / 2, x2y2 - x1y1], axis=1) * stride
    scores = 1.0 / (1.0 + np.exp(-xcat[:, 64:]))
    np.testing.assert_allclose(y[:, :4], boxes, atol=1e-4 * np.abs(boxes).max())
    np.testing.assert_allclose(y[:, 4:], scores, atol=1e-5)
    assert y[:, 4:].min() > 0.0 and y[:, 4:].max() < 1.0


def test_builds_are_deterministic_per_seed() -> None:
    a = build_inception_module(seed=3).SerializeToString()
    assert a == build_inception_module(seed=3).SerializeToString()
    assert a != build_inception_module(seed=4).SerializeToString()


@pytest.mark.parametrize(
    ("name", "kw", "message"),
    [
        ("yolov8n", {"batch": 0}, "batch must be a positive int"),
        ("yolov8n", {"imgsz": 300}, "imgsz must be a multiple of 32"),
        ("resnet50", {"opset": 9}, "opset must be in 11..21"),
        ("googlenet", {"image_size": 100}, "image_size must be a multiple of 32"),
        ("mobilenetv2", {"batch": True}, "batch must be a positive int"),
    ],
)
def test_bad_arguments_are_rejected(name: str, kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(name, **kw)
