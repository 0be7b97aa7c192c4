"""Frames and the latest-frame hub live apart from the OpenCV sources."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from edge_infer.pipeline.frames import Frame, FrameHub, FramePool


def test_batcher_and_frames_import_without_cv2() -> None:
    code = (
        "import sys, edge_infer.pipeline.batcher, edge_infer.pipeline.frames; "
        "print(sorted(m for m in ('cv2', 'zmq') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


def test_hub_keeps_the_latest_frame_per_camera() -> None:
    hub = FrameHub()
    image = np.zeros((2, 2, 3), np.uint8)
    assert hub.put(Frame("a", 0, image, 1.0, 1.0)) is False
    assert hub.put(Frame("a", 1, image, 2.0, 2.0)) is True  # the untaken frame is replaced
    hub.put(Frame("b", 0, image, 2.0, 2.0))
    assert sorted((f.camera_id, f.index) for f in hub.take_all()) == [("a", 1), ("b", 0)]
    assert hub.pending() == 0 and hub.takes("a") == 1


def _pooled(pool: FramePool, camera: str, index: int) -> Frame:
    buf = pool.acquire(4, 6)
    assert buf is not None
    return Frame(camera, index, buf, float(index), float(index), recycle=lambda: pool.release(buf))


def test_pool_hands_out_count_buffers_then_none_and_reuses_released_ones() -> None:
    made: list[tuple[int, int, int]] = []

    def allocate(shape: tuple[int, int, int]) -> np.ndarray:
        made.append(shape)
        return np.empty(shape, np.uint8)

    pool = FramePool(2, allocate)
    a, b = pool.acquire(4, 6), pool.acquire(4, 6)
    assert a is not None and b is not None and a is not b
    assert a.shape == (4, 6, 3) and a.dtype == np.uint8
    assert pool.acquire(4, 6) is None and pool.misses == 1  # all in use: OpenCV allocates
    pool.release(a)
    assert pool.acquire(4, 6) is a  # the released buffer comes back, nothing allocated
    assert made == [(4, 6, 3), (4, 6, 3)] and pool.in_use() == 2
    assert (pool.acquired, pool.allocated, pool.misses) == (3, 2, 1)


def test_pool_release_of_foreign_or_free_arrays_is_a_no_op() -> None:
    pool = FramePool(1)
    a = pool.acquire(2, 2)
    pool.release(np.empty((2, 2, 3), np.uint8))  # not from this pool
    assert pool.in_use() == 1
    pool.release(a)
    pool.release(a)  # released twice: the second is ignored
    assert pool.available() == 1 and pool.in_use() == 0
    assert pool.acquire(2, 2) is a and pool.acquire(2, 2) is None  # not handed out twice


def test_pool_reallocates_lazily_on_a_size_change_and_frees_old_buffers() -> None:
    freed: list[tuple[int, ...]] = []
    pool = FramePool(2, free=lambda arr: freed.append(arr.shape))
    small, out = pool.acquire(2, 2), pool.acquire(2, 2)
    pool.release(small)
    big = pool.acquire(8, 4)  # new size: the free small buffer is freed, a big one made
    assert big is not None and big.shape == (8, 4, 3) and freed == [(2, 2, 3)]
    pool.release(out)  # an old-size buffer coming back is freed, not pooled
    assert freed == [(2, 2, 3), (2, 2, 3)] and pool.available() == 0
    assert pool.acquire(8, 4) is not None and pool.acquire(8, 4) is None  # 2 of the new size


def test_pool_claims_each_buffer_it_hands_out() -> None:
    claimed: list[int] = []
    pool = FramePool(1, claim=lambda arr: claimed.append(id(arr)))
    a = pool.acquire(2, 2)
    pool.release(a)
    pool.acquire(2, 2)
    assert claimed == [id(a), id(a)]


def test_frame_release_recycles_at_most_once() -> None:
    calls: list[int] = []
    f = Frame("a", 1, np.zeros((1, 1, 3), np.uint8), 0.0, 0.0, recycle=lambda: calls.append(1))
    f.release()
    f.release()
    assert calls == [1]
    Frame("b", 1, np.zeros((1, 1, 3), np.uint8), 0.0, 0.0).release()  # no pool: no-op


def test_hub_releases_the_untaken_frame_it_replaces() -> None:
    pool, hub = FramePool(2), FrameHub()
    first, second = _pooled(pool, "a", 1), _pooled(pool, "a", 2)
    hub.put(first)
    assert pool.in_use() == 2
    assert hub.put(second) is True
    assert pool.in_use() == 1 and first.recycle is None  # the replaced frame's buffer is back
    taken = hub.take_all()
    assert taken == [second] and pool.in_use() == 1  # a taken frame is the taker's to release
    hub.put(_pooled(pool, "a", 3))  # nothing untaken: nothing released
    assert pool.in_use() == 2


def test_pool_is_thread_safe() -> None:
    import threading

    pool = FramePool(3)
    seen: list[int] = []
    lock = threading.Lock()

    def run() -> None:
        for _ in range(2000):
            buf = pool.acquire(2, 2)
            if buf is not None:
                with lock:
                    seen.append(id(buf))
                pool.release(buf)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pool.in_use() == 0 and pool.available() <= 3 and len(set(seen)) <= 3
