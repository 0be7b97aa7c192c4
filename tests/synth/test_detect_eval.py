"""The detector-over-dataset loop and the `evaluate` command, with stand-in detectors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_infer.cli import main
from edge_infer.pipeline.preprocess import letterbox_geometry
from edge_infer.synth.detect_eval import ModelRunner, evaluate_on_coco

W, H, INPUT = 200, 120, 64


def make_dataset(root: Path) -> dict:
    """Three non-square images with boxes of two categories (ids 5 and 9, not 0-based)."""
    images, anns = [], []
    boxes = {0: [(5, [10, 20, 40, 30])], 1: [(9, [100, 50, 60, 60]), (5, [0, 0, 30, 30])], 2: []}
    for i, objs in boxes.items():
        cv2.imwrite(str(root / f"{i}.png"), np.full((H, W, 3), 60 * i, np.uint8))
        images.append({"id": i, "file_name": f"{i}.png", "width": W, "height": H})
        for cat, bbox in objs:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": cat,
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
    coco = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 5, "name": "a"}, {"id": 9, "name": "b"}],
    }
    (root / "coco.json").write_text(json.dumps(coco))
    return coco


def oracle(coco: dict, batch: int, shift: float = 0.0) -> ModelRunner:
    """A 'detector' that returns the ground truth (optionally shifted) in yolov8 layout."""
    cats = [c["id"] for c in coco["categories"]]
    calls = iter(range(0, len(coco["images"]), batch))
    lb = letterbox_geometry(W, H, INPUT, INPUT)

    def run(x: np.ndarray) -> np.ndarray:
        assert x.shape[1:] == (3, INPUT, INPUT) and x.dtype == np.float32
        start = next(calls)
        out = np.zeros((x.shape[0], 4 + len(cats), 8), np.float32)
        for k, img in enumerate(coco["images"][start : start + x.shape[0]]):
            objs = [a for a in coco["annotations"] if a["image_id"] == img["id"]]
            for j, a in enumerate(objs):
                bx, by, bw, bh = a["bbox"]
                x0, y0, x1, y1 = lb.to_input(
                    np.array([[bx + shift, by, bx + bw + shift, by + bh]])
                )[0]
                out[k, :4, j] = [(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]
                out[k, 4 + cats.index(a["category_id"]), j] = 0.9
        return out

    return ModelRunner(run, (INPUT, INPUT), 16, "oracle")


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_ground_truth_detector_scores_one(tmp_path: Path, batch: int) -> None:
    coco = make_dataset(tmp_path)
    r = evaluate_on_coco(oracle(coco, batch), coco, tmp_path, batch=batch, progress=False)
    assert r.map50 == pytest.approx(1.0) and r.map50_95 == pytest.approx(1.0)
    assert r.num_gt == {5: 2, 9: 1}


def test_shifted_boxes_lose_the_strict_thresholds(tmp_path: Path) -> None:
    coco = make_dataset(tmp_path)
    r = evaluate_on_coco(oracle(coco, 2, shift=6.0), coco, tmp_path, batch=2, progress=False)
    assert r.map50 == pytest.approx(1.0)
    assert r.map50_95 < 0.9


def test_evaluate_command_with_onnxruntime(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    make_dataset(tmp_path)
    # a constant "detector": one box at the input centre, class 0
    const = np.zeros((1, 6, 1), np.float32)
    const[0, :, 0] = [32, 32, 20, 20, 0.8, 0.1]
    graph = helper.make_graph(
        [
            helper.make_node("Shape", ["images"], ["s"], start=0, end=1),
            helper.make_node("Concat", ["s", "tail"], ["shape"], axis=0),
            helper.make_node("Expand", ["c", "shape"], ["output0"]),
        ],
        "const",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 6, 1])],
        [
            helper.make_tensor("tail", TensorProto.INT64, [2], [6, 1]),
            helper.make_tensor("c", TensorProto.FLOAT, [1, 6, 1], const.ravel().tolist()),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "const.onnx"))
    out_json = tmp_path / "result.json"
    rc = main(
        [
            "evaluate",
            str(tmp_path / "const.onnx"),
            "--dataset",
            str(tmp_path / "coco.json"),
            "--runtime",
            "onnxruntime",
            "--batch",
            "2",
            "--no-progress",
            "--json",
            str(out_json),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "mAP@0.5 0.0000" in text
    assert json.loads(out_json.read_text())["images"] == 3


def test_evaluate_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_dataset(tmp_path)
    assert (
        main(["evaluate", str(tmp_path / "missing.onnx"), "--dataset", str(tmp_path / "coco.json")])
        == 1
    )
    assert "no such model" in capsys.readouterr().err
    rc = main(["evaluate", str(tmp_path / "0.png"), "--dataset", str(tmp_path / "nope.json")])
    assert rc == 1
    assert "does not exist" in capsys.readouterr().err
