"""Camera sources: state machine, backoff, watchdog, pacing, one-slot buffer, decimation.

The reader loop runs in the test thread with a fake capture, a fake clock and a ``wait``
that advances that clock (and lets a scripted consumer take frames on its own schedule),
so nothing sleeps; two tests read a real synthetic file.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_infer.pipeline.camera_config import BackoffConfig, FileCamera, RtspCamera
from edge_infer.pipeline.decimation import Decimator
from edge_infer.pipeline.sources import (
    TRANSITIONS,
    Backoff,
    CameraSource,
    CameraState,
    Frame,
    FrameHub,
    SourceError,
    open_capture,
    validate_frame,
)
from tests.pipeline.helpers import FakeClock

S = CameraState


class FakeCapture:
    """Scripted reads: each item is an image, ``None`` (read fails), ``"stall:<s>"`` (the
    read blocks that long, then fails) or ``("late:<s>", image)`` (blocks, then returns a
    frame the decoder held back). Frames carry a PTS 1/fps apart, like a file's."""

    def __init__(self, script: list, clock: FakeClock, fps: float = 10.0) -> None:
        self.script = list(script)
        self.clock = clock
        self.fps = fps
        self.released = False
        self.grabbed = None
        self.grabs = 0
        self.retrievals = 0
        self.during_block: Callable[[], object] = lambda: None  # e.g. the stall watchdog

    def isOpened(self) -> bool:  # OpenCV's name
        return True

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_POS_MSEC:
            return (self.grabs - 1) * 1000.0 / self.fps
        if prop == cv2.CAP_PROP_POS_FRAMES:
            return float(self.grabs)
        return self.fps

    def set(self, prop: int, value: float) -> bool:
        return False  # no seeking: a looping file is reopened

    def grab(self) -> bool:
        self.retrieved = None
        if not self.script:
            return False
        item = self.script.pop(0)
        if isinstance(item, str) and item.startswith("stall:"):
            self.clock.advance(float(item[6:]))  # read blocked this long, then failed
            return False
        if isinstance(item, tuple) and item[0] == "again":  # the last frame, same PTS
            self.grabbed = item[1]
            return True
        if isinstance(item, tuple):
            self.clock.advance(float(item[0][5:]))  # blocked, then a held-back frame
            self.during_block()
            item = item[1]
        self.grabbed = item
        self.grabs += item is not None
        return item is not None

    def retrieve(self, image=None):
        self.retrievals += 1
        g = self.grabbed
        fits = isinstance(g, np.ndarray) and image is not None and g.shape == image.shape
        if fits and g.dtype == image.dtype:
            image[...] = g  # as OpenCV: into the caller's array when its size fits
            return True, image
        return True, None if g is None else (g.copy() if isinstance(g, np.ndarray) else g)

    def release(self) -> None:
        self.released = True


def img(w: int = 8, h: int = 6, v: int = 0) -> np.ndarray:
    return np.full((h, w, 3), v, np.uint8)


class Consumer:
    """The batcher's side of the hub: takes every waiting frame at scheduled (fake) times.

    ``intervals()`` gives the seconds to the next take; each take records the frame taken
    and the index of the newest frame the reader had grabbed by then.
    """

    def __init__(self, hub: FrameHub, intervals: Callable[[], float], first: float) -> None:
        self.hub = hub
        self.intervals = intervals
        self.next = first
        self.taken: list[tuple[Frame, int]] = []
        self.newest: Callable[[], int] = lambda: 0

    def run_until(self, clock: FakeClock, end: float) -> None:
        while self.next <= end:
            clock.t = self.next
            self.taken += [(f, self.newest()) for f in self.hub.take_all()]
            self.next += self.intervals()
        clock.t = end


class Harness:
    """A source whose opener hands out scripted captures (``None``: the open fails)."""

    def __init__(
        self,
        cam,
        opens: list,
        stop_after_waits: int = 50,
        consumer: Callable[[], float] | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.hub = FrameHub()
        self.opens = list(opens)
        self.waits: list[float] = []
        self.stop_after = stop_after_waits
        self.captures: list[FakeCapture] = []
        # a consumer taking frames every consumer() seconds, the first time after 0.05 s
        self.consumer = (
            None if consumer is None else Consumer(self.hub, consumer, self.clock() + 0.05)
        )
        self.source = CameraSource(
            cam,
            self.hub,
            opener=self.open,
            clock=self.clock,
            wall_clock=self.clock,
            wait=self.wait,
            rng=random.Random(0),
        )
        if self.consumer is not None:
            self.consumer.newest = lambda: self.source._index

    def open(self, cam):
        if not self.opens:
            self.source.stop()
            return None
        script = self.opens.pop(0)
        if script is None:
            return None
        cap = FakeCapture(script, self.clock)
        cap.during_block = self.source.check_stalled
        self.captures.append(cap)
        return cap

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        if self.consumer is not None:
            self.consumer.run_until(self.clock, self.clock() + seconds)
        else:
            self.clock.advance(seconds)
        if len(self.waits) >= self.stop_after:
            self.source.stop()
        return self.source.stopping

    def states(self) -> list[str]:
        return [s for _, s in self.source.stats.transitions]


def rtsp(**kw) -> RtspCamera:
    return RtspCamera(type="rtsp", id="r", url="rtsp://127.0.0.1:1/x", **kw)


def file_cam(**kw) -> FileCamera:
    return FileCamera(type="file", id="f", path=Path("x.mp4"), **kw)


def test_transition_table_is_closed_and_checked() -> None:
    assert set(TRANSITIONS) == set(S)
    assert TRANSITIONS[S.STOPPED] == frozenset()
    src = CameraSource(rtsp(), FrameHub(), opener=lambda c: None)
    assert src.state == S.CONNECTING
    with pytest.raises(SourceError, match="illegal transition connecting → stalled"):
        src.transition(S.STALLED)
    assert src.transition(S.STREAMING) and not src.transition(S.STREAMING)
    src.transition(S.STOPPED)
    with pytest.raises(SourceError):
        src.transition(S.CONNECTING)


def test_backoff_grows_caps_and_jitters() -> None:
    b = Backoff(BackoffConfig(initial_s=1, multiplier=2, max_s=10, jitter=0), random.Random(1))
    assert [b.next_delay() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    b.reset()
    assert b.next_delay() == 1
    j = Backoff(BackoffConfig(initial_s=1, multiplier=2, max_s=10, jitter=0.5), random.Random(2))
    delays = [j.next_delay() for _ in range(200)]
    assert all(0.5 <= d <= 10 for d in delays)
    assert len({round(d, 6) for d in delays[:3]}) == 3  # jitter: not the same each time
    firsts = [Backoff(BackoffConfig(jitter=0.3), random.Random(s)).next_delay() for s in range(50)]
    assert min(firsts) < 0.5 < max(firsts)  # cameras failing together retry apart


def test_open_failure_backs_off_then_streams_and_resets_backoff() -> None:
    cam = rtsp(
        stall_timeout_s=0.5, backoff=BackoffConfig(initial_s=1, multiplier=2, max_s=30, jitter=0)
    )
    h = Harness(cam, [None, None, [img(), img()], None])
    h.source.run()
    assert h.states()[:7] == [
        "backoff",
        "connecting",
        "backoff",
        "connecting",
        "streaming",
        "stalled",
        "backoff",
    ]
    # 1 s, 2 s, then the stream's failed reads retried (0.1 s, 0.2 s, the rest of the 0.5 s
    # of silence), then it ended after frames: backoff was reset to 1 s
    assert h.waits[:6] == pytest.approx([1, 2, 0.1, 0.2, 0.2, 1])
    st = h.source.stats
    # three retries after failures; one stream delivered again after an earlier one ended
    assert st.reconnect_attempts >= 3 and st.reconnects == 0
    assert h.source.state == S.STOPPED
    assert all(c.released for c in h.captures)


def test_frames_go_to_the_slot_and_untaken_ones_are_dropped() -> None:
    h = Harness(rtsp(), [[img(v=1), img(v=2), img(v=3)]])
    h.source.run()
    frames = h.hub.take_all()
    assert len(frames) == 1 and frames[0].image[0, 0, 0] == 3 and frames[0].index == 3
    st = h.source.stats
    assert st.frames == 3 and st.dropped == 2


def test_stall_watchdog_and_recovery() -> None:
    cam = rtsp(stall_timeout_s=2.0)
    h = Harness(cam, [])
    src = h.source
    src.transition(S.STREAMING)
    src.stats.last_frame_ts = h.clock()
    h.clock.advance(1.9)
    assert not src.check_stalled()
    h.clock.advance(0.2)
    assert src.check_stalled() and src.state == S.STALLED
    assert not src.check_stalled()  # already stalled
    src._emit(img())  # a frame arrives: streaming again
    assert src.state == S.STREAMING


def test_blocked_read_is_retried_then_stalls_then_backs_off() -> None:
    """read_timeout_s 3 < stall_timeout_s 5: the first timed-out read does not end the
    stream; the second one, 6.1 s after the last frame, does: stalled, then backoff."""
    h = Harness(rtsp(read_timeout_s=3), [[img(), "stall:3.0", "stall:3.0"]], stop_after_waits=2)
    h.source.run()
    assert h.states()[:3] == ["streaming", "stalled", "backoff"]
    (t_stalled, _), (t_backoff, _) = h.source.stats.transitions[1:3]
    t_frame = h.source.stats.transitions[0][0]
    assert t_stalled - t_frame == pytest.approx(6.1) and t_backoff == pytest.approx(t_stalled)
    assert h.waits[0] == pytest.approx(0.1)  # between the two reads of the same capture
    assert len(h.captures) == 1 and h.captures[0].grabs == 1
    assert h.source.stats.last_error == "read failed"


def test_fast_failing_reads_stall_before_reconnecting() -> None:
    """Issue 17 item 8: read_timeout_s 0.2 < stall_timeout_s 1 and reads that fail at once
    (a cut feed): the camera is stalled after 1 s of silence, then backs off; before, it
    went streaming → backoff and was never stalled."""
    cam = rtsp(read_timeout_s=0.2, stall_timeout_s=1.0, backoff=BackoffConfig(jitter=0))
    h = Harness(cam, [[img(v=1), img(v=2), "stall:0.2", "stall:0.2"]], stop_after_waits=12)
    h.source.run()
    assert h.states()[:4] == ["streaming", "stalled", "backoff", "connecting"]
    times = {state: t for t, state in reversed(h.source.stats.transitions)}  # first of each
    # both frames are grabbed when it starts streaming (an RTSP camera is not paced)
    assert 1.0 <= times["stalled"] - times["streaming"] <= 1.3, times
    assert times["backoff"] - times["stalled"] < 0.01
    assert h.captures[0].grabs == 2 and h.captures[0].script == []  # all retried, no reopen
    assert [f.image[0, 0, 0] for f in h.hub.take_all()] == [2]  # nothing republished
    assert h.source.stats.stale == 0 and h.source.stats.frames == 2


def test_a_short_outage_is_ridden_out_on_the_same_capture() -> None:
    cam = rtsp(stall_timeout_s=1.0)
    h = Harness(cam, [[img(v=1), None, None, img(v=2), img(v=3)]], stop_after_waits=8)
    put: list[Frame] = []
    real_put = h.hub.put
    h.hub.put = lambda f: put.append(f) or real_put(f)  # type: ignore[method-assign]
    h.source.run()
    assert [f.image[0, 0, 0] for f in put] == [1, 2, 3]
    assert h.states()[:2] == ["streaming", "stalled"]  # only after the script ran out
    assert h.waits[:2] == pytest.approx([0.1, 0.2]) and len(h.captures) == 1
    assert put[1].capture_ts - put[0].capture_ts == pytest.approx(0.3)  # two retries later


def test_file_loops_or_stops_at_its_end() -> None:
    h = Harness(file_cam(loop=True, realtime=False), [[img()], [img()], [img()]])
    h.source.run()
    assert h.source.stats.frames == 3 and h.source.stats.reconnects == 0
    assert "backoff" not in h.states()
    h2 = Harness(file_cam(loop=False, realtime=False), [[img(), img()], [img()]])
    h2.source.run()
    assert h2.source.stats.frames == 2 and h2.states()[-1] == "stopped"
    assert len(h2.opens) == 1  # never reopened


def test_real_looping_file_rewinds_without_reopening(synth_cameras: Path) -> None:
    cam = FileCamera(
        type="file", id="loop", path=synth_cameras / "cam01.mp4", loop=True, realtime=False
    )
    opens = []

    def opener(c):
        opens.append(c.id)
        return open_capture(c)

    hub = FrameHub()
    src = CameraSource(cam, hub, opener=opener)

    def stop_after_two_loops() -> None:
        while src.stats.frames < 100 and src.state != S.STOPPED:
            time.sleep(0.01)
        src.stop()

    watcher = threading.Thread(target=stop_after_two_loops)
    watcher.start()
    src.run()
    watcher.join()
    assert src.stats.frames >= 100  # the file has 45 frames
    assert opens == ["loop"] and src.stats.reconnects == 0


def test_file_is_paced_at_its_frame_rate() -> None:
    h = Harness(file_cam(loop=False, realtime=True), [[img()] * 5])
    h.source.run()
    # 10 fps: every read waits its turn, the sixth (failing, end of file) one included
    assert h.waits == pytest.approx([0.1] * 5)


def test_max_fps_skips_frames_at_the_source() -> None:
    h = Harness(file_cam(loop=False, realtime=True, max_fps=2.5), [[img()] * 20])
    h.source.run()
    st = h.source.stats
    assert st.frames + st.skipped == 20
    assert st.frames == 5  # 2 s of 10 fps video at 2.5 fps (one every 4th frame)
    assert h.captures[0].retrievals == 5  # skipped frames are never converted


def _paced(frames: int, consumer: Callable[[], float], **kw) -> Harness:
    """A 10 fps paced file of ``frames`` frames read under ``consumer``; run to its end."""
    h = Harness(
        file_cam(loop=False, realtime=True, **kw),
        [[img()] * frames],
        stop_after_waits=10**6,
        consumer=consumer,
    )
    h.source.run()
    return h


def test_a_consumer_keeping_up_gets_every_frame_converted() -> None:
    h = _paced(100, lambda: 0.1)  # takes between every two frames
    st, cap, taken = h.source.stats, h.captures[0], h.consumer.taken
    assert cap.grabs == cap.retrievals == st.frames == 100
    assert st.dropped == st.decimated == 0
    assert [f.index for f, _ in taken] == list(range(1, 101))
    # capture time = when the frame was grabbed: 10 fps from the first read on
    t0 = taken[0][0].capture_ts
    assert [f.capture_ts - t0 for f, _ in taken] == pytest.approx([i / 10 for i in range(100)])


def test_overload_skips_conversion_of_frames_that_would_be_replaced() -> None:
    """A consumer taking once a second from a 10 fps camera: ~3 conversions per take
    instead of 10, and every take still gets the newest frame grabbed."""
    h = _paced(300, lambda: 1.0)
    st, cap, taken = h.source.stats, h.captures[0], h.consumer.taken
    assert cap.grabs == 300 and len(taken) == 30
    assert cap.retrievals < 0.5 * cap.grabs, cap.retrievals  # without decimation: 300
    late = taken[-20:]  # once the cadence is learned: about 3 per take
    grabs_between = late[-1][1] - late[0][1]
    retrieved_between = sum(1 for f, _ in late if f.index > late[0][1])  # taken ones
    assert retrieved_between == 19 and grabs_between == 190
    assert all(f.index == newest for f, newest in taken), [
        (f.index, n) for f, n in taken if f.index != n
    ]
    # every frame is counted: delivered, replaced in the slot, or decimated (dropped)
    assert st.frames == 300 and st.decimated == cap.grabs - cap.retrievals > 150
    assert st.dropped == st.frames - len(taken) - h.hub.pending()


def test_decimation_converts_a_few_frames_per_take_once_learned() -> None:
    d = Decimator()
    t, takes, converted = 0.0, 0, []
    for i in range(400):  # a 10 fps camera, a consumer taking at 0.05 s past every second
        t = i / 10
        if i and i % 10 == 1:
            takes += 1  # the take at i/10 - 0.05 is seen at this grab
        d.grabbed(t, takes)
        if d.convert(t):
            converted.append(i)
            d.put()
    assert d.take_period == pytest.approx(1.0) and d.frame_period == pytest.approx(0.1)
    assert d.take_jitter < 0.01
    # per second at the end: the first frame after the take, and the two before the next
    assert [i % 10 for i in converted[-9:]] == [0, 1, 9] * 3


def test_decimation_with_a_jittery_consumer_still_delivers_fresh_frames() -> None:
    rng = random.Random(5)
    h = _paced(300, lambda: rng.uniform(0.8, 1.2))
    cap, taken = h.captures[0], h.consumer.taken
    assert cap.retrievals < 0.75 * cap.grabs, cap.retrievals
    fresh = sum(f.index == newest for f, newest in taken)
    assert fresh >= 0.9 * len(taken) and all(newest - f.index <= 2 for f, newest in taken)


def test_decimation_never_starves_a_consumer_that_comes_late() -> None:
    d = Decimator()
    d.take_period, d.take_jitter, d.last_take, d.frame_period = 1.0, 0.0, 10.0, 0.1
    d.put()
    d.grabbed(10.3, 0)
    assert not d.convert(10.3)  # the next take is 0.7 s away: this frame would be replaced
    for t in (10.9, 11.2, 13.0):  # due at 11.0, and later: every frame is converted
        d.grabbed(t, 0)
        assert d.convert(t)
    d.grabbed(13.1, 1)  # taken at last: the slot is empty, the next frame is converted
    assert d.convert(13.1) and d.take_period > 1.0


def test_max_fps_and_decimation_together() -> None:
    h = _paced(600, lambda: 2.0, max_fps=5)
    st, cap, taken = h.source.stats, h.captures[0], h.consumer.taken
    assert st.skipped == 300 and st.frames == 300
    assert cap.retrievals < 0.5 * st.frames, cap.retrievals
    assert st.decimated == st.frames - cap.retrievals
    # the newest frame that max_fps let through (every other one) is the one taken
    assert all(newest - f.index <= 1 for f, newest in taken[3:])


def test_invalid_frames_are_counted_and_gray_is_converted() -> None:
    gray = np.zeros((6, 8), np.uint8)
    bad = [np.zeros((6, 8, 3), np.float32), np.zeros((0, 8, 3), np.uint8), "junk"]
    h = Harness(rtsp(), [[*bad, gray, img(w=16, h=12)]])
    h.source.run()
    st = h.source.stats
    assert st.invalid == 3 and st.frames == 2
    assert st.resolution_changes == 1 and st.size == (16, 12)
    assert validate_frame(np.zeros((4, 4, 4), np.uint8)).shape == (4, 4, 3)


def test_reader_exception_stops_the_camera_with_the_error() -> None:
    def boom(cam):
        raise RuntimeError("driver exploded")

    src = CameraSource(rtsp(), FrameHub(), opener=boom)
    src.run()
    assert src.state == S.STOPPED and "driver exploded" in src.stats.last_error


def test_hub_replaces_and_reports() -> None:
    hub = FrameHub()
    f1 = Frame("a", 1, img(), 0.0, 0.0)
    f2 = Frame("a", 2, img(), 0.1, 0.1)
    assert not hub.put(f1) and hub.put(f2) and hub.pending() == 1
    assert hub.take_all() == [f2] and hub.pending() == 0


def test_real_file_is_decoded(synth_cameras: Path) -> None:
    """A real cv2 capture on a synthetic camera file, through the real opener."""
    cam = FileCamera(
        type="file", id="real", path=synth_cameras / "cam00.avi", loop=False, realtime=False
    )
    hub = FrameHub()
    src = CameraSource(cam, hub)
    src.run()
    st = src.stats
    assert st.frames >= 10 and st.invalid == 0 and src.state == S.STOPPED
    assert st.size == (320, 180)
    frame = hub.take_all()[0]
    assert frame.image.dtype == np.uint8 and frame.image.shape == (180, 320, 3)


@pytest.mark.parametrize("threads", [1, 3, 0])
def test_decoder_threads_reach_the_real_capture(synth_cameras: Path, threads: int) -> None:
    """``decode_threads`` is passed to FFmpeg at open (0: FFmpeg's own choice)."""
    import cv2

    cam = FileCamera(type="file", id="t", path=synth_cameras / "cam00.mp4", decode_threads=threads)
    cap = open_capture(cam)
    try:
        assert cap.isOpened()
        got = int(cap.get(cv2.CAP_PROP_N_THREADS))
        assert got == threads if threads else got >= 1
        assert cap.grab()
    finally:
        cap.release()


def test_a_frame_out_of_a_blocked_read_is_not_news() -> None:
    """The feed is cut: the read blocks past stall_timeout_s, then FFmpeg hands over a frame
    its decoder held back. It is dropped (not published with a fresh timestamp) and the
    camera does not flap stalled → streaming while nothing new arrives."""
    cam = rtsp(stall_timeout_s=2.0, read_timeout_s=5.0)
    h = Harness(cam, [[img(v=1), img(v=2), ("late:4", img(v=3)), "stall:5"]])
    h.source.run()
    st = h.source.stats
    assert st.stale == 1 and st.frames == 2
    assert [f.image[0, 0, 0] for f in h.hub.take_all()] == [2]
    states = h.states()
    assert states[:3] == ["streaming", "stalled", "backoff"]  # no stalled → streaming


def test_a_repeated_frame_is_dropped_and_frames_carry_the_source_pts() -> None:
    h = Harness(rtsp(), [[img(v=1), img(v=2), ("again", img(v=2)), img(v=3)]])
    put: list[Frame] = []
    real_put = h.hub.put
    h.hub.put = lambda f: put.append(f) or real_put(f)  # type: ignore[method-assign]
    h.source.run()
    assert h.source.stats.stale == 1
    assert [f.image[0, 0, 0] for f in put] == [1, 2, 3]
    # index: 1-based count of grabs kept; PTS and frame number: the source's own
    assert [(f.index, f.source_pts_ms, f.source_frame) for f in put] == [
        (1, 0.0, 1),
        (2, 100.0, 2),
        (3, 200.0, 3),
    ]


def test_reconnects_count_streams_that_came_back_and_recovery_clears_the_error() -> None:
    cam = rtsp(backoff=BackoffConfig(initial_s=1, multiplier=2, max_s=30, jitter=0))
    h = Harness(cam, [[img()], None, [img()]])
    errors: list[str] = []
    real_stream = h.source._stream

    def stream(cap):  # the error each stream starts with, and what its first frame left
        errors.append(h.source.stats.last_error)
        return real_stream(cap)

    h.source._stream = stream  # type: ignore[method-assign]
    h.source.run()
    st = h.source.stats
    # attempts: after each stream's read failure and after the failed open
    assert (st.reconnects, st.reconnect_attempts) == (1, 3)
    # the second stream opened with the failed open's error standing; its frame cleared it
    assert errors == ["", "open: rtsp://127.0.0.1:1/x did not open (no stream there?)"]
    states = h.states()
    assert states.count("streaming") == 2


def test_every_transition_is_logged_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    cam = rtsp(backoff=BackoffConfig(initial_s=1, multiplier=2, max_s=30, jitter=0))
    h = Harness(cam, [None, [img()], [img()]])
    with caplog.at_level("INFO", logger="edge_infer.pipeline.sources"):
        h.source.run()
    lines = [r.getMessage() for r in caplog.records if "→" in r.getMessage()]
    assert lines and all(line.rstrip().endswith(")") for line in lines), lines
    assert any("(first frame)" in line for line in lines)
    assert any("(reconnected)" in line for line in lines)


def test_open_failures_are_named_and_urls_redacted(tmp_path: Path) -> None:
    from edge_infer.pipeline.sources import redact_url

    assert (
        redact_url("rtsp://admin:s3cret@10.0.0.5:554/live") == "rtsp://admin:***@10.0.0.5:554/live"
    )
    assert redact_url("rtsp://10.0.0.5/live") == "rtsp://10.0.0.5/live"
    missing = FileCamera(type="file", id="f", path=tmp_path / "nope.mp4")
    src = CameraSource(missing, FrameHub(), opener=lambda c: None)
    assert src._open() is None
    assert src.stats.last_error == (
        f"open: {tmp_path / 'nope.mp4'} does not exist or is not a file"
    )


class TinyPool:
    """``count`` buffers; a buffer released twice, or never handed out, fails the test."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.out: dict[int, np.ndarray] = {}
        self.acquired: list[np.ndarray] = []

    def acquire(self, height: int, width: int) -> np.ndarray | None:
        if len(self.out) >= self.count:
            return None
        buf = np.full((height, width, 3), 77, np.uint8)
        self.out[id(buf)] = buf
        self.acquired.append(buf)
        return buf

    def release(self, array: np.ndarray) -> None:
        assert self.out.pop(id(array)) is array


def _pooled(script: list, pool: TinyPool) -> tuple[Harness, list[Frame]]:
    h = Harness(rtsp(stall_timeout_s=0.1), [script], stop_after_waits=3)
    h.source = CameraSource(
        h.source.cam,
        h.hub,
        opener=h.open,
        clock=h.clock,
        wall_clock=h.clock,
        wait=h.wait,
        rng=random.Random(0),
        pool=pool,
    )
    put: list[Frame] = []
    real_put = h.hub.put
    h.hub.put = lambda f: put.append(f) or real_put(f)  # type: ignore[method-assign]
    h.source.run()
    return h, put


def test_frames_are_converted_into_pool_buffers_which_come_back() -> None:
    from edge_infer.pipeline.sources import POOLED_FRAMES

    assert POOLED_FRAMES  # frames.py's Frame.recycle
    pool = TinyPool(2)
    h, put = _pooled([img(v=v) for v in range(1, 6)], pool)
    # the first frame's size is unknown until it arrives: OpenCV allocates it; the rest land
    # in pool buffers, with the frame's own pixels
    assert [f.image[0, 0, 0] for f in put] == [1, 2, 3, 4, 5]
    assert [any(f.image is b for b in pool.acquired) for f in put] == [False] + [True] * 4
    # each frame replaced in the slot gave its buffer back, so two buffers were enough
    assert len(pool.out) == 1 and h.hub.take_all()[0].image is next(iter(pool.out.values()))
    put[-1].release()
    assert not pool.out


def test_pool_buffers_come_back_on_size_change_invalid_frames_and_conversion() -> None:
    pool = TinyPool(4)
    gray = np.full((6, 8), 9, np.uint8)
    bad = np.zeros((6, 8, 3), np.float32)
    h, put = _pooled([img(v=1), img(w=16, h=12, v=2), img(w=16, h=12, v=3), gray, bad], pool)
    # 2: OpenCV allocated the new size (the 8x6 buffer came back); 3: a 16x12 buffer; gray:
    # converted to a new array (the buffer came back); bad: invalid (the buffer came back)
    assert [(f.image.shape[1], f.image[0, 0, 0]) for f in put] == [(8, 1), (16, 2), (16, 3), (8, 9)]
    assert h.source.stats.invalid == 1 and len(pool.acquired) == 4
    h.hub.take_all()[0].release()  # the batcher's side: the last frame is not pooled
    assert not pool.out  # every buffer is back


def test_no_pool_buffer_is_used_when_the_pool_is_empty() -> None:
    pool = TinyPool(0)
    _, put = _pooled([img(v=1), img(v=2)], pool)
    assert [f.image[0, 0, 0] for f in put] == [1, 2] and not pool.acquired
