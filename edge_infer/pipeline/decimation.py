"""Which grabbed frames a camera reader converts to BGR while the pipeline is behind.

A live stream must be decoded frame by frame (``cap.grab()``), but the colour conversion
(``cap.retrieve()``) is only worth its CPU for a frame that gets delivered. A camera keeps
one frame in its slot of the :class:`~edge_infer.pipeline.sources.FrameHub`; while the
consumer is behind (the frame put last is still in the slot), a converted frame is wasted
whenever a newer one replaces it before the consumer comes. So, per candidate frame:

1. the slot is empty (the last frame was taken, or none was put yet): convert — the
   consumer keeps up, or waits for this camera; a consumer that keeps up gets every frame;
2. the slot holds an untaken frame and the consumer's cadence is not learned yet: convert
   (the behaviour without decimation);
3. otherwise convert only in the window just before the consumer's next predicted take:
   ``now >= next_take - 1.5 frame periods - 2 × take jitter``. The frame taken is then
   still the newest one (as fresh as without decimation), and a slow consumer costs a few
   conversions per take instead of one per frame. A consumer later than predicted gets
   every frame converted until it comes (never staler than without decimation).

The cadence is learned from the takes of frames that had been waiting (the slot was
occupied at the grab before the take): those are the consumer coming on its own schedule,
not it waiting for this camera. A take is seen at the next grab, so it is timed at the
midpoint between two grabs (± half a frame period, hence the 1.5 periods). Period and
jitter are smoothed as TCP smooths round-trip times (RFC 6298). Pure logic: times are
arguments, so it is tested without a clock (``tests/pipeline/test_sources.py``).
"""

from __future__ import annotations


class Decimator:
    """Decides, per grabbed frame of one camera, whether converting it can pay off."""

    def __init__(self, alpha: float = 0.25) -> None:
        self.alpha = alpha
        self.frame_period: float | None = None  # seconds between candidate frames
        self.take_period: float | None = None  # seconds between the consumer's late takes
        self.take_jitter = 0.0  # mean deviation of those intervals
        self.last_take: float | None = None
        self._takes = 0  # the hub's take count of this camera, as last seen
        self._pending = False  # the frame put last is still in the slot
        self._occupied = False  # ... and it was at the previous grab
        self._prev_grab: float | None = None
        self._prev_candidate: float | None = None

    def restart(self) -> None:
        """A new capture: frame intervals start again (the slot and the consumer stay)."""
        self._prev_grab = self._prev_candidate = None
        self._occupied = False

    def grabbed(self, now: float, takes: int) -> None:
        """Note a grab at ``now``; ``takes`` counts the hub's takes of this camera so far."""
        if takes != self._takes:
            self._takes = takes
            if self._pending and self._occupied and self._prev_grab is not None:
                self._observe_take((self._prev_grab + now) / 2)
            self._pending = False
        self._occupied = self._pending
        self._prev_grab = now

    def convert(self, now: float) -> bool:
        """For a frame that passed ``max_fps``: True to convert it, False to drop it."""
        if self._prev_candidate is not None:
            dt = max(0.0, now - self._prev_candidate)
            fp = self.frame_period
            self.frame_period = dt if fp is None else fp + self.alpha * (dt - fp)
        self._prev_candidate = now
        if (
            not self._pending
            or self.take_period is None
            or self.last_take is None
            or self.frame_period is None
        ):
            return True
        due = self.last_take + self.take_period
        return now >= due - 1.5 * self.frame_period - 2.0 * self.take_jitter

    def put(self) -> None:
        """A converted frame went into the slot."""
        self._pending = True

    def _observe_take(self, at: float) -> None:
        if self.last_take is not None:
            dt = at - self.last_take
            if self.take_period is None:
                self.take_period, self.take_jitter = dt, dt / 4
            else:
                self.take_jitter += self.alpha * (abs(dt - self.take_period) - self.take_jitter)
                self.take_period += self.alpha * (dt - self.take_period)
        self.last_take = at
