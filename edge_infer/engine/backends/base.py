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
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edge_infer.engine.ir import Graph
from edge_infer.errors import BackendError

if TYPE_CHECKING:
    from edge_infer.engine.options import BuildOptions


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


class Timer:
    """How a backend times a candidate: seconds one call of ``run`` takes on the device.

    The host clock (this class) suits the CPU, where the work is done when ``run`` returns;
    a GPU backend records events on its stream around the launch and reads their elapsed time.
    """

    def measure(self, run: Callable[[], None]) -> float:
        t0 = time.perf_counter()
        run()
        return time.perf_counter() - t0


class Program(abc.ABC):
    """A compiled graph for one batch size: immutable and shared by execution contexts."""

    @abc.abstractmethod
    def new_state(self) -> Any:
        """Per-context mutable state (activation arena, scratch buffers, device stream)."""

    @abc.abstractmethod
    def run(self, state: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Execute synchronously on ``state``; returns outputs by public name."""

    def run_bound(
        self, state: Any, inputs: Mapping[str, Any], outputs: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Execute on caller-owned buffers: ``inputs`` (every input, used in place where the
        device can) and ``outputs`` (written in place, or copied into after the run); outputs
        not in ``outputs`` are returned as new arrays. This default copies through ``run``;
        a backend that can address the caller's memory overrides it."""
        results = self.run(state, inputs)
        for name, array in outputs.items():
            np.copyto(array, results[name])
            results[name] = array
        return results

    def describe(self) -> dict[str, Any]:
        """Facts for ``inspect`` (layers, tactics, arena size)."""
        return {}


class Backend(abc.ABC):
    """A device the builder can target and the runtime can execute on.

    Everything device-specific lives behind this interface: the device's fingerprint and
    description, how candidates are timed, the backend's own settings (the CPU's threads per
    context, a GPU's streams), and its per-layer profile. The engine core calls only these.
    """

    name: ClassVar[str]
    #: the backend's programs take device arrays (objects with ``shape``, ``dtype`` and
    #: ``contiguous``, e.g. :class:`edge_infer.cuda.arena.DeviceArray`) as bound buffers
    binds_device_buffers: ClassVar[bool] = False

    @classmethod
    def is_available(cls) -> bool:
        return True

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why :meth:`is_available` is false here, and how to fix it (one line)."""
        return None

    def precision_note(self, precision: str) -> str | None:
        """What a person building ``precision`` engines for this device should know (e.g.
        that it runs validation kernels here), or ``None``."""
        return None

    @abc.abstractmethod
    def device_fingerprint(self) -> dict[str, Any]:
        """A stable description of this device; engines built elsewhere are refused."""

    def kernels_identity(self) -> str:
        """What tactic timings depend on besides the device and edge_infer's version: the
        build of the kernels they timed (the timing cache keeps a timing only for the same
        kernels). Empty where nothing besides those two changes them."""
        return ""

    def describe(self, fingerprint: Mapping[str, Any] | None = None) -> str:
        """One line naming a device for people (this one, or the one ``fingerprint`` names)."""
        fp = self.device_fingerprint() if fingerprint is None else fingerprint
        return ", ".join(f"{k}={v}" for k, v in sorted(fp.items())) or self.name

    def timer(self) -> Timer:
        """What the autotuner measures candidates with (the host clock unless overridden)."""
        return Timer()

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``BuildOptions.backend_options`` for this backend; returns them normalized.
        A backend without settings accepts none."""
        if options:
            raise BackendError(
                f"backend '{self.name}' takes no backend options, got {sorted(options)}"
            )
        return {}

    def configure(self, *, contexts: int = 1, cores: int | None = None) -> dict[str, Any]:
        """Share this machine between ``contexts`` execution contexts that run at once
        (``cores``: the host cores to use, None for all). Returns the backend options an
        engine for this setting should be built with (its tactics timed as they will run)."""
        return {}

    def tuned_settings(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The settings a build with ``options`` times its tactics at (stored in the build
        record; compared with :meth:`runtime_settings` when the engine runs)."""
        return {}

    def runtime_settings(self) -> dict[str, Any]:
        """The settings execution contexts created now would run with (same keys)."""
        return {}

    def rebuild_flags(self, options: Mapping[str, Any]) -> list[str]:
        """The `edge-infer build` flags that reproduce ``options``."""
        return []

    def timing_scope(self, options: Mapping[str, Any]) -> AbstractContextManager[Any]:
        """A block in which execution contexts run as a build with ``options``
        (``BuildOptions.backend_options``) timed its tactics: whole engines compared after a
        build (:func:`~edge_infer.engine.precision_speed.int8_where_faster`) are timed as
        they were tuned. Nothing to set for a backend without settings."""
        return nullcontext()

    def device_pipeline(self, context: Any, **settings: Any) -> Any | None:
        """Frames → detections on this backend's device around ``context`` (pre-processing
        into its bound input, decode + NMS on its output; ``settings`` as
        ``edge_infer.engine.device_pipeline`` documents), or None: the caller pre- and
        post-processes on the host (the CPU, where the host is the device)."""
        return None

    def tactic_names(self) -> frozenset[str] | None:
        """Every tactic name this backend's plans may record (checked when an engine loads,
        so a plan naming an unknown one is refused); None: the backend does not say."""
        return None

    @abc.abstractmethod
    def compile(
        self,
        graph: Graph,
        *,
        batch: int,
        options: BuildOptions,
        cache: Any = None,
        hints: dict[str, Any] | None = None,
    ) -> dict[str, bytes]:
        """Tune and compile ``graph`` (annotating ``node.meta``); returns artifacts to store.

        ``cache`` is the build's timing cache (or None when tuning is off); ``hints`` are the
        choices made at another batch size of the same profile, to reuse instead of timing.
        """

    @abc.abstractmethod
    def prepare(self, graph: Graph, blobs: Mapping[str, bytes]) -> Program:
        """Turn a compiled graph (as loaded from an engine file) into a runnable program."""

    def create_stream(self) -> Stream:
        return HostStream()

    def profile_layers(
        self, program: Program, feeds: Mapping[str, np.ndarray], iterations: int = 10
    ) -> list[dict[str, Any]]:
        """Time each layer of ``program`` on ``feeds`` (for ``bench --per-layer``): entries
        ``{name, op, members, tactic, time_us}``, slowest first; empty where the backend
        cannot time layers one by one."""
        return []
