"""The tactic self-check: a candidate that disagrees with the reference op is never chosen."""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar

import numpy as np
import pytest

import edge_infer
from edge_infer.cli import main
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS
from edge_infer.engine.ir import Graph, TensorType
from edge_infer.engine.onnx_export import export_onnx
from edge_infer.engine.ops.fused import DOMAIN
from edge_infer.engine.ops.quantize import int8_value_range
from edge_infer.engine.options import BuildOptions
from edge_infer.engine.reference import execute_graph
from edge_infer.engine.tactics.autotune import TimingCache, tune_layer
from edge_infer.engine.tactics.base import ConvSpec, Tactic, conv_spec
from edge_infer.engine.tactics.quantized import qconv_spec
from edge_infer.engine.tactics.verify import (
    TOLERANCES,
    check_tactic,
    disagreement,
    layer_inputs,
    reference_outputs,
    verified,
)
from edge_infer.errors import BuildError
from tests.engine.test_memory import branchy

X = np.random.default_rng(0).standard_normal((1, 8, 16, 16)).astype(np.float32)


class Zeros(Tactic):
    """Wrong on purpose and faster than any real candidate: it writes zeros."""

    name = "zeros_fast"
    made: ClassVar[list[str]] = []

    def __init__(self, spec: ConvSpec) -> None:
        self.spec = spec

    @classmethod
    def applicable(cls, spec: ConvSpec) -> bool:
        return True

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Any) -> Any:
        out = outputs[0]
        return lambda: out.fill(0.0)


class Raises(Zeros):
    name = "raises"

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Any) -> Any:
        raise RuntimeError("cannot bind this layer")


def _reference() -> np.ndarray:
    return execute_graph(branchy().graph, {"x": X})["out"]


def _tactics(engine: Any) -> dict[str, str]:
    return {n.name: n.meta["tactic"] for n in engine.graph(1).nodes if "tactic" in n.meta}


def test_disagreement_within_and_beyond_the_tolerance() -> None:
    want = np.linspace(-8, 8, 60, dtype=np.float32).reshape(3, 4, 5)
    tol = TOLERANCES["float32"] * 8
    assert disagreement(want + np.float32(0.5 * tol), want) is None
    off = want.copy()
    off[1, 2, 3] += 3 * tol
    assert "at (1, 2, 3)" in disagreement(off, want)
    unwritten = want.copy()
    unwritten[0, 0, :2] = np.nan
    assert disagreement(unwritten, want).startswith("2 of 60 outputs NaN")
    assert "shape" in disagreement(want[:2], want)
    inf = want.copy()
    inf[2, 0, 0] = np.inf  # infinite where the reference is finite
    assert disagreement(inf, want) is not None


def _first_conv(engine_or_graph: Any) -> Any:
    graph = engine_or_graph
    return next(n for n in graph.nodes if conv_spec(n) is not None)


def test_a_subtly_wrong_real_tactic_is_caught_and_a_right_one_passes() -> None:
    """A real candidate of a real layer, its output nudged by 10x the tolerance at one
    element: rejected; untouched: kept."""
    graph = edge_infer.build(branchy(), tune=False).graph(1)
    node = _first_conv(graph)
    spec = conv_spec(node)
    real = next(t for t in CPU_TACTICS["conv"] if t.applicable(spec))(spec)
    ins = layer_inputs(node)
    want = reference_outputs(node, ins)

    def bind(t, ins, outs):
        return t.bind(ins, outs, ScratchPool())

    assert check_tactic(node, real, ins, want, bind) is None

    def nudged(t, ins, outs):
        run = t.bind(ins, outs, ScratchPool())

        def go() -> None:
            run()
            outs[0].flat[7] += 10 * TOLERANCES["float32"] * max(1.0, np.abs(want[0]).max())

        return go

    why = check_tactic(node, real, ins, want, nudged)
    assert why is not None and why.startswith("max |error|"), why
    kept, rejected = verified(node, [real, Zeros(spec), Raises(spec)], bind)
    assert kept == [real]
    assert [(r.layer, r.tactic) for r in rejected] == [
        (node.name, "zeros_fast"),
        (node.name, "raises"),
    ]
    assert "RuntimeError: cannot bind this layer" in rejected[1].error


def test_the_inputs_are_seeded_per_layer() -> None:
    node = _first_conv(edge_infer.build(branchy(), tune=False).graph(1))
    a, b = layer_inputs(node), layer_inputs(node)
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[0], layer_inputs(node, 1)[0])


def test_a_wrong_tactic_is_never_chosen_and_the_engine_stays_right(
    monkeypatch, caplog, capsys, tmp_path
) -> None:
    monkeypatch.setitem(CPU_TACTICS, "conv", (*CPU_TACTICS["conv"], Zeros))
    # without the check the wrong tactic wins the timing: the test can fail
    unchecked = edge_infer.build(branchy(), options=BuildOptions(verify_tactics=False))
    assert "zeros_fast" in _tactics(unchecked).values()
    ctx = unchecked.create_context()
    assert not np.allclose(ctx.execute({"x": X})["out"], _reference(), atol=1e-3)
    assert "--no-verify-tactics" in unchecked.build_record["rebuild_command"]
    with caplog.at_level(logging.WARNING):
        engine = edge_infer.build(branchy(), tmp_path / "checked.engine")
    chosen = _tactics(engine)
    assert chosen and "zeros_fast" not in chosen.values()
    convs = [n for n in engine.graph(1).nodes if conv_spec(n) is not None]
    for node in convs:  # every timed conv layer refused it, with the reason recorded
        assert "zeros_fast" in node.meta["rejected_tactics"], node.name
    record = engine.build_record
    assert record["options"]["verify_tactics"] is True
    assert "--no-verify-tactics" not in record["rebuild_command"]
    assert {r["layer"] for r in record["rejected_tactics"]} == {n.name for n in convs}
    assert all(
        r["tactic"] == "zeros_fast" and "max |error|" in r["error"]
        for r in record["rejected_tactics"]
    )
    assert f"layer {convs[0].name}: tactic zeros_fast rejected" in caplog.text
    out = engine.create_context().execute({"x": X})["out"]
    ref = _reference()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    # and `inspect` shows the rejected candidates
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "checked.engine")]) == 0
    text = capsys.readouterr().out
    assert f"tactic self-check: on, {len(convs)} candidate(s) rejected" in text
    assert f"rejected zeros_fast for {convs[0].name} (batch 1): max |error|" in text
    assert main(["inspect", "--json", str(tmp_path / "checked.engine")]) == 0
    report = json.loads(capsys.readouterr().out)
    layer = next(entry for entry in report["layers"] if entry["name"] == convs[0].name)
    assert "zeros_fast" in layer["rejected_tactics"]


def test_no_candidate_left_fails_the_build(monkeypatch) -> None:
    monkeypatch.setitem(CPU_TACTICS, "conv", (Zeros, Raises))
    with pytest.raises(BuildError, match="every candidate tactic disagrees"):
        edge_infer.build(branchy())


def test_the_flag_turns_it_off_on_the_command_line(tmp_path) -> None:
    model = tmp_path / "branchy.onnx"
    model.write_bytes(export_onnx(branchy().graph).SerializeToString())
    for flag, expect in (([], True), (["--no-verify-tactics"], False)):
        out = tmp_path / f"e{len(flag)}.engine"
        assert main(["build", str(model), "-o", str(out), "--quiet", "--no-tune", *flag]) == 0
        record = edge_infer.Engine.load(out).build_record
        assert record["options"]["verify_tactics"] is expect
        assert ("--no-verify-tactics" in record["rebuild_command"]) is (not expect)


class _Timed:
    def __init__(self, name: str) -> None:
        self.name, self.calls = name, 0

    def run(self) -> None:
        self.calls += 1


def test_a_cached_winner_is_checked_before_it_is_used(tmp_path) -> None:
    """Rebuild with a warm timing cache: only the cached winner is checked; when it fails
    (a kernel recompiled wrong since), the others are checked and timed and one wins."""
    cache = TimingCache({"kind": "test"}, tmp_path / "timing.json")
    cache.put("layer", "fast_wrong", {"fast_wrong": 1.0, "a": 5.0, "b": 6.0})
    checked: list[list[str]] = []

    def check(tactics: list[Any]) -> list[Any]:
        checked.append([t.name for t in tactics])
        return [t for t in tactics if t.name != "fast_wrong"]

    cands = [_Timed("a"), _Timed("b"), _Timed("fast_wrong")]
    winner, times = tune_layer("layer", cands, lambda t: t.run, cache, check=check)
    assert checked == [["fast_wrong"], ["a", "b"]]
    assert winner in ("a", "b") and set(times) == {"a", "b"} and cands[2].calls == 0
    good = [_Timed("a"), _Timed("b")]
    cache.put("layer2", "b", {"a": 5.0, "b": 1.0})
    checked.clear()
    assert tune_layer("layer2", good, lambda t: t.run, cache, check=check)[0] == "b"
    assert checked == [["b"]] and good[0].calls == good[1].calls == 0


def test_integer_outputs_allow_one_step_and_no_more() -> None:
    want = np.array([[-128, -3, 0, 5, 127]], np.int8)
    assert disagreement(want.copy(), want) is None
    one = want.copy()
    one[0, 2] = 1  # an exp activation's last float32 bit moved a half by one step
    assert disagreement(one, want) is None
    two = want.copy()
    two[0, 3] = 7
    why = disagreement(two, want)
    assert why is not None and "2 steps" in why and "(0, 3)" in why


def _int8_layer():  # type: ignore[no-untyped-def]
    """A QConv layer reading an int8 tensor, from a real INT8 engine."""
    from edge_infer.engine.calibration import calibrate
    from tests.engine.precision.conftest import SIZE, conv_net, frames

    cache = calibrate(conv_net(), frames(3), calibrator="minmax").cache
    engine = edge_infer.build(
        conv_net(),
        options=BuildOptions(
            shapes={"x": (1, 3, SIZE, SIZE)}, tune=False, precision="int8", calibration=cache
        ),
    )
    return next(
        n
        for n in engine.graph(1).nodes
        if n.op_type == "QConv" and np.dtype(n.inputs[0].dtype) == np.int8
    )


def test_int8_layers_are_checked_on_random_int8_inputs() -> None:
    """Zeros would make every conv output its bias: a kernel ignoring its input would pass.
    The layer reads a ReLU's int8 output: every value of [0, 127] and none below."""
    node = _int8_layer()
    assert node.inputs[0].producer.attrs["activation"] == "relu"
    x = layer_inputs(node)[0]
    assert x.dtype == np.int8 and x.min() == 0 and x.max() == 127
    assert len(np.unique(x)) == 128
    # the range is part of the timing-cache key: timings taken on other inputs are not reused
    spec = qconv_spec(node)
    assert spec is not None and spec.signature().endswith(" x_range=[0, 127]")


def _int8_producer(activation: str, params: tuple = (), residual: str = "none", scale=0.05):  # type: ignore[no-untyped-def]
    g = Graph()
    x = g.add_input("x", TensorType((1, 4, 8, 8), np.dtype(np.int8)))
    attrs = {"activation": activation, "activation_params": params, "residual": residual}
    attrs |= {"out_precision": "int8", "out_scale": scale, "x_scale": 0.1}
    return g.add_node("QConv", [x], ["y"], attrs, domain=DOMAIN).outputs[0], g


def test_the_int8_range_of_an_activation_output() -> None:
    """The values a QConv's int8 output can hold under its activation, at its scale."""
    assert int8_value_range(_int8_producer("relu")[0]) == (0, 127)
    assert int8_value_range(_int8_producer("")[0]) == (-128, 127)
    # SiLU's minimum -0.27846 at scale 0.05: -5.57 rounds to -6
    assert int8_value_range(_int8_producer("silu")[0]) == (-6, 127)
    assert int8_value_range(_int8_producer("clip", (0.0, 6.0), scale=0.1)[0]) == (0, 60)
    assert int8_value_range(_int8_producer("sigmoid", scale=0.02)[0]) == (0, 50)
    # a residual added after the activation can take the sum anywhere
    assert int8_value_range(_int8_producer("relu", residual="post")[0]) == (-128, 127)
    # max pooling only picks values
    y, g = _int8_producer("relu")
    pooled = g.add_node("MaxPool", [y], ["p"], {"kernel_shape": [2, 2]}).outputs[0]
    assert int8_value_range(pooled) == (0, 127)
    # an int8 graph input: nothing known
    assert int8_value_range(g.inputs[0]) == (-128, 127)


def _reformatted(activation: str, params: tuple = (), residual: str = "none", fp16=False):  # type: ignore[no-untyped-def]
    """A float conv under ``activation`` whose output a Reformat stores as int8 at 0.05 (a
    layer kept in FP32 or FP16 inside an INT8 engine), concatenated with a ReLU QConv's."""
    g = Graph()
    x = g.add_input("x", TensorType((1, 4, 8, 8), np.dtype(np.float32)))
    attrs = {"activation": activation, "activation_params": params, "residual": residual}
    if fp16:
        conv = g.add_node(
            "Fp16Layer",
            [x],
            ["f"],
            {"op": "FusedConv", "op_domain": DOMAIN, "op_attrs": attrs},
            domain=DOMAIN,
        )
    else:
        conv = g.add_node("FusedConv", [x], ["f"], attrs, domain=DOMAIN)
    q = g.add_node("Reformat", conv.outputs, ["q"], {"to": "int8", "y_scale": 0.05}, domain=DOMAIN)
    return q.outputs[0], g


def test_the_int8_range_of_a_float_layer_reformatted() -> None:
    """A mixed-precision engine's float layer feeding INT8 ones: its activation bounds the
    int8 values as a QConv's would (the INT8 readers are timed and checked on that range), one
    step wider where the float kernels approximate the activation."""
    # SiLU at 0.05: the QConv's (-6, 127), widened: the float SiLU is a vector exp's
    assert int8_value_range(_reformatted("silu")[0]) == (-7, 127)
    assert int8_value_range(_reformatted("silu", fp16=True)[0]) == (-7, 127)
    # ReLU and clip are exact in the float kernels
    assert int8_value_range(_reformatted("relu")[0]) == (0, 127)
    assert int8_value_range(_reformatted("clip", (0.0, 6.0))[0]) == (0, 120)
    # no activation, or a residual after it: nothing known
    assert int8_value_range(_reformatted("")[0]) == (-128, 127)
    assert int8_value_range(_reformatted("relu", residual="post")[0]) == (-128, 127)
    # concatenated with an int8 ReLU output: the union
    q, g = _reformatted("silu")
    r = g.add_node(
        "QConv",
        [g.add_input("z", TensorType((1, 4, 8, 8), np.dtype(np.int8)))],
        ["r"],
        {
            "activation": "relu",
            "activation_params": (),
            "residual": "none",
            "out_precision": "int8",
            "out_scale": 0.05,
            "x_scale": 0.1,
        },
        domain=DOMAIN,
    ).outputs[0]
    cat = g.add_node("Concat", [q, r], ["c"], {"axis": 1}).outputs[0]
    assert int8_value_range(cat) == (-7, 127)
    # an INT8 layer's float output (a float layer reads it too), reformatted for an INT8 one
    g3 = Graph()
    z = g3.add_input("z", TensorType((1, 4, 8, 8), np.dtype(np.int8)))
    attrs = {"activation": "silu", "activation_params": (), "residual": "none"}
    f = g3.add_node(
        "QConv", [z], ["f"], {**attrs, "out_precision": "fp32", "x_scale": 0.1}, domain=DOMAIN
    )
    q3 = g3.add_node("Reformat", f.outputs, ["q"], {"to": "int8", "y_scale": 0.05}, domain=DOMAIN)
    assert int8_value_range(q3.outputs[0]) == (-7, 127)
    # a float graph input reformatted: nothing known
    g2 = Graph()
    x = g2.add_input("x", TensorType((1, 4, 8, 8), np.dtype(np.float32)))
    q2 = g2.add_node("Reformat", [x], ["q"], {"to": "int8", "y_scale": 0.05}, domain=DOMAIN)
    assert int8_value_range(q2.outputs[0]) == (-128, 127)


class Silent(Tactic):
    """Writes nothing at all."""

    name = "silent"

    def __init__(self, spec: Any) -> None:
        pass

    @classmethod
    def applicable(cls, spec: Any) -> bool:
        return True

    def bind(self, inputs, outputs, scratch):  # type: ignore[no-untyped-def]
        return lambda: None


def test_an_int8_output_never_written_is_caught() -> None:
    node = _int8_layer()
    ins = layer_inputs(node)
    want = reference_outputs(node, ins)
    why = check_tactic(node, Silent(None), ins, want, lambda t, i, o: t.bind(i, o, None))
    assert why is not None and "steps" in why


class OneStepOff(Tactic):
    """The reference's result with one element a float16 step away (a flipped rounding)."""

    name = "one_step_off"

    def __init__(self, want: np.ndarray) -> None:
        self.want = want

    @classmethod
    def applicable(cls, spec: Any) -> bool:
        return True

    def bind(self, inputs, outputs, scratch):  # type: ignore[no-untyped-def]
        def run() -> None:
            outputs[0][...] = self.want
            flat = outputs[0].reshape(-1)
            i = int(np.argmax(np.abs(flat)))
            flat[i] = np.nextafter(np.float16(flat[i]), np.float16(np.inf)).astype(flat.dtype)

        return run


def test_an_fp16_layer_stored_in_float32_is_checked_at_float16_tolerance() -> None:
    """YOLO's last Sigmoid: an FP16 layer whose output the engine keeps in float32. Its
    results are float16 roundings; one flipped rounding must not reject the candidate."""
    from tests.engine.precision.conftest import SIZE, conv_net

    engine = edge_infer.build(
        conv_net(),
        options=BuildOptions(shapes={"x": (1, 3, SIZE, SIZE)}, tune=False, precision="fp16"),
    )
    node = next(
        n
        for n in engine.graph(1).nodes
        if n.op_type == "Fp16Layer" and np.dtype(n.outputs[0].dtype) == np.float32
    )
    ins = layer_inputs(node)
    want = reference_outputs(node, ins)
    bind = lambda t, i, o: t.bind(i, o, None)  # noqa: E731
    assert check_tactic(node, OneStepOff(want[0]), ins, want, bind) is None
    twice = OneStepOff(want[0] * np.float32(1.01))
    assert check_tactic(node, twice, ins, want, bind) is not None
