"""``bench/engine_table.py`` (issue 18 §4): its pieces checked without the big models — row
names, the calibration reader onnxruntime gets, agreement scoring, the table's "not
measured" rows — and onnxruntime's QDQ quantization of a small conv model on those frames."""

from __future__ import annotations

import argparse

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench import engine_table


def test_rows_parse_and_unknown_rows_are_refused() -> None:
    assert engine_table.parse_row("yolov8n-320-b8") == ("yolov8n-320", 8)
    assert engine_table.parse_row("crnn-w128-b1") == ("crnn-w128", 1)
    assert set(engine_table.ROWS) >= {"resnet50-b1", "mobilenetv2-b8", "demo-det-b1"}
    with pytest.raises(ValueError, match="unknown row"):
        engine_table.parse_row("vgg16-b1")
    with pytest.raises(ValueError, match="unknown row"):
        engine_table.parse_row("resnet50")


def test_reader_yields_each_frame_once_with_a_batch_axis_and_rewinds() -> None:
    frames = [np.full((3, 4, 4), i, np.float32) for i in range(3)]
    reader = engine_table.FramesReader("x", frames)
    got = [reader.get_next() for _ in range(4)]
    assert got[3] is None
    assert [float(g["x"][0, 0, 0, 0]) for g in got[:3]] == [0.0, 1.0, 2.0]
    assert got[0]["x"].shape == (1, 3, 4, 4)
    reader.rewind()
    assert float(reader.get_next()["x"].max()) == 0.0


def test_agreement_scores_identity_perfect_and_a_flipped_class_as_a_miss() -> None:
    ref = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]], np.float32)
    same = engine_table.agreement(ref, ref.copy(), "classifier")
    assert same["top1_agreement"] == 1.0 and same["max_abs_diff"] == 0.0
    assert same["cosine"] == pytest.approx(1.0)
    flipped = ref.copy()
    flipped[1] = [0.1, 0.8, 0.1]
    worse = engine_table.agreement(ref, flipped, "classifier")
    assert worse["top1_agreement"] == 0.5
    assert worse["max_abs_diff"] == pytest.approx(0.7)
    assert worse["cosine"] < 0.9
    assert "top1_agreement" not in engine_table.agreement(ref, ref, "detector")


def test_markdown_marks_rows_not_run_and_fills_the_measured_one() -> None:
    side = {"median_ms": 10.0, "per_process_medians_ms": [10.0, 8.0, 12.0]}
    agree = {"cosine": 0.999, "max_abs_diff": 0.1, "top1_agreement": 0.75}
    report = {
        "edge_infer": side,
        "onnxruntime": {"median_ms": 5.0, "per_process_medians_ms": [5.0, 2.0, 9.0]},
        "ratio": 2.0,
        "load_average": {"before": (1.5, 0, 0), "after": (2.5, 0, 0)},
        "agreement_vs_fp32": {"edge_infer": agree, "onnxruntime": agree},
    }
    paired = {**report, "paired": {"ratio": 0.95, "ratio_p10": 0.9, "ratio_p90": 1.125}}
    text = engine_table.markdown(
        {
            "mobilenetv2-b1": {
                **{"fp32": paired, "int8": paired, "int8_over_our_fp32": 1.0},
                "int8_over_our_fp32_paired": {"ratio": 0.5, "ratio_p10": 0.25, "ratio_p90": 0.75},
            },
            "mobilenetv2-b8": {
                **{"fp32": report, "int8": report, "int8_over_our_fp32": 1.0},
                **{"int8_layers": "faster", "int8_fallen_back": ["a", "b"]},
            },
            "yolov8n-320-b1": {"error": "Exception: Incomplete symbolic shape inference"},
        }
    )
    lines = {line.split(" |")[0][2:]: line for line in text.splitlines()[2:]}
    assert set(lines) == set(engine_table.ROWS)
    assert "2.00×" in lines["mobilenetv2-b1"] and "top-1 75%" in lines["mobilenetv2-b1"]
    assert "1.5–2.5" in lines["mobilenetv2-b1"]
    assert "| 4.00× |" in lines["mobilenetv2-b1"]  # best process: 8.0 / 2.0
    assert "not measured" not in lines["mobilenetv2-b1"]
    assert lines["mobilenetv2-b1"].count("| 0.95× (0.90–1.12) |") == 2  # paired: FP32, INT8
    assert "| 0.50× (0.25–0.75) |" in lines["mobilenetv2-b1"]  # our INT8 / our FP32, paired
    assert lines["mobilenetv2-b8"].count("not measured") == 3  # no paired turns there
    assert "convs FP32" not in lines["mobilenetv2-b1"]
    assert "| 10.00 (2 convs FP32) |" in lines["mobilenetv2-b8"]  # --int8-layers faster
    assert lines["resnet50-b8"].count("not measured") == 15
    assert "failed: Exception: Incomplete symbolic" in lines["yolov8n-320-b1"]


def test_paired_cell_adds_the_quiet_rounds_where_some_were_slowed() -> None:
    """The quiet rounds' median and count where they are some of the rounds, not all or none."""
    q = {"ratio": 1.47, "ratio_p10": 0.97, "ratio_p90": 1.51, "round_ratios": [1.0] * 20}
    assert engine_table._paired({**q, "quiet_rounds": 7, "quiet_ratio": 1.01}) == (
        "1.47× (0.97–1.51); quiet 1.01× (7/20)"
    )
    for quiet, ratio in ((20, 1.47), (0, None)):
        cell = engine_table._paired({**q, "quiet_rounds": quiet, "quiet_ratio": ratio})
        assert cell == "1.47× (0.97–1.51)"
    assert engine_table._paired(q) == "1.47× (0.97–1.51)"  # reports from before the count


def _conv_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, 16, 16])],
        [w, b],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_ort_quantization_is_qdq_per_channel_and_close_to_fp32(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    fp32 = tmp_path / "conv.onnx"
    onnx.save(_conv_model(), fp32)
    frames = engine_table.synth_frames(4, (3, 16, 16), "calib")
    assert all(f.shape == (3, 16, 16) and f.dtype == np.float32 for f in frames)
    q = engine_table.quantize_ort(
        fp32, tmp_path / "q.onnx", engine_table.FramesReader("x", frames), "minmax"
    )
    model = onnx.load(q)
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops and "Conv" in ops
    scales = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert any(v.shape == (8,) and "scale" in k for k, v in scales.items())  # per channel
    x = np.stack(frames[:2])
    want = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    a = engine_table.agreement(want[0], got[0], "detector")
    assert a["cosine"] > 0.99 and a["max_abs_diff"] > 0.0


def test_render_rewrites_the_markdown_from_the_json_alone(tmp_path) -> None:
    (tmp_path / "engine_table.json").write_text('{"crnn-w128-b8": {"error": "Boom: x"}}')
    assert engine_table.main(["--render", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "engine_table.md").read_text()
    assert text.startswith("# Engine table")
    assert "| crnn-w128-b8 | failed: Boom: x |" in text
    rows = [line for line in text.splitlines() if "| not measured |" in line]
    assert len(rows) == len(engine_table.ROWS)


def test_a_turn_is_about_turn_seconds_of_our_engine_and_at_least_three_runs() -> None:
    """The paired turns' length comes from our engine's measured latency (not from the
    fresh processes' iteration cap), and never leaves the cold first run as the median."""
    args = argparse.Namespace(turn_seconds=0.25)
    assert engine_table._turn_runs({"edge_infer": {"median_ms": 5.0}}, args) == 50
    assert engine_table._turn_runs({"edge_infer": {"median_ms": 330.0}}, args) == 3
    assert engine_table._turn_runs({"edge_infer": {"median_ms": 100.0}}, args) == 3
