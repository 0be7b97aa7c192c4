"""Work sharing inside a layer: the calling thread and helper threads split its chunks.

BLAS's own threads wait for each other at the end of every call; when another process holds
a core, the waiting thread loses its time slice and a 1 ms GEMM takes many. Here the caller
claims chunks too and never waits for a chunk nobody has started: if the helpers are not
scheduled, the caller simply runs every chunk itself. BLAS then runs single-threaded inside
each chunk (see :mod:`edge_infer.engine.backends.cpu.threads`).
"""

from __future__ import annotations

import ctypes
import itertools
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

Run = Callable[[], None]

#: how long native helper threads spin for the next layer before sleeping (microseconds)
NATIVE_SPIN_US = 200


class _Task(ctypes.Structure):
    _fields_ = [("fn", ctypes.c_void_p), ("args", ctypes.c_void_p)]


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
        self._native: Any = None  # the native pool (C threads), made on first native bind
        self._native_lib: Any = None

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

    def bind(self, chunks: Sequence[Run]) -> Run:
        """A run of ``chunks`` shared between threads. When every chunk is a native kernel
        call (it has a ``task``), the whole layer is one foreign call into the native pool:
        C threads that spin briefly between layers, no GIL, no Python per chunk."""
        chunks = list(chunks)
        tasks = [getattr(c, "task", None) for c in chunks]
        if len(chunks) > 1 and self.workers > 1 and all(t is not None for t in tasks):
            handle = self._native_pool()
            if handle is not None:
                array = (_Task * len(tasks))(*(_Task(fn, args) for fn, args in tasks))
                run_native, n, busy = self._native_lib.pool_run, len(tasks), self._busy

                def run() -> None:
                    if not busy.acquire(blocking=False):  # another run is on: inline
                        for chunk in chunks:
                            chunk()
                        return
                    try:
                        run_native(handle, array, n)
                    finally:
                        busy.release()

                run.keep = (array, chunks)  # type: ignore[attr-defined]
                run.native = (array, n, handle)  # type: ignore[attr-defined]
                return run
        return lambda: self.run(chunks)

    def _native_pool(self) -> Any:
        if self._native is None:
            from edge_infer.engine.backends.cpu import native

            lib = native.library()
            if lib is None:
                return None
            self._native_lib = lib
            self._native = lib.pool_create(self.workers, NATIVE_SPIN_US)
            # freed with the WorkPool, not at interpreter exit: a daemon thread may still be
            # inside a layer then, and the process's end stops the C threads anyway
            weakref.finalize(self, lib.pool_destroy, self._native).atexit = False
        return self._native

    def wake(self) -> None:
        """An inference starts: the native helpers spin until :meth:`rest` (pool.c
        ``pool_wake``), a helper asleep since the last one woken while the caller copies the
        inputs. Without a native pool (or on kernels before it) nothing happens."""
        if self._native is not None and hasattr(self._native_lib, "pool_rest"):
            self._native_lib.pool_wake(self._native)

    def rest(self) -> None:
        """The inference is over: the helpers sleep after their usual spin (``pool_rest``)."""
        if self._native is not None and hasattr(self._native_lib, "pool_rest"):
            self._native_lib.pool_rest(self._native)

    @contextmanager
    def active(self) -> Iterator[None]:
        """:meth:`wake` before the block, :meth:`rest` after it: an inference, or the timing
        of a layer's tactics at build (timed in the regime they will run in)."""
        self.wake()
        try:
            yield
        finally:
            self.rest()

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


def sequence(runs: Sequence[Run | None]) -> Run:
    """``runs`` one after another as one run (the run itself when there is one; Nones
    skipped)."""
    runs = [r for r in runs if r is not None]
    if len(runs) == 1:
        return runs[0]

    def run() -> None:
        for one in runs:
            one()

    run.parts = runs  # type: ignore[attr-defined]
    return run


class _Step(ctypes.Structure):  # pool.c pool_step
    _fields_ = [("kind", ctypes.c_long), ("tasks", ctypes.c_void_p), ("n", ctypes.c_long)]


#: a pool_step's kinds: tasks shared between the pool's threads / run on the caller in order
_SHARED, _HERE = 0, 1
#: programs fuse their native stretches (:func:`fuse`; False: one call per layer, for benches)
FUSE = True


def _native_steps(run: Run) -> list[tuple[int, Any, int, Any]] | None:
    """``run`` as pool_program steps (kind, task array, count, pool handle or None), or None
    where any part of it is not a native call (Python or numpy work)."""
    shared = getattr(run, "native", None)
    if shared is not None:  # WorkPool.bind's native pool call
        array, n, handle = shared
        return [(_SHARED, array, n, handle)]
    task = getattr(run, "task", None)  # native.NativeCall, NativeSequence
    if task is not None:
        return [(_HERE, (_Task * 1)(_Task(*task)), 1, None)]
    parts = getattr(run, "parts", None)  # sequence()
    if parts is None:
        return None
    steps: list[tuple[int, Any, int, Any]] = []
    for part in parts:
        more = _native_steps(part)
        if more is None:
            return None
        steps.extend(more)
    return steps


def fuse(runs: Sequence[Run], pool: WorkPool | None) -> list[Run]:
    """``runs`` (a program's layers, in order) with every stretch of two or more made only of
    native calls as one foreign call (pool.c ``pool_program``): no Python between those
    layers, the GIL released across them. The rest as they are; without the native library
    (or on kernels before pool_program) nothing changes."""
    from edge_infer.engine.backends.cpu import native

    # the library of the pool's threads where there is one (its pool struct), else this one
    lib = pool._native_lib if pool is not None and pool._native is not None else native.library()
    if not FUSE or lib is None or not hasattr(lib, "pool_program"):
        return list(runs)
    out: list[Run] = []
    stretch: list[tuple[Run, list[tuple[int, Any, int, Any]]]] = []

    def close() -> None:
        steps = [step for _, more in stretch for step in more]
        handles = {h for kind, _, _, h in steps if kind == _SHARED}
        if len(stretch) < 2 or len(handles) > 1:
            out.extend(r for r, _ in stretch)
        else:
            out.append(_program(lib, [r for r, _ in stretch], steps, handles, pool))
        stretch.clear()

    for run in runs:
        steps = _native_steps(run)
        if steps is None:
            close()
            out.append(run)
        else:
            stretch.append((run, steps))
    close()
    return out


def _program(
    lib: Any,
    runs: list[Run],
    steps: list[tuple[int, Any, int, Any]],
    handles: set[Any],
    pool: WorkPool | None,
) -> Run:
    array = (_Step * len(steps))(
        *(_Step(kind, ctypes.addressof(tasks), n) for kind, tasks, n, _ in steps)
    )
    handle, n, call = next(iter(handles), None), len(steps), lib.pool_program
    busy = pool._busy if pool is not None and handles else None

    def run() -> None:
        if busy is not None and not busy.acquire(blocking=False):  # another run is on
            for one in runs:
                one()
            return
        try:
            call(handle, array, n)
        finally:
            if busy is not None:
                busy.release()

    run.fused = (array, [tasks for _, tasks, _, _ in steps], runs)  # type: ignore[attr-defined]
    return run


def active(pool: WorkPool | None) -> Any:
    """``pool.active()``, or nothing to do without a pool."""
    return pool.active() if pool is not None else nullcontext()


def share(chunks: Sequence[Run], pool: Any) -> Run:
    """``chunks`` shared between the pool's threads (one after another without a pool)."""
    if pool is not None and len(chunks) > 1:
        return pool.bind(chunks)
    return sequence(chunks)
