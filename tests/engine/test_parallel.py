"""The work pool shares a layer's chunks; the caller never waits for an idle helper."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np
import pytest

from edge_infer.engine.backends.cpu.parallel import WorkPool, split
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics.cpu_conv import CONV_TACTICS
from edge_infer.engine.ops import get_registry
from edge_infer.engine.tactics.base import ConvSpec


def test_split_covers_everything_in_aligned_ranges() -> None:
    assert split(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert split(100, 2, align=16) == [(0, 48), (48, 100)]
    assert split(5, 8) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    assert split(0, 2) == []


def test_chunks_run_once_each_on_several_threads() -> None:
    pool = WorkPool(2)
    seen: list[tuple[int, str]] = []
    lock = threading.Lock()

    def chunk(k: int):
        def run() -> None:
            time.sleep(0.01)
            with lock:
                seen.append((k, threading.current_thread().name))

        return run

    for _ in range(5):
        seen.clear()
        pool.run([chunk(k) for k in range(6)])
        assert sorted(k for k, _ in seen) == list(range(6))
    pool.close()


def test_caller_finishes_alone_when_helpers_are_busy() -> None:
    pool = WorkPool(2)
    release = threading.Event()
    started = threading.Event()

    def hog() -> None:  # occupies the helper thread
        started.set()
        release.wait(5)

    outer = threading.Thread(target=lambda: pool.run([hog, lambda: None]))
    outer.start()
    started.wait(5)
    done = []
    pool.run([lambda: done.append(1), lambda: done.append(2)])  # pool busy: runs inline
    assert done == [1, 2]
    release.set()
    outer.join(5)
    pool.close()


def test_errors_reach_the_caller() -> None:
    pool = WorkPool(2)

    def boom() -> None:
        raise ValueError("chunk failed")

    with pytest.raises(ValueError, match="chunk failed"):
        pool.run([boom, lambda: None, lambda: None])
    pool.run([lambda: None, lambda: None])  # still usable
    pool.close()


@pytest.mark.parametrize(
    "xs,ws,strides,pads,group",
    [
        ((2, 16, 40, 40), (32, 16, 3, 3), (1, 1), (1, 1, 1, 1), 1),
        ((1, 16, 64, 64), (32, 16, 1, 1), (1, 1), (0, 0, 0, 0), 1),
        ((1, 32, 64, 64), (32, 1, 3, 3), (2, 2), (1, 1, 1, 1), 32),
        ((1, 8, 66, 66), (16, 8, 3, 3), (2, 2), (1, 1, 1, 1), 1),
    ],
)
def test_tactics_split_between_threads_match_reference(xs, ws, strides, pads, group) -> None:
    conv = get_registry().resolve("", "Conv", 17).kernel
    rng = np.random.default_rng(3)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    ref = conv(x, w, b, strides=list(strides), pads=list(pads), group=group)
    want = ref / (1 + np.exp(-ref))
    spec = ConvSpec(xs, ref.shape, w, b, strides, pads, (1, 1), group, "silu")
    pool = WorkPool(2)
    for tactic in CONV_TACTICS:
        if tactic.applicable(spec):
            out = np.zeros(ref.shape, np.float32)
            run = tactic(spec).bind([x, w, b], [out], ScratchPool(pool))
            for _ in range(3):
                run()
            np.testing.assert_allclose(
                out, want, rtol=1e-4, atol=2e-5 * np.abs(want).max(), err_msg=tactic.name
            )
    pool.close()


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("shared_only", [False, True])
def test_native_pool_runs_every_task_exactly_once(workers: int, shared_only: bool) -> None:
    """Layers of native chunks run on the C pool: across many back-to-back runs of varying
    size (late helpers of one run must not claim the next run's tasks) every chunk's output
    is written, by exactly one run of it — with each thread taking its own share of the
    tasks first (then stealing), and with one shared ticket."""
    from edge_infer.engine.backends.cpu import native

    if not native.available():
        pytest.skip("no C compiler on this machine")
    pool = WorkPool(workers)
    x = np.linspace(-5, 5, 64 * 97, dtype=np.float32)
    y = np.empty_like(x)
    want = 1 / (1 + np.exp(-x.astype(np.float64)))
    layers = []
    for parts in (2, 3, 7, 16):
        calls = [
            native.NativeCall(
                "unary_f32",
                dict(
                    x=x[a:b].ctypes.data,
                    y=y[a:b].ctypes.data,
                    n=b - a,
                    kind=native.Activation.SIGMOID,
                    half=0,
                ),
                (x, y),
            )
            for a, b in split(x.size, parts)
        ]
        run = pool.bind(calls)
        assert hasattr(run, "keep"), "native chunks must take the native pool"
        layers.append(run)
    native.library().pool_set_shared_only(pool._native_pool(), int(shared_only))
    for k in range(600):
        y.fill(np.nan)
        layers[k % len(layers)]()
        np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-7)


def _thread_states(tids: set[str]) -> dict[str, str]:
    """The scheduler state letter (R running or runnable, S sleeping, ...) of these threads
    of this process."""
    states = {}
    for tid in tids:
        with open(f"/proc/self/task/{tid}/stat") as f:
            states[tid] = f.read().rsplit(")", 1)[1].split()[0]
    return states


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc")
def test_native_pool_helpers_spin_through_an_inference() -> None:
    """pool_wake (WorkPool.wake: an inference starts, before its inputs are copied) takes a
    helper asleep since the last inference back to spinning, and it keeps spinning however
    long the caller takes between layers, until pool_rest (WorkPool.rest: the inference is
    over); then it sleeps again after its short spin."""
    from edge_infer.engine.backends.cpu import native

    if not native.available():
        pytest.skip("no C compiler on this machine")
    before = set(os.listdir("/proc/self/task"))
    pool = WorkPool(2)
    x = np.ones(64, np.float32)
    calls = [
        native.NativeCall(
            "unary_f32",
            dict(x=x.ctypes.data, y=x.ctypes.data, n=64, kind=native.Activation.RELU, half=0),
            (x,),
        )
        for _ in range(2)
    ]
    pool.bind(calls)()
    helpers = (
        set(os.listdir("/proc/self/task"))
        - before
        - {str(t.native_id) for t in threading.enumerate()}
    )
    assert len(helpers) == 1, helpers  # the C pool's one helper thread

    def spinning_within(seconds: float) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if "R" in _thread_states(helpers).values():
                return True
        return False

    time.sleep(0.05)  # far past the 200 us spin: asleep on the condition variable
    assert not spinning_within(0.02)
    with pool.active():
        assert spinning_within(0.5)
        time.sleep(0.05)  # the caller busy elsewhere: the helper still spins
        assert spinning_within(0.02)
    time.sleep(0.05)
    assert not spinning_within(0.02)
    pool.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_fuse_runs_native_stretches_as_one_call(workers: int) -> None:
    """parallel.fuse: consecutive runs made only of native calls (pool calls, single calls,
    sequences of them) become one pool_program call, Python runs stay between them; the
    fused program computes what the runs do one by one (a chain of in-place sigmoids, where
    any lost, repeated or reordered step shows), also when another run holds the pool."""
    from edge_infer.engine.backends.cpu import native
    from edge_infer.engine.backends.cpu.parallel import fuse, sequence, share

    if not native.available():
        pytest.skip("no C compiler on this machine")
    pool = WorkPool(workers) if workers > 1 else None
    x = np.linspace(-3, 3, 4096, dtype=np.float32)

    def sigmoid(a: int, b: int) -> Any:
        fields = dict(x=x[a:b].ctypes.data, y=x[a:b].ctypes.data, n=b - a,
                      kind=native.Activation.SIGMOID, half=0)  # fmt: skip
        return native.NativeCall("unary_f32", fields, (x,))

    def layer() -> Any:  # a layer shared between the threads (or a sequence on one)
        return share([sigmoid(a, b) for a, b in split(x.size, 4)], pool)

    def halve() -> None:  # Python work between native stretches
        np.multiply(x, 0.5, out=x)

    runs = [layer(), sigmoid(0, x.size), sequence([layer(), sigmoid(0, 100)]), halve, layer(),
            layer(), halve, layer()]  # fmt: skip
    fused = fuse(runs, pool)
    assert len(fused) == 5  # [3 native] halve [2 native] halve [1]
    f = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    want = f(f(f(np.linspace(-3, 3, 4096, dtype=np.float64))))  # runs 1-3
    want[:100] = f(want[:100])  # run 3's last call
    want = f(f(want * 0.5)) * 0.5  # runs 4-7
    want = f(want)  # run 8
    for _ in range(2):
        x[:] = np.linspace(-3, 3, 4096, dtype=np.float32)
        for run in fused:
            run()
        np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-6)
    if pool is not None:  # another run holds the pool: the stretch runs its layers inline
        x[:] = np.linspace(-3, 3, 4096, dtype=np.float32)
        with pool._busy:
            for run in fused:
                run()
        np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-6)
        pool.close()
