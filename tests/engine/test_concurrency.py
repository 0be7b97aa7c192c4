"""Branch parallelism and concurrent contexts give the same numbers as sequential runs."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import edge_infer
from edge_infer.engine.backends.cpu.program import CpuProgram
from edge_infer.engine.backends.cpu.schedule import lanes, stage_of
from edge_infer.engine.backends.cpu.threads import (
    ThreadBudget,
    blas_threads,
    per_context_threads,
    set_thread_budget,
    thread_budget,
)
from edge_infer.engine.network import Network
from edge_infer.engine.options import BuildOptions
from edge_infer.engine.reference import execute_graph
from tests.engine.test_network import inception_3a


@pytest.fixture(scope="module")
def inception():
    net = inception_3a(1)
    engine = edge_infer.build(net, tune=False)
    x = np.random.default_rng(0).standard_normal((1, 192, 28, 28)).astype(np.float32)
    return net, engine, x, execute_graph(net.graph, {"data": x})["out"]


def test_inception_branches_form_one_parallel_stage(inception) -> None:
    _, engine, _, _ = inception
    graph = engine.graph(1)
    stages = stage_of(graph)
    layers = [n for n in graph.nodes if not n.meta.get("noop")]
    by_stage: dict[int, list[str]] = {}
    for node in layers:
        by_stage.setdefault(stages[node.name], []).append(node.name)
    # the merged 1x1 convs run beside the max pool; the 3x3 and 5x5 convs beside each other
    assert sorted(len(v) for v in by_stage.values())[-2:] == [2, 2], by_stage
    balanced = lanes([graph.node(n) for n in max(by_stage.values(), key=len)], 2)
    assert len(balanced) == 2


@pytest.mark.parametrize("schedule", ["sequential", "parallel"])
def test_schedules_match_reference(inception, schedule) -> None:
    _, engine, x, ref = inception
    program = CpuProgram(engine.graph(1), schedule)
    state = program.new_state()
    try:
        for _ in range(3):
            out = program.run(state, {"data": x})["out"]
            np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    finally:
        state.close()


def test_parallel_plan_never_shares_memory_within_a_stage(inception) -> None:
    _, engine, _, _ = inception
    graph = engine.graph(1)
    parallel = CpuProgram(graph, "parallel")
    stages = stage_of(graph)
    for a in parallel.layers:
        for b in parallel.layers:
            if a is b or stages[a.node.name] != stages[b.node.name]:
                continue
            for va in a.node.outputs:
                for vb in b.node.outputs:
                    ra, rb = va.name, vb.name
                    if ra in parallel.plan.offsets and rb in parallel.plan.offsets:
                        oa, ob = parallel.plan.offsets[ra], parallel.plan.offsets[rb]
                        assert (
                            oa + parallel.plan.sizes[ra] <= ob or ob + parallel.plan.sizes[rb] <= oa
                        )


def test_several_contexts_share_one_engine(inception) -> None:
    _, engine, x, ref = inception
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with engine.create_context() as ctx:
                for _ in range(3):
                    out = ctx.execute({"data": x})["out"]
                    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_thread_budget_splits_cores_between_contexts() -> None:
    before = thread_budget()
    try:
        budget = set_thread_budget(cores=4, concurrent_contexts=2)
        assert budget.per_context == 2
        assert blas_threads() == 1, "BLAS runs single-threaded; our work pools share layers"
        assert set_thread_budget(cores=2, concurrent_contexts=4).per_context == 1
    finally:
        set_thread_budget(before.cores, before.concurrent_contexts)


def test_one_core_per_context_never_runs_branch_lanes(inception) -> None:
    """With one core for the context (the daemon's workers), a "parallel" plan runs in
    order — lanes would oversubscribe the budget — and the builder does not pick it."""
    net, engine, x, ref = inception
    before = thread_budget()
    try:
        set_thread_budget(cores=1)
        program = CpuProgram(engine.graph(1), "parallel")
        state = program.new_state()
        try:
            assert state.runner is None
            out = program.run(state, {"data": x})["out"]
            np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
        finally:
            state.close()
        tuned = edge_infer.build(net, tune=True)
        assert tuned.graph(1).meta["schedule"] == "sequential"
        assert "schedule_times_us" not in tuned.graph(1).meta
    finally:
        set_thread_budget(before.cores, before.concurrent_contexts)


def test_a_parallel_plan_on_one_core_runs_stage_by_stage() -> None:
    """A "parallel" plan's buffers are live per stage, and in YOLOv8n the graph's own order
    interleaves stages: run on one core it must follow the stages (outputs identical)."""
    from edge_infer.zoo import build_model

    model = build_model("yolov8n", imgsz=96, nc=3, batch=2, fold_bn=True).SerializeToString()
    graph = edge_infer.build(model, tune=False).graph(2)
    x = np.random.default_rng(1).standard_normal((2, 3, 96, 96)).astype(np.float32)
    before = thread_budget()
    try:
        set_thread_budget(cores=1)
        outs = {}
        for schedule in ("sequential", "parallel"):
            program = CpuProgram(graph, schedule)
            state = program.new_state()
            try:
                assert state.runner is None
                outs[schedule] = program.run(state, {"images": x})
            finally:
                state.close()
    finally:
        set_thread_budget(before.cores, before.concurrent_contexts)
    for name, ref in outs["sequential"].items():
        np.testing.assert_allclose(outs["parallel"][name], ref, rtol=1e-5, atol=1e-5)


def test_build_times_tactics_at_the_requested_width(inception) -> None:
    """The CPU backend option threads: tactics timed with that many threads per context (one
    thread: the branch-parallel schedule is not even timed), recorded, and the budget
    restored."""
    net, _, x, ref = inception
    before = thread_budget()
    try:
        set_thread_budget(cores=4)
        engine = edge_infer.build(net, options=BuildOptions(backend_options={"threads": 1}))
        assert engine.build_record["backend_settings"] == {"threads_per_context": 1}
        assert engine.tuned_settings == {"threads_per_context": 1}
        assert engine.tuning_notes() == [
            "tactics were timed with threads_per_context=1, this process runs threads_per_context=4"
        ]
        assert engine.graph(1).meta["schedule"] == "sequential"
        assert "schedule_times_us" not in engine.graph(1).meta
        assert thread_budget() == ThreadBudget(4, 1)  # restored
        with pytest.raises(RuntimeError, match="inside"), per_context_threads(2) as inner:
            assert inner.per_context == 2 and thread_budget().per_context == 2
            raise RuntimeError("inside")
        assert thread_budget() == ThreadBudget(4, 1)
        with engine.create_context() as ctx:
            out = ctx.execute({"data": x})["out"]
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    finally:
        set_thread_budget(before.cores, before.concurrent_contexts)


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2", True])
def test_cpu_threads_option_is_checked_before_any_work(threads: object) -> None:
    from edge_infer.errors import BackendError

    net = Network("tiny", seed=0)
    x = net.add_input("x", (1, 3, 8, 8))
    net.mark_output(net.add_convolution(x, 4, 3, padding=1), "y")
    with pytest.raises(BackendError, match="threads must be an integer"):
        edge_infer.build(net, options=BuildOptions(backend_options={"threads": threads}))
    with pytest.raises(BackendError, match="unknown CPU backend options"):
        edge_infer.build(net, options=BuildOptions(backend_options={"streams": 2}))


@pytest.mark.parametrize(
    ("parallel_ratio", "expected"),
    [(0.5, "parallel"), (0.9, "parallel"), (0.92, "sequential"), (1.3, "sequential")],
)
def test_branch_lanes_need_a_clear_paired_win(inception, monkeypatch, parallel_ratio, expected):
    """The schedule is chosen from paired rounds (both schedules timed back to back), and
    branch lanes only when their median ratio to the sequential schedule is at most
    PARALLEL_GAIN: a few percent either way is a loaded host's noise."""
    from edge_infer.engine.backends.cpu import backend
    from edge_infer.engine.tactics import autotune

    calls = []

    def fake_paired(runs, **kwargs):
        calls.append((sorted(runs), kwargs))
        for run in runs.values():  # each schedule really runs
            run()
        base = [1e-3, 1.2e-3, 0.9e-3, 1.1e-3, 1e-3, 1e-3]
        # one outlier round in the lanes' favour does not move the median
        ratios = [parallel_ratio] * 5 + [0.1]
        return {"sequential": base, "parallel": [b * r for b, r in zip(base, ratios)]}

    monkeypatch.setattr(autotune, "time_paired", fake_paired)
    graph = inception[1].graph(1)
    monkeypatch.setattr(graph, "meta", dict(graph.meta))  # the module's engine keeps its own
    before = thread_budget()
    try:
        set_thread_budget(cores=2)
        chosen = backend._pick_schedule(graph, np.random.default_rng(0), None, backend.Timer())
    finally:
        set_thread_budget(before.cores, before.concurrent_contexts)
    assert backend.PARALLEL_GAIN == 0.9
    assert chosen == expected
    assert calls == [(["parallel", "sequential"], calls[0][1])]
    assert calls[0][1]["give_up"] == pytest.approx(1 / 0.9)
    times = graph.meta["schedule_times_us"]
    assert times["sequential"] == pytest.approx(900.0)  # the baseline's fastest round
    assert times["parallel"] == pytest.approx(900.0 * parallel_ratio)
