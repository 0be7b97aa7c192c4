"""The stream-order hazard checker: proves that every pair of conflicting memory accesses is
ordered the way CUDA orders work, or names the two operations that are not.

CUDA runs work on different streams in any order and at the same time unless the program
orders it: work on one stream runs in issue order; ``cudaStreamWaitEvent`` makes later work on
a stream wait for everything before the event's last record; the host sees a stream's, an
event's or the device's work finished after synchronizing on it; and work the host enqueues
starts after everything the host did before enqueueing it. Two accesses to overlapping bytes of
one allocation, at least one a write, that are not ordered that way are a race on a GPU even
when they happen to come out right in a test.

The checker keeps a vector clock per *agent* (each stream, and one for the host) and applies
exactly those rules at the moment the host issues each call (so the verdict depends on the
program, not on thread timing):

- an operation on stream ``s`` joins the host's clock (host program order before the enqueue),
  ticks ``s`` and is stamped with ``s``'s clock;
- an event record stores the recording stream's clock; a wait joins it into the waiting
  stream's clock; a stream/event/device synchronize joins it into the host's clock;
- a host access (the caller declares its reads and writes of pinned or mapped buffers) ticks
  the host and is stamped with the host's clock.

Access ``a`` happens before access ``b`` iff ``a.epoch <= b.clock[a.agent]``. Every access is
checked against the earlier accesses to the same allocation; a conflicting unordered pair raises
:class:`~edge_infer.errors.HazardError`. Host threads count as one host agent, ordered by the
order in which their calls reach the device.

Pruning keeps long runs cheap without losing a hazard: an earlier access is dropped once the
host's clock covers it (every later operation, on any stream, is then ordered after it), or
when a later access by an operation ordered after it covers its bytes and conflicts with all
that it conflicts with (a write, or a read covering a read): any access that races with the
dropped one then races with the one that replaced it.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

from edge_infer.errors import CudaError, HazardError

HOST = 0
_HOST_NAME = "host"


@dataclass(frozen=True)
class Span:
    """Bytes ``[start, stop)`` of allocation ``alloc`` (``name`` only labels messages)."""

    alloc: int
    start: int
    stop: int
    name: str = field(default="", compare=False)

    def overlaps(self, other: Span) -> bool:
        return self.alloc == other.alloc and self.start < other.stop and other.start < self.stop

    def __str__(self) -> str:
        return f"'{self.name or f'#{self.alloc}'}'[{self.start}:{self.stop})"


@dataclass(frozen=True, eq=False, slots=True)
class _Access:
    label: str
    agent: int
    epoch: int  # the agent's clock at this access
    span: Span
    write: bool
    where: str  # "stream 'aux0'" or "host"

    def ordered_before(self, clock: dict[int, int]) -> bool:
        return self.epoch <= clock.get(self.agent, 0)

    def describe(self) -> str:
        kind = "write" if self.write else "read"
        return f"{kind} of {self.span} by '{self.label}' on {self.where}"


def _join(into: dict[int, int], other: dict[int, int]) -> None:
    for agent, tick in other.items():
        if into.get(agent, 0) < tick:
            into[agent] = tick


class HazardChecker:
    """Vector-clock happens-before over streams, events and the host (see the module doc).

    Streams are registered with :meth:`add_stream` (which returns the agent id the other calls
    take); events are any hashable key. Thread-safe: one lock orders every call.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clocks: dict[int, dict[int, int]] = {HOST: {HOST: 0}}
        self._names: dict[int, str] = {HOST: _HOST_NAME}
        self._events: dict[Hashable, dict[int, int]] = {}
        self._retired: dict[int, int] = {}  # the joined clocks of destroyed streams
        self._accesses: dict[int, list[_Access]] = {}
        self._next_agent = HOST + 1

    # -- agents and events ---------------------------------------------------------------------

    def add_stream(self, name: str) -> int:
        with self._lock:
            agent = self._next_agent
            self._next_agent += 1
            self._clocks[agent] = {agent: 0}
            self._names[agent] = name
            return agent

    def remove_stream(self, agent: int) -> None:
        """A destroyed stream: no more work on it, but (as cudaStreamDestroy does not wait)
        its work is still ordered before the host only by a later device synchronize."""
        with self._lock:
            clock = self._clocks.pop(agent, None)
            if clock is not None:
                _join(self._retired, clock)

    def remove_event(self, key: Hashable) -> None:
        with self._lock:
            self._events.pop(key, None)

    def forget(self, alloc: int) -> None:
        """Drop every access to a freed allocation."""
        with self._lock:
            self._accesses.pop(alloc, None)

    # -- ordering ------------------------------------------------------------------------------

    def record(self, event: Hashable, stream: int) -> None:
        with self._lock:
            clock = self._stream_clock(stream)
            _join(clock, self._clocks[HOST])
            self._events[event] = dict(clock)

    def wait(self, stream: int, event: Hashable) -> None:
        """Later work on ``stream`` waits for the event's last record (none: no ordering)."""
        with self._lock:
            clock = self._stream_clock(stream)
            _join(clock, self._clocks[HOST])
            recorded = self._events.get(event)
            if recorded is not None:
                _join(clock, recorded)

    # A host synchronize is two steps: the point it waits for is taken when the call is issued
    # (work enqueued by other threads while it waits is not covered), and the host joins it
    # when the wait returns.

    def stream_point(self, stream: int) -> dict[int, int]:
        with self._lock:
            return dict(self._stream_clock(stream))

    def event_point(self, event: Hashable) -> dict[int, int]:
        with self._lock:
            return dict(self._events.get(event, {}))

    def device_point(self) -> dict[int, int]:
        with self._lock:
            point = dict(self._retired)
            for clock in self._clocks.values():
                _join(point, clock)
            return point

    def host_joins(self, point: dict[int, int]) -> None:
        """The host has seen everything up to ``point`` finish."""
        with self._lock:
            _join(self._clocks[HOST], point)
            self._prune()

    def sync_stream(self, stream: int) -> None:
        self.host_joins(self.stream_point(stream))

    def sync_event(self, event: Hashable) -> None:
        self.host_joins(self.event_point(event))

    def sync_device(self) -> None:
        self.host_joins(self.device_point())

    # -- accesses ------------------------------------------------------------------------------

    def stream_op(
        self, stream: int, label: str, reads: Iterable[Span] = (), writes: Iterable[Span] = ()
    ) -> None:
        """Check and record an operation (launch, copy, memset) enqueued on ``stream``."""
        with self._lock:
            clock = self._stream_clock(stream)
            _join(clock, self._clocks[HOST])
            clock[stream] = clock.get(stream, 0) + 1
            where = f"stream '{self._names[stream]}'"
            self._access(stream, dict(clock), label, where, reads, writes)

    def host_op(self, label: str, reads: Iterable[Span] = (), writes: Iterable[Span] = ()) -> None:
        """Check and record a host read/write of pinned or mapped memory, happening now."""
        with self._lock:
            host = self._clocks[HOST]
            host[HOST] += 1
            self._access(HOST, dict(host), label, _HOST_NAME, reads, writes)

    def pending(self, alloc: int | None = None) -> int:
        """How many accesses are kept (for one allocation, or all): pruning's measure."""
        with self._lock:
            if alloc is not None:
                return len(self._accesses.get(alloc, ()))
            return sum(len(v) for v in self._accesses.values())

    # -- internals -----------------------------------------------------------------------------

    def _stream_clock(self, stream: int) -> dict[int, int]:
        clock = self._clocks.get(stream)
        if clock is None or stream == HOST:
            raise CudaError(f"hazard checker: unknown or destroyed stream agent {stream}")
        return clock

    def _access(
        self,
        agent: int,
        clock: dict[int, int],
        label: str,
        where: str,
        reads: Iterable[Span],
        writes: Iterable[Span],
    ) -> None:
        epoch = clock[agent]
        new = [_Access(label, agent, epoch, s, True, where) for s in writes]
        new += [_Access(label, agent, epoch, s, False, where) for s in reads]
        lists = self._accesses
        # The hot loop: comparisons spelled out (no method calls) as it runs once per earlier
        # access. Check all before recording any: a refused op leaves no trace.
        for access in new:
            span, write = access.span, access.write
            for e in lists.get(span.alloc, ()):
                if (
                    (write or e.write)
                    and e.span.start < span.stop
                    and span.start < e.span.stop
                    and e.epoch > clock.get(e.agent, 0)
                ):
                    raise _hazard(e, access)
        by_alloc: dict[int, list[_Access]] = {}
        for access in new:
            by_alloc.setdefault(access.span.alloc, []).append(access)
        for alloc, added in by_alloc.items():
            kept = [
                e
                for e in lists.get(alloc, ())
                if not (
                    e.epoch <= clock.get(e.agent, 0)
                    and any(
                        a.span.start <= e.span.start
                        and e.span.stop <= a.span.stop
                        and (a.write or not e.write)
                        for a in added
                    )
                )
            ]
            lists[alloc] = kept + added

    def _prune(self) -> None:
        """Drop accesses the host has seen finish: every later operation is ordered after them."""
        host = self._clocks[HOST]
        for alloc, accesses in list(self._accesses.items()):
            kept = [a for a in accesses if not a.ordered_before(host)]
            if kept:
                self._accesses[alloc] = kept
            else:
                del self._accesses[alloc]


def _hazard(first: _Access, second: _Access) -> HazardError:
    kind = (
        "write-after-write"
        if first.write and second.write
        else "read-after-write"
        if first.write
        else "write-after-read"
    )
    a, b = first.describe(), second.describe()
    return HazardError(
        f"stream-order hazard ({kind}): {a} and {b} are not ordered; record an event after "
        f"the first and make the second's stream wait on it (or synchronize the host before "
        f"a host access)",
        first=a,
        second=b,
    )
