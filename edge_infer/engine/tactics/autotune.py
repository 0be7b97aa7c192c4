"""Auto-tuning: time each candidate tactic of a layer on this device; remember the winner.

Each candidate is bound to random inputs of the layer's real shapes, run once to warm up,
then timed a few times, round-robin (stopping early once it is clearly slower than the best so
far); the fastest sample wins. Disturbance only ever adds time, so a candidate's fastest
sample is its least disturbed one: on a busy machine (a build beside running cameras, CI) a
median can be all preemption and crown a fallback ten times slower; one undisturbed
sample is enough for the minimum.

On the host (the CPU backend's timer) each sample is read from several clocks
(:class:`HostTimer`): where every candidate runs on the calling thread alone (a build at one
thread per context: no helper thread, no blocking), candidates are compared by that thread's
CPU time, which another process taking the core does not inflate; otherwise by the host
clock, and then a sample during which a thread of this process was preempted is no evidence
for dropping a candidate early.

Results go to a :class:`TimingCache` keyed by layer signature (its own module,
``timing_cache.py``), so rebuilding the same model (or another with the same layer shapes) on
this device skips the timing.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge_infer.engine.backends.base import Timer
from edge_infer.engine.tactics.base import Tactic
from edge_infer.engine.tactics.timing_cache import TimingCache
from edge_infer.errors import BuildError

__all__ = [
    "HostTimer",
    "Sample",
    "TimingCache",
    "paired_ratio",
    "paired_times",
    "time_interleaved",
    "time_paired",
    "time_run",
    "tune_layer",
]

#: a tuning's timing of bound candidates: (runs by name, the timer) -> microseconds by name
Timing = Callable[[dict[str, Callable[[], None]], Timer | None], dict[str, float]]

#: a sample ran on the calling thread alone when the process's other threads used at most this
#: share of its CPU time, plus ALONE_S (the clock reads between the two brackets)
ALONE_SHARE, ALONE_S = 0.01, 10e-6


@dataclass(frozen=True)
class Sample:
    """One timed call of a candidate: seconds by the host clock (``wall``), by the calling
    thread's CPU clock and by the process's (every thread), and the process's context
    switches meanwhile: ``blocked`` voluntary ones (a thread slept, waited on a lock, on I/O
    or on another thread), ``preempted`` involuntary ones (a thread lost its core)."""

    wall: float
    thread: float
    process: float
    blocked: int = 0
    preempted: int = 0

    @classmethod
    def of(cls, seconds: float) -> Sample:
        """A sample of a clock that is the only one there is (a GPU's events)."""
        return cls(seconds, seconds, seconds)

    @property
    def on_thread(self) -> bool:
        """The call's work was all done on the calling thread: no other thread of the process
        used the CPU meanwhile and no thread blocked, so the thread's CPU time is the call's
        time less whatever other processes took from it."""
        return self.blocked == 0 and (
            self.process - self.thread <= ALONE_SHARE * self.thread + ALONE_S
        )


class HostTimer(Timer):
    """The host clock of :class:`Timer`, with the thread's and the process's CPU clocks and
    the process's context switches read around the same call (:meth:`sample`)."""

    def sample(self, run: Callable[[], None]) -> Sample:
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        p0 = time.process_time_ns()
        t0 = time.thread_time_ns()
        w0 = time.perf_counter_ns()
        run()
        w1 = time.perf_counter_ns()
        t1 = time.thread_time_ns()
        p1 = time.process_time_ns()
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        return Sample(
            (w1 - w0) * 1e-9,
            (t1 - t0) * 1e-9,
            (p1 - p0) * 1e-9,
            r1.ru_nvcsw - r0.ru_nvcsw,
            r1.ru_nivcsw - r0.ru_nivcsw,
        )


def _sampler(timer: Timer | None) -> Callable[[Callable[[], None]], Sample]:
    """How candidates are sampled with ``timer``: every clock of :class:`HostTimer` for the
    host's (None, a plain :class:`Timer`), a device's own timer (GPU events) as it measures."""
    if isinstance(timer, HostTimer):
        return timer.sample
    if timer is None or type(timer) is Timer:
        return HostTimer().sample
    measure = timer.measure
    return lambda run: Sample.of(measure(run))


class _Samples:
    """Each candidate's samples so far, read by one clock for all: the thread's CPU time while
    every sample ran on the calling thread alone, else the host clock."""

    def __init__(self, names: Sequence[str]) -> None:
        self.samples: dict[str, list[Sample]] = {name: [] for name in names}
        self.on_thread = True

    def add(self, name: str, sample: Sample) -> None:
        self.samples[name].append(sample)
        self.on_thread = self.on_thread and sample.on_thread

    def seconds(self, name: str) -> list[float]:
        return [s.thread if self.on_thread else s.wall for s in self.samples[name]]

    def evidence(self, name: str) -> list[float]:
        """The samples that may drop ``name`` early: by CPU time all (another process taking
        the core does not show in it), by the host clock those no preemption lengthened."""
        return [
            s.thread if self.on_thread else s.wall
            for s in self.samples[name]
            if self.on_thread or not s.preempted
        ]


def time_run(
    run: Callable[[], None],
    *,
    repeats: int = 5,
    budget_s: float = 0.5,
    give_up_after: float | None = None,
    timer: Timer | None = None,
) -> float:
    """Fastest seconds of ``run`` (after one warm-up), stopping early when clearly slower;
    each sample measured by ``timer`` (the backend's; default the host clock)."""
    measure = (timer or Timer()).measure
    run()
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    for _ in range(repeats):
        samples.append(measure(run))
        if give_up_after is not None and min(samples) > 1.5 * give_up_after:
            break
        if time.perf_counter() > deadline and len(samples) >= 2:
            break
    return min(samples)


def time_interleaved(
    runs: dict[str, Callable[[], None]],
    *,
    rounds: int = 7,
    budget_s: float = 1.0,
    timer: Timer | None = None,
) -> dict[str, float]:
    """The fastest sample of each run in microseconds, measured round-robin (one run of each
    candidate per round, after one warm-up each).

    Interleaving matters on shared machines: a phase of contention (another VM on the host,
    a busy sibling process) slows every candidate of a round alike instead of whichever was
    being timed; taking each candidate's fastest sample discards the rounds it was preempted
    in. A candidate clearly slower than the best so far stops being timed: after two rounds
    when its fastest sample is above 4× the best's (a reference kernel beside a native
    one), after four rounds when above 1.5× — and never while its fastest sample is within
    the best candidate's own spread (below the best's slowest sample). On a loaded machine a
    multithreaded kernel can lose its first two rounds to descheduled pool threads; dropping
    it then at 1.5× crowned a single-threaded fallback. Samples are measured by
    ``timer`` (the backend's: host clock on the CPU, events on a GPU); the time budget is
    the host's. On the host, candidates that all run on the calling thread alone are compared
    by its CPU time, else by the host clock with only unpreempted samples dropping one
    (:class:`_Samples`): at one thread on a loaded 2-core machine, an INT8 Winograd layer of
    1.3 ms was dropped after two samples of 11.9 ms, both preempted.
    """
    sample = _sampler(timer)
    for run in runs.values():
        run()
    samples = _Samples(list(runs))
    live = list(runs)
    deadline = time.perf_counter() + budget_s
    for k in range(rounds):
        for name in live:
            samples.add(name, sample(runs[name]))
        if k >= 1:
            live = _survivors(samples, live, _DROP_EARLY if k < _ROUNDS_EARLY else _DROP_LATE)
        if len(live) == 1 or (k >= 2 and time.perf_counter() > deadline):
            break
    return {name: round(min(samples.seconds(name)) * 1e6, 1) for name in runs}


def time_paired(
    runs: dict[str, Callable[[], None]],
    *,
    rounds: int = 15,
    min_rounds: int = 6,
    budget_s: float = 2.0,
    give_up: float = 1.3,
    timer: Timer | None = None,
) -> dict[str, list[float]]:
    """Each run's samples (seconds), one per round, the runs back to back in each round (the
    order reversed every other round), after one warm-up each. The first run is the baseline:
    once every other run's median ratio to it (:func:`paired_ratio`) is above ``give_up``
    after ``min_rounds`` rounds, or the budget is spent, the timing stops. Two runs back to
    back see the same load; the fastest samples of runs timed apart need not. Read by one
    clock for all runs: on the host the calling thread's CPU time where every sample ran on
    it alone, else the host clock (:class:`_Samples`)."""
    sample = _sampler(timer)
    for run in runs.values():
        run()
    names = list(runs)
    samples = _Samples(names)
    deadline = time.perf_counter() + budget_s
    for k in range(rounds):
        for name in names if k % 2 == 0 else names[::-1]:
            samples.add(name, sample(runs[name]))
        if k + 1 >= min_rounds and (
            time.perf_counter() > deadline
            or all(
                paired_ratio(samples.seconds(n), samples.seconds(names[0])) > give_up
                for n in names[1:]
            )
        ):
            break
    return {name: samples.seconds(name) for name in names}


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """The median over rounds of ``a``'s sample over ``b``'s of the same round."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def paired_times(samples: dict[str, list[float]]) -> dict[str, float]:
    """Microseconds from :func:`time_paired`'s samples: the baseline's (first) fastest
    sample, and for every other run that times the median of its per-round ratios to it."""
    names = list(samples)
    base = samples[names[0]]
    return {
        name: round(min(base) * (1.0 if k == 0 else paired_ratio(samples[name], base)) * 1e6, 1)
        for k, name in enumerate(names)
    }


#: a candidate this many times slower than the best is dropped after two rounds ...
_DROP_EARLY = 4.0
#: ... and one this many times slower once every candidate has this many samples
_DROP_LATE, _ROUNDS_EARLY = 1.5, 3


def _survivors(samples: _Samples, live: list[str], factor: float) -> list[str]:
    """The candidates still worth timing: fastest sample within ``factor`` of the best's, or
    below the best candidate's slowest sample (its timings still overlap the best's), or
    none of its samples evidence (:meth:`_Samples.evidence`: all preempted)."""
    seconds = {n: samples.seconds(n) for n in live}
    best = min(live, key=lambda n: min(seconds[n]))
    bar = max(factor * min(seconds[best]), max(seconds[best]))
    return [n for n in live if min(seconds[n]) <= bar or not samples.evidence(n)]


def tune_layer(
    signature: str,
    tactics: list[Tactic],
    bind: Callable[[Tactic], Callable[[], None]],
    cache: TimingCache | None,
    timer: Timer | None = None,
    check: Callable[[list[Tactic]], list[Tactic]] | None = None,
    timing: Timing | None = None,
) -> tuple[str, dict[str, float]]:
    """Pick the fastest of ``tactics``; returns (name, {name: microseconds}), timed by
    ``timing`` (default :func:`time_interleaved`).

    ``check`` (the self-check of ``tactics/verify.py``, bound to the layer) keeps the
    candidates that compute the layer right; a rejected candidate is never chosen: a cached
    winner is checked before it is used (and the others checked and timed again if it
    fails), otherwise every candidate is checked before any is timed."""
    names = [t.name for t in tactics]
    if len(tactics) == 1 and check is None:
        return names[0], {}
    hit = cache.get(signature, names) if cache is not None and len(tactics) > 1 else None
    if hit is not None:
        cached = [t for t in tactics if t.name == hit["tactic"]]
        if check is None or check(cached):
            return hit["tactic"], dict(hit.get("times_us", {}))
        tactics = [t for t in tactics if t.name != hit["tactic"]]
    if check is not None:
        tactics = check(tactics)
        if not tactics:
            raise BuildError(
                f"{signature}: every candidate tactic disagrees with the reference "
                "(see the warnings); report it with the warnings' text"
            )
        if len(tactics) == 1:
            return tactics[0].name, {}
    runs = {t.name: bind(t) for t in tactics}
    times = timing(runs, timer) if timing is not None else time_interleaved(runs, timer=timer)
    winner = min(times, key=times.__getitem__)
    if cache is not None:
        cache.put(signature, winner, times)
    return winner, times
