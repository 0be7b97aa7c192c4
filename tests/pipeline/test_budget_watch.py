"""The daemon says when the latency budget cannot be met, and what max_fps would meet it."""

from __future__ import annotations

import logging

import pytest

from edge_infer.pipeline.budget_watch import BudgetWatch, servable_fps
from tests.pipeline.helpers import FakeClock

# measured on the 2-core machine: 12 cameras at 15 fps against 2 workers, batch 8 ~ 0.5 s
ENGINE = {1: 0.070, 2: 0.120, 4: 0.230, 8: 0.480}


def test_servable_fps_takes_the_best_batch_that_leaves_half_the_budget() -> None:
    # within 125 ms (half of 250): batch 2 at 120 ms, 2 workers -> 33.3 frames/s
    assert servable_fps(ENGINE, 0.250, 2) == pytest.approx(2 * 2 / 0.120)
    # nothing fits half of a 100 ms budget: the fastest batch is all there is
    assert servable_fps(ENGINE, 0.100, 1) == pytest.approx(1 / 0.070)
    assert servable_fps({}, 0.250, 2) == 0.0


def test_overload_is_reported_with_a_suggestion_then_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    watch = BudgetWatch(250.0, clock, repeat_s=60.0)
    with caplog.at_level(logging.INFO, logger="edge_infer.pipeline.budget_watch"):
        first = watch.check({"p50": 300.0, "p99": 420.0, "n": 10}, ENGINE, 12, 2, 0)
        assert first["met"]  # too few frames measured for a verdict
        clock.advance(2.0)
        late = watch.check({"p50": 300.0, "p99": 420.0, "n": 500}, ENGINE, 12, 2, 360)
        clock.advance(2.0)
        again = watch.check({"p50": 310.0, "p99": 430.0, "n": 500}, ENGINE, 12, 2, 720)
    assert late["met"] is False and again["met"] is False
    assert late["offered_fps"] == pytest.approx(180.0)  # 12 cameras x 15 fps
    assert late["suggested_max_fps"] == pytest.approx(round(0.8 * 2 * 2 / 0.120 / 12, 1))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # said when it started, not every status
    text = warnings[0].getMessage()
    assert "p50 300 ms" in text and "p99 420 ms" in text and "max_fps: 2.2" in text
    clock.advance(61.0)
    with caplog.at_level(logging.INFO, logger="edge_infer.pipeline.budget_watch"):
        watch.check({"p50": 300.0, "p99": 420.0, "n": 500}, ENGINE, 12, 2, 1000)
        ok = watch.check({"p50": 120.0, "p99": 200.0, "n": 500}, ENGINE, 12, 2, 1100)
    assert ok["met"] is True
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 2  # repeated a minute on
    assert "met again" in caplog.records[-1].getMessage()
