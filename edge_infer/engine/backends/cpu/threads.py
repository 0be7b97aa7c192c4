"""One thread budget for everything that computes: BLAS, numba, and our worker pools.

BLAS threads wait for each other at the end of every call, and a waiting thread that loses
its core turns a 1 ms GEMM into many; threads of two libraries side by side oversubscribe a
small CPU. So edge_infer runs BLAS single-threaded and shares each layer's work between its
own threads (:class:`~edge_infer.engine.backends.cpu.parallel.WorkPool`), the caller
included. The budget is explicit: ``cores`` threads in all, split across the execution
contexts that run at the same time. Library code never reads the environment; the CLI and
the daemon decide the budget and call :func:`set_thread_budget`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_lock = threading.Lock()


@dataclass(frozen=True)
class ThreadBudget:
    cores: int
    concurrent_contexts: int

    @property
    def per_context(self) -> int:
        """Threads each context may use (its work pool: the caller plus helpers)."""
        return max(1, self.cores // max(1, self.concurrent_contexts))


_budget = ThreadBudget(os.cpu_count() or 1, 1)


def set_thread_budget(cores: int | None = None, concurrent_contexts: int = 1) -> ThreadBudget:
    """Use ``cores`` threads in all (default: every core) across ``concurrent_contexts``."""
    global _budget
    from threadpoolctl import threadpool_limits

    cores = max(1, int(cores or os.cpu_count() or 1))
    with _lock:
        _budget = ThreadBudget(cores, max(1, int(concurrent_contexts)))
        threadpool_limits(limits=1, user_api="blas")
    return _budget


def single_threaded_blas() -> None:
    """BLAS runs one thread per caller; edge_infer's work pools provide the parallelism."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def thread_budget() -> ThreadBudget:
    return _budget


@contextmanager
def per_context_threads(threads: int | None) -> Iterator[ThreadBudget]:
    """Within the block, one context of ``threads`` threads (None: the budget as it is);
    the previous budget is restored after. The builder tunes tactics this way for the
    width an engine will run at (``edge-infer build --threads``)."""
    global _budget
    previous = _budget
    if threads is None:
        yield previous
        return
    budget = set_thread_budget(threads, 1)
    try:
        yield budget
    finally:
        with _lock:
            _budget = previous


def blas_threads() -> int:
    """Threads the BLAS library is using right now."""
    from threadpoolctl import threadpool_info

    counts = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    return max(counts) if counts else 1
