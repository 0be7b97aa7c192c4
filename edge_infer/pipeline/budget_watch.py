"""Is the latency budget being met? Said in the status topic and in the log, with a way out.

The batcher keeps each batch within ``batching.latency_budget_ms`` when it can. When the
offered load is more than the engine serves in time — too many cameras, too high a
``max_fps`` — frames queue and every published frame is late; nothing the batcher does fixes
that. :class:`BudgetWatch` compares the measured capture→publish latency with the budget and,
when the median breaks it, says so: ``status.budget`` carries the verdict, the measured
p50/p99, and the per-camera ``max_fps`` the engine's measured batch latency could serve; a
warning is logged when the verdict changes (and repeated at most once a minute).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

#: frames measured before a verdict: the first batches include warm-up
MIN_FRAMES = 20
#: share of the engine's throughput the suggestion leaves for bursts and jitter
HEADROOM = 0.8


def servable_fps(engine_s: Mapping[int, float], budget_s: float, workers: int) -> float:
    """Frames per second the engine serves within the budget: the best batch size whose
    measured latency leaves at least half the budget for waiting, on every worker."""
    best = 0.0
    for size, seconds in engine_s.items():
        if seconds > 0 and seconds <= budget_s / 2:
            best = max(best, workers * size / seconds)
    if best == 0.0 and engine_s:  # nothing fits half the budget: the fastest size is all
        size, seconds = min(engine_s.items(), key=lambda kv: kv[1])
        best = workers * size / seconds if seconds > 0 else 0.0
    return best


class BudgetWatch:
    """Verdict on the latency budget, for the status topic and the log."""

    def __init__(
        self, budget_ms: float, clock: Callable[[], float], repeat_s: float = 60.0
    ) -> None:
        self.budget_ms = budget_ms
        self.clock = clock
        self.repeat_s = repeat_s
        self._met = True
        self._last_warned = -math.inf
        self._frames: tuple[float, int] | None = None  # (time, frames captured) last check
        self._offered = 0.0

    def _offered_fps(self, now: float, frames: int) -> float:
        if self._frames is not None and now > self._frames[0]:
            self._offered = max(0.0, (frames - self._frames[1]) / (now - self._frames[0]))
        self._frames = (now, frames)
        return self._offered

    def check(
        self,
        total_ms: Mapping[str, float],
        engine_s: Mapping[int, float],
        cameras: int,
        workers: int,
        frames_captured: int,
    ) -> dict[str, Any]:
        """The ``status.budget`` object; logs when the budget starts or stops being met.
        ``frames_captured``: the cameras' running total, whose rate is the offered load."""
        now = self.clock()
        offered_fps = self._offered_fps(now, frames_captured)
        p50, p99, n = (
            float(total_ms.get("p50", 0.0)),
            float(total_ms.get("p99", 0.0)),
            int(total_ms.get("n", 0)),
        )
        met = n < MIN_FRAMES or p50 <= self.budget_ms
        serves = servable_fps(engine_s, self.budget_ms / 1e3, workers)
        per_camera = round(HEADROOM * serves / max(1, cameras), 1) if serves else None
        verdict = {
            "budget_ms": self.budget_ms,
            "met": met,
            "p50_ms": round(p50, 1),
            "p99_ms": round(p99, 1),
            "offered_fps": round(offered_fps, 1),
            "servable_fps": round(serves, 1),
            "suggested_max_fps": per_camera,
        }
        if not met and (self._met or now - self._last_warned >= self.repeat_s):
            log.warning(
                "latency budget %.0f ms not met: p50 %.0f ms, p99 %.0f ms; %d cameras "
                "offer %.1f frames/s, the engine serves about %.1f within the budget: "
                "set max_fps: %s on the cameras (or fewer cameras, a smaller model, "
                "FP16/INT8)",
                self.budget_ms,
                p50,
                p99,
                cameras,
                offered_fps,
                serves,
                per_camera,
            )
            self._last_warned = now
        elif met and not self._met:
            log.info(
                "latency budget %.0f ms met again: p50 %.0f ms, p99 %.0f ms",
                self.budget_ms,
                p50,
                p99,
            )
        self._met = met
        return verdict
