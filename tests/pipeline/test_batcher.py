"""The deadline batcher, driven by a fake clock: nothing here sleeps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_infer.pipeline.batcher import DeadlineBatcher, LatencyModel
from edge_infer.pipeline.frames import Frame
from tests.pipeline.helpers import FakeClock

IMG = np.zeros((4, 4, 3), np.uint8)


def frame(cam: str, t: float, index: int = 0) -> Frame:
    return Frame(cam, index, IMG, t, t)


def make(
    clock: FakeClock, max_batch: int = 4, budget: float = 0.100, per_batch: float = 0.010, **kw
) -> DeadlineBatcher:
    lat = LatencyModel()
    for n in range(1, max_batch + 1):
        lat.observe(n, per_batch * n)
    return DeadlineBatcher(max_batch, budget, lat, clock, safety_margin_s=0.0, **kw)


def test_nothing_pending_waits_forever() -> None:
    b = make(FakeClock())
    assert b.poll() == ([], math.inf)


def test_full_batch_dispatches_at_once() -> None:
    clock = FakeClock()
    b = make(clock, max_batch=3)
    b.add([frame(c, clock()) for c in "abc"])
    batch, wait = b.poll()
    assert [f.camera_id for f in batch] == ["a", "b", "c"] and wait == 0
    assert b.stats.full_dispatches == 1 and b.pending() == 0


def test_partial_batch_waits_until_the_deadline() -> None:
    clock = FakeClock()
    b = make(clock, max_batch=4, budget=0.100, per_batch=0.010)
    for c in "abcdef":  # six cameras are active, so the batch could still grow
        b.add([frame(c, clock() - 0.5)])
        b.flush()
    t0 = clock()
    b.add([frame("a", t0), frame("b", t0)])
    # waiting for a third frame costs 30 ms of inference: must leave by t0 + 100 - 30 ms
    batch, wait = b.poll()
    assert batch == [] and wait == pytest.approx(0.070)
    clock.advance(0.069)
    assert b.poll()[0] == []
    clock.advance(0.0011)
    batch, _ = b.poll()
    assert len(batch) == 2 and b.stats.deadline_dispatches >= 1


def test_batch_of_every_active_camera_leaves_without_waiting() -> None:
    clock = FakeClock()
    b = make(clock, max_batch=8)
    b.add([frame("a", clock()), frame("b", clock())])
    batch, _ = b.poll()  # only two cameras deliver: a batch of two cannot grow
    assert len(batch) == 2


def test_replaced_frame_keeps_the_camera_deadline() -> None:
    """A camera delivering faster than the budget must not push its own deadline out."""
    clock = FakeClock()
    b = make(clock, max_batch=4, budget=0.100, per_batch=0.010)
    b.add([frame(c, clock() - 0.5) for c in "wxyz"])  # four cameras known
    b.flush()
    t0 = clock()
    for i in range(20):  # camera a sends every 10 ms; its oldest waiting frame is at t0
        b.add([frame("a", t0 + i * 0.010, i)])
        clock.t = t0 + i * 0.010
        batch, _ = b.poll()
        if batch:
            break
    assert batch and batch[0].index == 8  # left at t0 + 100 - 20 ms with the newest frame
    assert b.stats.dropped == 8 and b.stats.dropped_by_camera == {"a": 8}


def test_at_most_one_frame_per_camera_unless_configured() -> None:
    clock = FakeClock()
    b = make(clock, max_batch=4)
    b.add([frame("a", clock(), i) for i in range(3)])
    assert b.pending() == 1 and b.stats.dropped == 2
    b2 = make(clock, max_batch=4, max_per_camera=2)
    b2.add([frame("a", clock(), i) for i in range(3)])
    assert b2.pending() == 2
    batch, _ = b2.poll()
    assert [f.index for f in batch] == [1, 2]


def test_fairness_no_camera_starves() -> None:
    """Ten cameras, batches of four: every camera is served within three batches."""
    clock = FakeClock()
    b = make(clock, max_batch=4)
    served: dict[str, int] = {}
    for step in range(30):
        clock.advance(0.010)
        b.add([frame(f"c{k}", clock(), step) for k in range(10)])
        batch, _ = b.poll()
        assert len(batch) == 4
        assert len({f.camera_id for f in batch}) == 4
        for f in batch:
            served[f.camera_id] = served.get(f.camera_id, 0) + 1
    assert len(served) == 10
    assert max(served.values()) - min(served.values()) <= 1


def test_flush_takes_pending_regardless_of_deadline() -> None:
    clock = FakeClock()
    b = make(clock, max_batch=4)
    b.add([frame("a", clock()), frame("b", clock()), frame("c", clock() - 5)])
    b._seen["z"] = b._seen["y"] = clock()  # more cameras known: can grow
    assert b.poll()[0]  # c's deadline has long passed
    b.add([frame("a", clock())])
    b._seen.update(y=clock(), z=clock(), w=clock())
    assert b.poll()[0] == []
    assert len(b.flush()) == 1 and b.pending() == 0


def test_inactive_cameras_do_not_hold_batches_back() -> None:
    clock = FakeClock()
    b = make(clock, max_batch=8, budget=0.5)
    b.add([frame(c, clock()) for c in "abcd"])
    b.flush()
    clock.advance(5.0)  # c and d went silent
    b.add([frame("a", clock()), frame("b", clock())])
    assert len(b.poll()[0]) == 2


def test_latency_model() -> None:
    lat = LatencyModel(default_s=0.02, alpha=0.5)
    assert lat.estimate(3) == pytest.approx(0.06)
    lat.observe(2, 0.010)
    assert lat.estimate(2) == 0.010
    assert lat.estimate(4) == pytest.approx(0.020)  # scaled from the nearest measured size
    lat.observe(2, 0.030)
    assert lat.estimate(2) == pytest.approx(0.020)
    lat.observe(2, float("nan"))
    lat.observe(0, 1.0)
    assert lat.snapshot() == {2: pytest.approx(0.020)}


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        DeadlineBatcher(0, 0.1, LatencyModel(), FakeClock())
    with pytest.raises(ValueError):
        DeadlineBatcher(4, 0.0, LatencyModel(), FakeClock())


def test_a_batch_that_would_break_the_budget_leaves_smaller() -> None:
    """12 cameras, a 250 ms budget, batches of 8 take 300 ms: dispatching full batches breaks
    the budget for every frame; the batcher sends the largest batch that keeps it."""
    clock = FakeClock()
    lat = LatencyModel()
    for n in range(1, 9):
        lat.observe(n, 0.040 * n - 0.020 * (n > 1))  # 40, 60, 100, ... 300 ms
    b = DeadlineBatcher(8, 0.250, lat, clock, safety_margin_s=0.0)
    t0 = clock()
    b.add([frame(f"c{i}", t0 + 0.001 * i) for i in range(12)])
    clock.t = t0 + 0.050  # frames waited 50 ms: 200 ms left; a batch of 5 takes 180 ms
    batch, _ = b.poll()
    assert len(batch) == 5 and b.stats.trimmed == 1
    assert [f.camera_id for f in batch] == ["c0", "c1", "c2", "c3", "c4"]  # the oldest
    assert lat.estimate(len(batch)) <= 0.200
    # fresh frames: 250 ms left, a batch of 6 takes 220 ms, of 7 260 ms
    b2 = DeadlineBatcher(8, 0.250, lat, clock, safety_margin_s=0.0)
    b2.add([frame(f"c{i}", clock()) for i in range(12)])
    batch2, _ = b2.poll()
    assert len(batch2) == 6 and b2.stats.trimmed == 1
    # a budget the full batch fits: untouched
    b3 = DeadlineBatcher(8, 0.400, lat, clock, safety_margin_s=0.0)
    b3.add([frame(f"c{i}", clock()) for i in range(12)])
    batch3, _ = b3.poll()
    assert len(batch3) == 8 and b3.stats.trimmed == 0


def test_a_cold_start_reading_does_not_stick() -> None:
    lat = LatencyModel()
    lat.observe(8, 2.0)  # warm-up: caches cold, host busy
    for _ in range(60):  # service measures only batches of 4 (8 looked too slow to form)
        lat.observe(4, 0.100)
    assert lat.estimate(8) < 0.21  # pulled under 2 x the batch of 4
    # a larger batch that is genuinely cheaper per frame is left alone
    lat2 = LatencyModel()
    lat2.observe(8, 0.120)
    for _ in range(60):
        lat2.observe(4, 0.100)
    assert lat2.estimate(8) == pytest.approx(0.120)
    # and a smaller batch is never slower than a larger one
    lat3 = LatencyModel()
    lat3.observe(2, 0.5)
    for _ in range(60):
        lat3.observe(8, 0.2)
    assert lat3.estimate(2) <= 0.2 + 1e-3


def test_frames_the_batcher_drops_go_back_to_their_pool() -> None:
    released: list[int] = []
    b = DeadlineBatcher(4, 0.1, LatencyModel(), FakeClock(), max_per_camera=1)
    frames = [Frame("a", k, IMG, 0.0, 0.0, recycle=lambda k=k: released.append(k)) for k in (1, 2)]
    assert b.add(frames) == 1
    assert released == [1]  # the older frame, pushed out, released once
    (kept,) = b.flush()
    assert kept is frames[1] and kept.recycle is not None  # a dispatched frame is the worker's
