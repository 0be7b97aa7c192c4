"""``bench/layer_profile.py``: convolutions sorted into kinds from the ONNX model, and our
layers matched to onnxruntime's nodes by the Conv they hold, NCHWc-fused names included
(fake profiles, nothing timed)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bench import layer_profile


def _model() -> onnx.ModelProto:
    def w(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        return numpy_helper.from_array(np.zeros(shape, np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["a"], name="full", strides=[2, 2]),
        helper.make_node("Conv", ["a", "w1"], ["b"], name="dw", group=8),
        helper.make_node("Conv", ["b", "w2"], ["c"], name="pw"),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w("w0", (8, 3, 3, 3)), w("w1", (8, 1, 3, 3)), w("w2", (16, 8, 1, 1))],
    )
    return helper.make_model(graph)


def test_conv_kinds() -> None:
    assert layer_profile.conv_kinds(_model()) == {
        "full": "3×3 full/s2",
        "dw": "depthwise 3×3",
        "pw": "1×1",
    }


def test_layers_matched_by_their_conv_and_summed_per_kind() -> None:
    ours = [
        {"name": "pw+relu", "op": "FusedConv", "members": ["pw", "relu"], "time_us": 30.0},
        {"name": "dw", "op": "FusedConv", "members": ["dw"], "time_us": 20.0},
        {"name": "full", "op": "FusedConv", "members": ["full"], "time_us": 10.0},
    ]
    theirs = {"y_nchwc": (15.0, "Conv"), "dw": (5.0, "Conv"), "reorder": (7.0, "ReorderInput")}
    result = layer_profile.compare(_model(), ours, theirs)
    kinds = result["by_kind"]
    assert kinds["1×1"] == [30.0, 15.0, 1]
    assert kinds["depthwise 3×3"] == [20.0, 5.0, 1]
    assert kinds["3×3 full/s2"] == [10.0, 0.0, 1]  # no ORT node of that name
    assert kinds["onnxruntime ReorderInput (unmatched)"][1] == 7.0
    text = layer_profile.markdown("m", result, top=2)
    assert "| 1×1 | 1 | 30 | 15 | 2.00× |" in text
    assert text.count("| pw+relu |") == 1 and "| full |" not in text  # top 2 only


def test_the_two_profilers_take_turns_and_each_layer_is_the_median_of_its_turns(
    monkeypatch, tmp_path
) -> None:
    """Ours and onnxruntime alternate turn by turn (their figures from the same phases of
    the host), each turn a share of the runs; a layer's figure is its turns' median and
    onnxruntime's warm-up runs are left out of its nodes'."""
    import json
    from pathlib import Path

    import edge_infer
    from edge_infer.engine import backends

    calls: list[str] = []

    class Engine:
        backend_name = "cpu"
        times = iter([10.0, 30.0, 20.0])

        def profile_layers(self, feeds, iterations):
            calls.append(f"ours {iterations}")
            return [{"name": "L", "op": "Conv", "members": ["pw"], "time_us": next(self.times)}]

    class Backend:
        def configure(self, cores):
            calls.append(f"cores {cores}")

    class Session:
        def run(self, outputs, feeds):
            calls.append("ort")

        def end_profiling(self):
            n = calls.count("ort")
            events = [
                {"cat": "Node", "name": "pw_kernel_time", "dur": 1000.0 if k < 5 else 7.0}
                for k in range(n)
            ]
            path = Path(tmp_path) / "p.json"
            path.write_text(json.dumps(events))
            return str(path)

    monkeypatch.setattr(edge_infer, "build", lambda *a, **k: Engine())
    monkeypatch.setattr(backends, "get_backend", lambda name: Backend())
    monkeypatch.setattr(layer_profile, "ort_session", lambda *a: Session())
    monkeypatch.setattr(layer_profile.time, "sleep", lambda s: None)
    ours, theirs = layer_profile.profiles(Path("m.onnx"), {"x": np.zeros(1)}, 2, 6, 3)
    assert calls[:6] == ["cores 2"] + ["ort"] * 5  # onnxruntime's warm-up
    assert calls[6:] == ["ours 2", "ort", "ort"] * 3
    assert ours[0]["time_us"] == 20.0  # median of 10, 30, 20
    assert theirs == {"pw": (7.0, "?")}
