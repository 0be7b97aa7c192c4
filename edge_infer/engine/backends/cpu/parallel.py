"""Work sharing inside a layer: the calling thread and helper threads split its chunks.

BLAS's own threads wait for each other at the end of every call; when another process holds
a core, the waiting thread loses its time slice and a 1 ms GEMM takes many. Here the caller
claims chunks too and never waits for a chunk nobody has started: if the helpers are not
scheduled, the caller simply runs every chunk itself. BLAS then runs single-threaded inside
each chunk (see :mod:`edge_infer.engine.threads`).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence

Run = Callable[[], None]


class WorkPool:
    """``run(chunks)`` executes independent callables on the caller plus ``workers - 1``
    helper threads; returns when every chunk has finished (re-raising the first error)."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, int(workers))
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._finished = threading.Condition(self._lock)
        self._busy = threading.Lock()  # one run() at a time; others run inline
        self._chunks: Sequence[Run] = ()
        self._next = 0
        self._remaining = 0
        self._generation = 0
        self._error: BaseException | None = None
        self._closed = False
        self._threads = [
            threading.Thread(target=self._helper, name=f"edge-infer-work-{k}", daemon=True)
            for k in range(self.workers - 1)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, chunks: Sequence[Run]) -> None:
        if len(chunks) <= 1 or not self._threads or not self._busy.acquire(blocking=False):
            for chunk in chunks:
                chunk()
            return
        try:
            with self._lock:
                self._chunks, self._next, self._remaining = chunks, 0, len(chunks)
                self._error = None
                self._generation += 1
                self._wake.notify_all()
            self._drain()
            with self._lock:
                while self._remaining:
                    self._finished.wait()
                error, self._chunks = self._error, ()
            if error is not None:
                raise error
        finally:
            self._busy.release()

    def _drain(self) -> None:
        while True:
            with self._lock:
                if self._next >= len(self._chunks):
                    return
                chunk = self._chunks[self._next]
                self._next += 1
            try:
                chunk()
            except BaseException as exc:  # delivered to the caller of run()
                with self._lock:
                    self._error = self._error or exc
            with self._lock:
                self._remaining -= 1
                if not self._remaining:
                    self._finished.notify_all()

    def _helper(self) -> None:
        seen = 0
        while True:
            with self._lock:
                while self._generation == seen and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                seen = self._generation
            self._drain()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify_all()


def split(total: int, parts: int, *, align: int = 1) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges covering ``range(total)``, boundaries multiples of ``align``."""
    parts = max(1, min(parts, -(-total // max(align, 1)) if total else 1))
    units = -(-total // align) if align > 1 else total
    bounds = [min(total, (units * k // parts) * align) for k in range(parts + 1)]
    bounds[-1] = total
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
