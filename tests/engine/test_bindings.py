"""Caller-owned buffers: bound by name, validated, used in place, enqueued on a stream."""

from __future__ import annotations

import numpy as np
import pytest

import edge_infer
from edge_infer.engine.backends.base import HostStream
from edge_infer.engine.network import Network
from edge_infer.errors import BindingError


def convnet() -> Network:
    """Conv → ReLU → 1x1 conv: the output owns a buffer of its own (no alias)."""
    net = Network("bound", seed=4)
    x = net.add_input("x", ("N", 4, 8, 8))
    a = net.add_activation(net.add_convolution(x, 8, 3, padding=1), "relu")
    net.mark_output(net.add_convolution(a, 6, 1), "y")
    return net


@pytest.fixture(scope="module")
def engine():
    shape = (4, 8, 8)
    return edge_infer.build(
        convnet(),
        min_shapes={"x": (1, *shape)},
        opt_shapes={"x": (2, *shape)},
        max_shapes={"x": (4, *shape)},
        tune=False,
    )


def _x(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 4, 8, 8)).astype(np.float32)


def test_bound_buffers_are_used_in_place(engine) -> None:
    ctx = engine.create_context()
    x, y = _x(2), np.zeros((2, 6, 8, 8), np.float32)
    want = ctx.execute({"x": x})["y"]
    ctx.bind("x", x)
    ctx.bind("y", y)
    got = ctx.execute_bound()
    assert got["y"] is y
    np.testing.assert_array_equal(y, want)
    state = ctx._states[2]
    assert np.shares_memory(state.views["x"], x)  # read where the caller keeps it
    out_value = engine.graph(2).outputs[0][1].name
    assert np.shares_memory(state.views[out_value], y)  # written where the caller wants it
    # the caller refills its buffer; the next run sees the new values, nothing copied
    x[...] = _x(2, seed=1)
    ctx.execute_bound()
    np.testing.assert_array_equal(y, engine.create_context().execute({"x": x})["y"])


def test_execute_after_binding_leaves_caller_buffers_alone(engine) -> None:
    ctx = engine.create_context()
    x, y = _x(2), np.zeros((2, 6, 8, 8), np.float32)
    ctx.bind("x", x)
    ctx.bind("y", y)
    ctx.execute_bound()
    x_before, y_before = x.copy(), y.copy()
    other = ctx.execute({"x": _x(2, seed=5)})["y"]
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(y, y_before)
    assert not np.shares_memory(other, y)
    ctx.unbind("y")  # an unbound output comes back as a new array
    got = ctx.execute_bound()["y"]
    assert not np.shares_memory(got, y)
    np.testing.assert_array_equal(got, y_before)


def test_enqueue_on_a_stream(engine) -> None:
    ctx = engine.create_context()
    x, y = _x(3, seed=2), np.zeros((3, 6, 8, 8), np.float32)
    ctx.bind("x", x)
    ctx.bind("y", y)
    with HostStream() as stream:
        future = ctx.enqueue(stream)
        assert future.result(timeout=60)["y"] is y
    np.testing.assert_array_equal(y, engine.create_context().execute({"x": x})["y"])
    assert ctx.enqueue().result(timeout=60)["y"] is y  # the context's own stream
    ctx.close()


@pytest.mark.parametrize(
    ("name", "array", "match"),
    [
        ("nope", np.zeros((1, 4, 8, 8), np.float32), "no input or output called 'nope'"),
        ("x", [[1.0]], "numpy array"),
        ("x", np.zeros((1, 4, 8, 8), np.float64), "must be float32"),
        ("x", np.zeros((1, 4, 8, 9), np.float32), r"shape \['N', 4, 8, 8\]"),
        (
            "x",
            np.zeros((5, 4, 8, 8), np.float32),
            r"batch 5 is outside the engine's profile \[1, 4\]",
        ),
        ("x", np.zeros((2, 8, 8, 4), np.float32).transpose(0, 3, 1, 2), "C-contiguous"),
    ],
)
def test_invalid_buffers_are_refused(engine, name: str, array: object, match: str) -> None:
    with pytest.raises(BindingError, match=match):
        engine.create_context().bind(name, array)


def test_bad_binding_sets_are_refused(engine) -> None:
    ctx = engine.create_context()
    with pytest.raises(BindingError, match=r"inputs \['x'\] are not bound"):
        ctx.execute_bound()
    frozen = np.zeros((2, 6, 8, 8), np.float32)
    frozen.flags.writeable = False
    with pytest.raises(BindingError, match="writeable"):
        ctx.bind("y", frozen)
    ctx.bind("x", _x(2))
    ctx.bind("y", np.zeros((3, 6, 8, 8), np.float32))
    with pytest.raises(BindingError, match="disagree on the batch size: 2 and 3"):
        ctx.execute_bound()
    with pytest.raises(BindingError, match="nothing is bound to 'z'"):
        ctx.unbind("z")


@pytest.mark.parametrize("schedule", ["sequential", "parallel"])
def test_program_rebinds_only_when_the_memory_changes(schedule: str) -> None:
    """CpuProgram.run_bound: the branchy net's layers (and branch lanes) read a bound input
    in place; binding the same memory again binds nothing anew."""
    from edge_infer.engine.backends.cpu.program import CpuProgram
    from tests.engine.test_memory import branchy

    engine = edge_infer.build(branchy(2), shapes={"x": (2, 8, 16, 16)}, tune=False)
    program = CpuProgram(engine.graph(2), schedule)
    state = program.new_state()
    try:
        x = np.random.default_rng(3).standard_normal((2, 8, 16, 16)).astype(np.float32)
        want = program.run(state, {"x": x})["out"]
        got = program.run_bound(state, {"x": x}, {})["out"]
        np.testing.assert_array_equal(got, want)
        runs = list(state.runs)
        program.run_bound(state, {"x": x[:]}, {})  # a new view of the same memory
        assert state.runs == runs
        x2 = x * 3
        np.testing.assert_array_equal(
            program.run_bound(state, {"x": x2}, {})["out"], program.run(state, {"x": x2})["out"]
        )
        assert not state.bound  # run() put the arena back
    finally:
        state.close()
