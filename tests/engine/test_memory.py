"""The static memory plan: no two live buffers overlap; aliases share memory; no allocations."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest

import edge_infer
from edge_infer.engine.backends.cpu import jit
from edge_infer.engine.backends.cpu.program import CpuProgram
from edge_infer.engine.memory import find_aliases, make_views, plan_memory, root_of
from edge_infer.engine.network import Network
from edge_infer.engine.reference import execute_graph


def branchy(batch: int = 1) -> Network:
    net = Network("branchy", seed=2)
    x = net.add_input("x", (batch, 8, 16, 16))
    a = net.add_activation(net.add_convolution(x, 8, 3, padding=1), "relu")
    b = net.add_activation(net.add_convolution(a, 8, 1), "silu")
    c = net.add_activation(net.add_convolution(a, 8, 3, padding=1), "relu")
    d = net.add_concatenation([b, c], axis=1)
    e = net.add_elementwise(d, net.add_convolution(x, 16, 1), "sum")
    f = net.add_pooling(e, "max", 5, stride=1, padding=2)
    net.mark_output(net.add_layer("Reshape", [f, net.add_constant(
        np.array([0, -1], np.int64))]), "out")
    return net


def _optimized_graph(batch: int = 1):
    engine = edge_infer.build(branchy(batch), shapes={"x": (batch, 8, 16, 16)}, tune=False)
    return engine.graph(batch)


def test_live_buffers_never_overlap() -> None:
    graph = _optimized_graph()
    plan = plan_memory(graph)
    nodes = graph.nodes
    life: dict[str, list[int]] = {}
    for step, node in enumerate(nodes):
        for v in [*node.inputs, *node.outputs]:
            if v is not None and v.const is None:
                root = root_of(v.name, plan.aliases)
                life.setdefault(root, [step, step])
                life[root][0] = min(life[root][0], step)
                life[root][1] = max(life[root][1], step)
    for v in graph.inputs:
        life[v.name][0] = -1
    for _, v in graph.outputs:
        life[root_of(v.name, plan.aliases)][1] = len(nodes)
    roots = list(plan.offsets)
    for i, a in enumerate(roots):
        for b in roots[i + 1:]:
            la, lb = life[a], life[b]
            if la[1] < lb[0] or lb[1] < la[0]:
                continue
            oa, ob = plan.offsets[a], plan.offsets[b]
            assert oa + plan.sizes[a] <= ob or ob + plan.sizes[b] <= oa, (a, b)
    assert plan.arena_bytes < plan.naive_bytes


def test_aliases_share_memory_and_results_match_reference() -> None:
    graph = _optimized_graph()
    aliases = find_aliases(graph)
    assert aliases, "concat elimination / reshape should create aliases"
    plan = plan_memory(graph)
    arena = np.zeros(plan.arena_bytes, np.uint8)
    views = make_views(graph, plan, arena)
    for name, alias in aliases.items():
        assert np.shares_memory(views[name], views[root_of(alias.parent, aliases)])
    x = np.random.default_rng(0).standard_normal((1, 8, 16, 16)).astype(np.float32)
    program = CpuProgram(graph)
    ours = program.run(program.new_state(), {"x": x})["out"]
    ref = execute_graph(branchy().graph, {"x": x})["out"]
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def depthwise(batch: int = 1) -> Network:
    """A depthwise layer: the one CPU tactic with a numba loop and a numpy fallback."""
    net = Network("depthwise", seed=3)
    x = net.add_input("x", (batch, 32, 32, 32))
    a = net.add_activation(net.add_convolution(x, 32, 3, padding=1, groups=32), "relu")
    net.mark_output(net.add_convolution(a, 4, 1), "out")  # small: the copy returned
    return net


@pytest.mark.parametrize("loops", ["numba", "numpy"])
@pytest.mark.parametrize("model", [branchy, depthwise])
@pytest.mark.parametrize("batch", [1, 2])
def test_execute_allocates_no_activation_buffers_after_warmup(
    batch: int, model: Any, loops: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The promise holds with and without the ``fast`` extra (numba's compiled loops)."""
    if loops == "numba" and not jit.available():
        pytest.skip("numba (the `fast` extra) is not installed; the numpy case covers this")
    if loops == "numpy":
        monkeypatch.setattr(jit, "available", lambda: False)  # as on a machine without numba
    shape = (batch, 32, 32, 32) if model is depthwise else (batch, 8, 16, 16)
    engine = edge_infer.build(model(batch), shapes={"x": shape}, tune=False)
    if model is depthwise:
        tactics = [n.meta.get("tactic") for n in engine.graph(batch).nodes]
        assert "depthwise_direct" in tactics, tactics
    ctx = engine.create_context()
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    for _ in range(3):
        ctx.execute({"x": x})
    graph = engine.graph(batch)
    activations = sum(v.type.nbytes for v in graph.values.values()
                      if v.const is None and v.type is not None)
    output_bytes = sum(v.type.nbytes for _, v in graph.outputs)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        out = ctx.execute({"x": x})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out["out"].nbytes == output_bytes
    transient = peak - before
    # the only allocation is the returned output copy (plus bookkeeping) — far below
    # what allocating activations would cost
    assert transient < output_bytes + 64 * 1024, (transient, output_bytes)
    assert transient < activations / 4
