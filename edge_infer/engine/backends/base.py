"""The backend interface: what the builder and the runtime ask of a device.

A backend compiles an optimized graph for one batch size into a :class:`Program` (plus opaque
artifacts such as kernel binaries, stored in the engine file as blobs), and runs programs on
:class:`Stream` objects with :class:`Event` markers. The CPU backend is the first
implementation of this interface, the CUDA backend the second.
"""

from __future__ import annotations

import abc
import queue
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, ClassVar

import numpy as np

from edge_infer.engine.ir import Graph


class Event:
    """Marks a point in a stream's work; ``synchronize`` waits until the stream reaches it."""

    def __init__(self) -> None:
        self._done = threading.Event()

    def record(self) -> None:
        self._done.set()

    def query(self) -> bool:
        return self._done.is_set()

    def synchronize(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)


class Stream(abc.ABC):
    """An in-order queue of work on a device."""

    @abc.abstractmethod
    def submit(self, fn: Callable[[], Any]) -> Future: ...

    def record_event(self) -> Event:
        event = Event()
        self.submit(event.record)
        return event

    def synchronize(self) -> None:
        self.record_event().synchronize()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the stream's resources."""

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HostStream(Stream):
    """A CPU stream: one worker thread running submitted work in order."""

    def __init__(self, name: str = "edge-infer-stream") -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Future] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, future = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:  # delivered to whoever waits on the future
                    future.set_exception(exc)

    def submit(self, fn: Callable[[], Any]) -> Future:
        future: Future = Future()
        self._queue.put((fn, future))
        return future

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=5)


class Program(abc.ABC):
    """A compiled graph for one batch size: immutable and shared by execution contexts."""

    @abc.abstractmethod
    def new_state(self) -> Any:
        """Per-context mutable state (activation arena, scratch buffers, device stream)."""

    @abc.abstractmethod
    def run(self, state: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Execute synchronously on ``state``; returns outputs by public name."""

    def describe(self) -> dict[str, Any]:
        """Facts for ``inspect`` (layers, tactics, arena size)."""
        return {}


class Backend(abc.ABC):
    """A device the builder can target and the runtime can execute on."""

    name: ClassVar[str]

    @classmethod
    def is_available(cls) -> bool:
        return True

    @abc.abstractmethod
    def device_fingerprint(self) -> dict[str, Any]:
        """A stable description of this device; engines built elsewhere are refused."""

    @abc.abstractmethod
    def compile(self, graph: Graph, *, batch: int, options: Any,
                cache: Any = None, hints: dict[str, Any] | None = None) -> dict[str, bytes]:
        """Tune and compile ``graph`` (annotating ``node.meta``); returns artifacts to store.

        ``cache`` is the build's timing cache (or None when tuning is off); ``hints`` are the
        choices made at another batch size of the same profile, to reuse instead of timing.
        """

    @abc.abstractmethod
    def prepare(self, graph: Graph, blobs: Mapping[str, bytes]) -> Program:
        """Turn a compiled graph (as loaded from an engine file) into a runnable program."""

    def create_stream(self) -> Stream:
        return HostStream()
