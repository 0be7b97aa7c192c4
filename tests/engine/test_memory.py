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
    net.mark_output(
        net.add_layer("Reshape", [f, net.add_constant(np.array([0, -1], np.int64))]), "out"
    )
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
                root = root_of(v.name, plan.links)  # views and in-place outputs
                life.setdefault(root, [step, step])
                life[root][0] = min(life[root][0], step)
                life[root][1] = max(life[root][1], step)
    for v in graph.inputs:
        life[v.name][0] = -1
    for _, v in graph.outputs:
        life[root_of(v.name, plan.links)][1] = len(nodes)
    roots = list(plan.offsets)
    for i, a in enumerate(roots):
        for b in roots[i + 1 :]:
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
    arena = np.zeros(plan.total_bytes, np.uint8)
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
    activations = sum(
        v.type.nbytes for v in graph.values.values() if v.const is None and v.type is not None
    )
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


@pytest.mark.parametrize("batch", [1, 3])
def test_recurrent_layers_allocate_nothing_after_warmup(batch: int) -> None:
    """The same promise for a model whose time is in LSTMs (the zoo's CRNN): the
    ``recurrent_native`` tactic (the default for its LSTMs) keeps its projection, gates and state
    in buffers made at bind."""
    from edge_infer.zoo.crnn import build_crnn

    shape = (batch, 3, 32, 128)
    engine = edge_infer.build(
        build_crnn(batch=None, width=None, hidden=64), shapes={"image": shape}, tune=False
    )
    graph = engine.graph(batch)
    assert [n.meta.get("tactic") for n in graph.nodes].count("recurrent_native") == 2
    ctx = engine.create_context()
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    for _ in range(3):
        ctx.execute({"image": x})
    activations = sum(
        v.type.nbytes for v in graph.values.values() if v.const is None and v.type is not None
    )
    output_bytes = sum(v.type.nbytes for _, v in graph.outputs)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        out = ctx.execute({"image": x})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out["logits"].nbytes == output_bytes
    transient = peak - before
    assert transient < output_bytes + 64 * 1024, (transient, output_bytes)
    assert transient < activations / 4


def _numpy_slicing_views(graph, plan, arena: np.ndarray) -> dict[str, np.ndarray]:
    """The views as make_views built them before address records: roots at their offsets,
    aliases by numpy slicing and reshaping of their parents (the oracle of the records)."""
    views = {
        name: arena[offset : offset + graph.value(name).type.nbytes]
        .view(graph.value(name).dtype)
        .reshape(graph.value(name).shape)
        for name, offset in plan.offsets.items()
    }

    def view(name: str) -> np.ndarray:
        if name not in views:
            alias = plan.links[name]  # an in-place output: its input, as a reshape
            parent = view(alias.parent)
            if alias.axis is None:
                views[name] = parent.reshape(graph.value(name).shape)
            else:
                index = [slice(None)] * parent.ndim
                index[alias.axis] = slice(alias.start, alias.stop)
                views[name] = parent[tuple(index)]
        return views[name]

    for name in plan.links:
        view(name)
    return views


def _yolo_like(batch: int) -> Network:
    """C2f-like: a conv split in two, both halves and a bottleneck concatenated; SPPF pools."""
    net = Network("c2f", seed=5)
    x = net.add_input("x", (batch, 8, 16, 16))
    a = net.add_activation(net.add_convolution(x, 16, 1), "silu")
    b = net.add_activation(net.add_convolution(a, 16, 3, padding=1), "silu")
    c = net.add_concatenation([a, b], axis=1)
    p1 = net.add_pooling(c, "max", 5, stride=1, padding=2)
    p2 = net.add_pooling(p1, "max", 5, stride=1, padding=2)
    d = net.add_concatenation([c, p1, p2], axis=1)
    net.mark_output(net.add_convolution(d, 8, 1), "out")
    return net


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("model", [branchy, _yolo_like])
def test_address_records_match_numpy_views(model: Any, precision: str) -> None:
    """Every value's record (buffer, byte offset, shape, byte strides) is the view the numpy
    slicing path made, in the storage dtype of the engine (float16 halves every stride)."""
    from edge_infer.engine.builder import BuildOptions

    engine = edge_infer.build(
        model(2),
        options=BuildOptions(shapes={"x": (2, 8, 16, 16)}, tune=False, precision=precision),
    )
    graph = engine.graph(2)
    plan = plan_memory(graph)
    assert plan.aliases
    arena = np.zeros(plan.total_bytes, np.uint8)
    base = arena.__array_interface__["data"][0]
    old = _numpy_slicing_views(graph, plan, arena)
    assert set(plan.addresses) == set(old)
    for name, view in old.items():
        record = plan.addresses[name]
        assert record.offset == view.__array_interface__["data"][0] - base, name
        assert (record.shape, record.strides, record.dtype) == (
            view.shape,
            view.strides,
            view.dtype,
        ), name
        assert record.strides[-1] == record.dtype.itemsize
        assert record.buffer == root_of(name, plan.links)
    itemsizes = {
        r.dtype.itemsize
        for n, r in plan.addresses.items()
        if not graph.is_graph_input(graph.value(n))
    }
    assert itemsizes == ({4} if precision == "fp32" else {2, 4})  # fp16 between layers
    new = make_views(graph, plan, arena)
    for name, view in old.items():
        assert np.shares_memory(new[name], view) and new[name].strides == view.strides


def test_engine_io_lives_after_the_activations() -> None:
    graph = _optimized_graph()
    plan = plan_memory(graph)
    io = [v.name for v in graph.inputs] + [root_of(v.name, plan.aliases) for _, v in graph.outputs]
    for name in io:
        assert plan.offsets[name] >= plan.arena_bytes
    assert plan.total_bytes == plan.arena_bytes + plan.io_bytes
    assert plan.to_json()["io_bytes"] == plan.io_bytes
