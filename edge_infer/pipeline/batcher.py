"""Deadline batching across cameras.

A batch is dispatched when it is full (the engine profile's max batch, or fewer when fewer
cameras are delivering frames: with one frame per camera per batch, a batch of every active
camera cannot grow) or when waiting for one more frame would make its oldest frame miss the
latency budget, given the measured latency of a batch of that size (:class:`LatencyModel`).
Frames are picked fairly: the cameras served longest ago come first, so no camera starves
even when more cameras have a frame waiting than a batch holds. At most ``max_per_camera``
frames of one camera wait here; older ones are dropped and counted.

This module is pure logic: the clock is injected and nothing sleeps, so every dispatch rule
is tested by moving a fake clock (``tests/pipeline/test_batcher.py``).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from edge_infer.pipeline.frames import Frame

Clock = Callable[[], float]


class LatencyModel:
    """Measured seconds per batch size (exponential moving average), thread-safe.

    A size never measured is estimated from the nearest measured size, scaled linearly in
    the batch size (a pessimistic guess for larger batches, which is the safe direction).

    A size the batcher stops dispatching is never measured again, so one slow reading (a
    cold start: caches, lazy allocation, a busy host during warm-up) would keep it out for
    good. Each measurement therefore also pulls the other sizes towards what it implies,
    where they break two bounds that hold for any engine: a smaller batch is no slower than a
    larger one, and a larger one no slower than the smaller one's time per frame times its
    size (``relax`` per measurement).
    """

    def __init__(self, default_s: float = 0.05, alpha: float = 0.2, relax: float = 0.1) -> None:
        self.default_s = default_s
        self.alpha = alpha
        self.relax = relax
        self._ema: dict[int, float] = {}
        self._lock = threading.Lock()

    def observe(self, batch: int, seconds: float) -> None:
        if batch < 1 or not math.isfinite(seconds) or seconds < 0:
            return
        with self._lock:
            old = self._ema.get(batch)
            now = seconds if old is None else old + self.alpha * (seconds - old)
            self._ema[batch] = now
            for b, t in self._ema.items():
                bound = now if b < batch else now * b / batch
                if t > bound:
                    self._ema[b] = t + self.relax * (bound - t)

    def estimate(self, batch: int) -> float:
        with self._lock:
            if batch in self._ema:
                return self._ema[batch]
            if not self._ema:
                return self.default_s * batch
            nearest = min(self._ema, key=lambda b: (abs(b - batch), -b))
            return self._ema[nearest] * batch / nearest

    def snapshot(self) -> dict[int, float]:
        with self._lock:
            return dict(sorted(self._ema.items()))


@dataclass
class BatcherStats:
    batches: int = 0
    frames: int = 0
    dropped: int = 0  # frames pushed out by newer frames of the same camera
    full_dispatches: int = 0
    deadline_dispatches: int = 0
    trimmed: int = 0  # batches cut short so their oldest frame still met the budget
    batch_sizes: dict[int, int] = field(default_factory=dict)
    dropped_by_camera: dict[str, int] = field(default_factory=dict)


class DeadlineBatcher:
    """Collects frames and decides when a batch leaves; see the module docstring."""

    def __init__(
        self,
        max_batch: int,
        latency_budget_s: float,
        latency: LatencyModel,
        clock: Clock,
        *,
        max_per_camera: int = 1,
        safety_margin_s: float = 0.005,
    ) -> None:
        if max_batch < 1 or max_per_camera < 1 or latency_budget_s <= 0:
            raise ValueError(
                f"need max_batch >= 1, max_per_camera >= 1, budget > 0; got "
                f"{max_batch}, {max_per_camera}, {latency_budget_s}"
            )
        self.max_batch = max_batch
        self.budget = latency_budget_s
        self.latency = latency
        self.clock = clock
        self.max_per_camera = max_per_camera
        self.margin = safety_margin_s
        #: a camera counts towards the batch capacity while it delivered a frame this recently
        self.active_window_s = max(1.0, 2.0 * latency_budget_s)
        self.stats = BatcherStats()
        self._pending: dict[str, deque[Frame]] = {}
        self._last_served: dict[str, float] = {}
        self._waiting_since: dict[str, float] = {}
        self._seen: dict[str, float] = {}  # last capture time per camera
        self._serial = 0.0  # tie-breaker of last_served: dispatch order, not wall time

    def add(self, frames: Iterable[Frame]) -> int:
        """Queue frames; returns how many older frames were dropped to make room.

        A camera's deadline runs from the capture of the first frame it has had waiting
        since it was last served: a newer frame replacing a waiting one does not restart
        the clock, or a camera faster than the budget would never be dispatched.
        """
        dropped = 0
        for f in frames:
            self._seen[f.camera_id] = f.capture_ts
            q = self._pending.setdefault(f.camera_id, deque())
            if not q:
                self._waiting_since[f.camera_id] = f.capture_ts
            q.append(f)
            while len(q) > self.max_per_camera:
                q.popleft().release()  # dropped: its buffer goes back to its camera's pool
                dropped += 1
                self.stats.dropped_by_camera[f.camera_id] = (
                    self.stats.dropped_by_camera.get(f.camera_id, 0) + 1
                )
        self.stats.dropped += dropped
        return dropped

    def pending(self) -> int:
        return sum(len(q) for q in self._pending.values())

    def _select(self) -> list[Frame]:
        """Up to max_batch frames: round-robin over cameras, least recently served first."""
        cams = [c for c, q in self._pending.items() if q]
        cams.sort(key=lambda c: (self._last_served.get(c, -1.0), self._pending[c][0].capture_ts))
        picked: list[Frame] = []
        depth = 0
        while len(picked) < self.max_batch and depth < self.max_per_camera:
            for c in cams:
                q = self._pending[c]
                if depth < len(q):
                    picked.append(q[depth])
                    if len(picked) == self.max_batch:
                        break
            depth += 1
        return picked

    def capacity(self, now: float) -> int:
        """The largest batch that can form now: the profile's max, or fewer when only a few
        cameras are delivering (those seen within ``active_window_s``)."""
        active = sum(1 for t in self._seen.values() if now - t <= self.active_window_s)
        return max(1, min(self.max_batch, active * self.max_per_camera))

    def dispatch_time(self, now: float) -> float:
        """When the current pending frames must leave (``inf`` when nothing waits)."""
        picked = self._select()
        if not picked:
            return math.inf
        cap = self.capacity(now)
        if len(picked) >= cap:
            return -math.inf
        oldest = min(self._waiting_since.get(f.camera_id, f.capture_ts) for f in picked)
        # waiting for one more frame makes the batch one larger, and that slower
        grown = min(len(picked) + 1, cap)
        return oldest + self.budget - self.margin - self.latency.estimate(grown)

    def poll(self, now: float | None = None) -> tuple[list[Frame], float]:
        """``(batch, 0)`` when a batch must leave now, else ``([], seconds to wait)``."""
        now = self.clock() if now is None else now
        at = self.dispatch_time(now)
        if at == math.inf:
            return [], math.inf
        if now < at:
            return [], at - now
        batch = self._within_budget(self._select(), now)
        full = len(batch) >= self.capacity(now)
        self._take(batch)
        if full:
            self.stats.full_dispatches += 1
        else:
            self.stats.deadline_dispatches += 1
        return batch, 0.0

    def _within_budget(self, batch: list[Frame], now: float) -> list[Frame]:
        """``batch``, or its oldest frames only when the whole batch would take so long that
        its oldest frame misses the budget and a smaller batch would not. (When even one
        frame would be late, the whole batch goes: smaller would only add batches.)"""
        waited = {id(f): self._waiting_since.get(f.camera_id, f.capture_ts) for f in batch}
        left = min(waited.values(), default=now) + self.budget - self.margin - now
        if len(batch) <= 1 or self.latency.estimate(len(batch)) <= left:
            return batch
        size = len(batch) - 1
        while size > 1 and self.latency.estimate(size) > left:
            size -= 1
        if self.latency.estimate(size) > left:
            return batch
        self.stats.trimmed += 1
        return sorted(batch, key=lambda f: waited[id(f)])[:size]

    def flush(self) -> list[Frame]:
        """Take every pending frame (up to a batch) regardless of deadlines, for draining."""
        batch = self._select()
        self._take(batch)
        return batch

    def _take(self, batch: list[Frame]) -> None:
        if not batch:
            return
        for f in batch:
            q = self._pending[f.camera_id]
            q.remove(f)
            if q:  # frames left behind (max_per_camera > 1) wait since their own capture
                self._waiting_since[f.camera_id] = q[0].capture_ts
            else:
                self._waiting_since.pop(f.camera_id, None)
            self._serial += 1.0
            self._last_served[f.camera_id] = self._serial
        self.stats.batches += 1
        self.stats.frames += len(batch)
        self.stats.batch_sizes[len(batch)] = self.stats.batch_sizes.get(len(batch), 0) + 1
