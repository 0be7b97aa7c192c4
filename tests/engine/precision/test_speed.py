"""INT8 where it is faster: layer groups across two engines' profiles, and the search
(with stand-in timings: the choice logic, not this machine's speed, is under test)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest

from edge_infer.engine import precision_speed
from edge_infer.engine.builder import BuildOptions, build
from edge_infer.engine.calibration import calibrate
from edge_infer.engine.precision_speed import int8_where_faster, layer_groups
from edge_infer.engine.runtime import Engine
from tests.engine.precision.conftest import SIZE, frames

SHAPES = {"x": (1, 3, SIZE, SIZE)}


def _entry(name: str, op: str, members: list[str], us: float) -> dict[str, Any]:
    return {"name": name, "op": op, "members": members, "tactic": "t", "time_us": us}


def test_layer_groups_join_layers_that_share_model_nodes() -> None:
    int8 = [
        _entry("a", "QConv", ["a", "relu_a"], 50.0),
        _entry("b", "QConv", ["b"], 30.0),
        _entry("c", "QConv", ["c", "add_c"], 40.0),
        _entry("pool", "MaxPool", ["pool"], 5.0),
        _entry("d", "FusedConv", ["d"], 9.0),  # not INT8 in the INT8 engine: no group
    ]
    fp32 = [
        _entry("a", "FusedConv", ["a", "relu_a"], 20.0),
        _entry("b", "Chain", ["b", "c", "add_c"], 100.0),  # one layer for two INT8 ones
        _entry("pool", "MaxPool", ["pool"], 5.0),
        _entry("d", "FusedConv", ["d"], 9.0),
    ]
    groups = layer_groups(int8, fp32)
    assert [sorted(g.convs) for g in groups] == [["a"], ["b", "c"]]  # most slower first
    a, bc = groups
    assert (a.int8_us, a.other_us, a.slower) == (50.0, 20.0, True)
    assert (bc.int8_us, bc.other_us, bc.slower) == (70.0, 100.0, False)
    assert sorted(bc.int8_layers) == ["b", "c"] and bc.other_layers == ["b"]


@pytest.fixture
def options(model: onnx.ModelProto) -> BuildOptions:
    cache = calibrate(model, frames(4), calibrator="minmax").cache
    return BuildOptions(shapes=SHAPES, tune=False, precision="int8", extra={"calibration": cache})


def _stand_in_profiles(monkeypatch: pytest.MonkeyPatch, slow: str, **int8_us: float) -> None:
    """Profiles where every FP32 layer takes 10 us and every INT8 layer 1 us, but INT8 layer
    ``slow`` 1000 us (and those named in ``int8_us`` as given)."""
    real = Engine.profile_layers
    times = {slow: 1000.0, **int8_us}

    def profile(self: Engine, feeds: Any, *, iterations: int = 10) -> list[dict[str, Any]]:
        entries = real(self, feeds, iterations=1)
        int8 = any(e["op"] == "QConv" for e in entries)
        for e in entries:
            e["time_us"] = 10.0 if not int8 else times.get(e["name"], 1.0)
        return entries

    monkeypatch.setattr(Engine, "profile_layers", profile)


def _ops(engine: Engine) -> dict[str, str]:
    return {n.name: n.op_type for n in engine.graph(1).nodes}


@pytest.mark.parametrize("mixed_wins", [True, False])
def test_search_falls_back_the_slower_layers_when_that_is_faster(
    model: onnx.ModelProto,
    options: BuildOptions,
    monkeypatch: pytest.MonkeyPatch,
    mixed_wins: bool,
) -> None:
    _stand_in_profiles(monkeypatch, slow="conv2")
    times = {"int8": 2.0, "mixed@0": 5.0, "mixed@1": 1.0 if mixed_wins else 3.0, "fp32": 4.0}
    timed: list[list[str]] = []

    def alternate(engines: dict[str, Engine], *args: Any) -> dict[str, float]:
        timed.append(sorted(engines))
        return {k: times[k] for k in engines}

    monkeypatch.setattr(precision_speed, "_alternate", alternate)
    messages: list[str] = []
    result = int8_where_faster(model, options, report=messages.append)
    # two candidates: every conv (margin 0), conv2 (margins 1 and 1.5 alike)
    assert timed == [["fp32", "int8", "mixed@0", "mixed@1"]]
    assert [g.convs for g in result.groups if g.slower] == [["conv2"]]
    assert result.latency_ms == times
    ops = _ops(result.engine)
    if mixed_wins:
        assert result.fallen_back == ["conv2"]
        assert result.options.layer_precision == {"conv2": "fp32"}
        assert ops["conv1"] == "QConv" and ops["conv3"] == "QConv" and ops["conv2"] != "QConv"
    else:
        assert result.fallen_back == [] and result.options.layer_precision == {}
        assert {ops["conv1"], ops["conv2"], ops["conv3"]} == {"QConv"}
    assert any("1 of 3 groups" in m for m in messages)
    # the engine chosen computes what its options say
    x = frames(1, seed=9)[0][None]
    again = build(model, options=result.options)
    np.testing.assert_array_equal(
        result.engine.create_context().execute({"x": x})["y"],
        again.create_context().execute({"x": x})["y"],
    )


def test_a_wider_margin_moves_fewer_layers_and_may_win(
    model: onnx.ModelProto, options: BuildOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stand_in_profiles(monkeypatch, slow="conv2", conv3=12.0)  # conv3 only 1.2x its FP32
    times = {"int8": 2.0, "mixed@0": 3.0, "mixed@1": 1.5, "mixed@1.5": 1.0, "fp32": 4.0}
    monkeypatch.setattr(precision_speed, "_alternate", lambda e, *a: {k: times[k] for k in e})
    result = int8_where_faster(model, options, report=lambda m: None)
    assert result.fallen_back == ["conv2"]
    assert result.options.layer_precision == {"conv2": "fp32"}
    times["mixed@1"] = 0.5
    result = int8_where_faster(model, options, report=lambda m: None)
    assert sorted(result.fallen_back) == ["conv2", "conv3"]
    ops = _ops(result.engine)
    assert ops["conv1"] == "QConv" and "QConv" not in (ops["conv2"], ops["conv3"])
    times["mixed@0"] = 0.1  # INT8 does not pay here at all: every conv falls back
    result = int8_where_faster(model, options, report=lambda m: None)
    assert sorted(result.fallen_back) == ["conv1", "conv2", "conv3"]
    assert "QConv" not in _ops(result.engine).values()


def test_search_keeps_all_int8_when_no_layer_is_slower(
    model: onnx.ModelProto, options: BuildOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stand_in_profiles(monkeypatch, slow="none")

    def alternate(*args: Any) -> dict[str, float]:
        raise AssertionError("nothing to compare")

    monkeypatch.setattr(precision_speed, "_alternate", alternate)
    result = int8_where_faster(model, options, report=lambda m: None)
    assert result.fallen_back == [] and result.latency_ms == {}
    assert len(result.groups) == 3 and not any(g.slower for g in result.groups)
    assert {op for n, op in _ops(result.engine).items() if n.startswith("conv")} == {"QConv"}


def test_real_timings_choose_a_working_engine(
    model: onnx.ModelProto, options: BuildOptions
) -> None:
    """No stand-ins: whichever way this machine's timings go, the result is one of the two
    candidates and runs."""
    result = int8_where_faster(model, options, rounds=2, runs=2, report=lambda m: None)
    assert len(result.groups) == 3
    assert set(result.fallen_back) <= {"conv1", "conv2", "conv3"}
    y = result.engine.create_context().execute(result.engine.random_feeds())["y"]
    assert y.shape == (1, 4, SIZE // 2, SIZE // 2) and np.isfinite(y).all()


@pytest.mark.parametrize("threads", [1, 2])
def test_engines_are_timed_at_the_width_they_were_built_for(
    model: onnx.ModelProto,
    options: BuildOptions,
    monkeypatch: pytest.MonkeyPatch,
    threads: int,
) -> None:
    """Built with the CPU's threads option, the engines are profiled and timed with that many
    threads a context, whatever the process's budget (an engine for one thread a context
    judged at two chose its layers for the wrong machine); the budget is restored."""
    from edge_infer.engine.backends.cpu.threads import set_thread_budget, thread_budget

    _stand_in_profiles(monkeypatch, slow="conv2")
    widths: dict[str, set[int]] = {"profile": set(), "alternate": set()}
    profile = Engine.profile_layers

    def profile_at(self: Engine, feeds: Any, *, iterations: int = 10) -> list[dict[str, Any]]:
        widths["profile"].add(thread_budget().per_context)
        return profile(self, feeds, iterations=iterations)

    def alternate(engines: dict[str, Engine], *args: Any) -> dict[str, float]:
        widths["alternate"].add(thread_budget().per_context)
        return {k: 1.0 for k in engines}

    monkeypatch.setattr(Engine, "profile_layers", profile_at)
    monkeypatch.setattr(precision_speed, "_alternate", alternate)
    before = thread_budget()
    try:
        set_thread_budget(cores=4)
        opts = options.replace(backend_options={"threads": threads})
        int8_where_faster(model, opts, report=lambda m: None)
        assert widths == {"profile": {threads}, "alternate": {threads}}
        assert thread_budget().per_context == 4
    finally:
        set_thread_budget(before.cores, before.concurrent_contexts)
