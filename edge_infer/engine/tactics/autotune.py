"""Auto-tuning: time each candidate tactic of a layer on this device; remember the winner.

Each candidate is bound to random inputs of the layer's real shapes, run once to warm up,
then timed a few times, round-robin (stopping early once it is clearly slower than the best so
far); the fastest sample wins. Disturbance only ever adds time, so a candidate's fastest
sample is its least disturbed one: on a busy machine (a build beside running cameras, CI) a
median can be all preemption and crown a fallback ten times slower; one undisturbed
sample is enough for the minimum.

Results go to a :class:`TimingCache` keyed by layer signature (its own module,
``timing_cache.py``), so rebuilding the same model (or another with the same layer shapes) on
this device skips the timing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from edge_infer.engine.backends.base import Timer
from edge_infer.engine.tactics.base import Tactic
from edge_infer.engine.tactics.timing_cache import TimingCache
from edge_infer.errors import BuildError

__all__ = ["TimingCache", "time_interleaved", "time_run", "tune_layer"]


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
    the host's.
    """
    measure = (timer or Timer()).measure
    for run in runs.values():
        run()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    live = list(runs)
    deadline = time.perf_counter() + budget_s
    for k in range(rounds):
        for name in live:
            samples[name].append(measure(runs[name]))
        if k >= 1:
            live = _survivors(samples, live, _DROP_EARLY if k < _ROUNDS_EARLY else _DROP_LATE)
        if len(live) == 1 or (k >= 2 and time.perf_counter() > deadline):
            break
    return {name: round(min(v) * 1e6, 1) for name, v in samples.items()}


#: a candidate this many times slower than the best is dropped after two rounds ...
_DROP_EARLY = 4.0
#: ... and one this many times slower once every candidate has this many samples
_DROP_LATE, _ROUNDS_EARLY = 1.5, 3


def _survivors(samples: dict[str, list[float]], live: list[str], factor: float) -> list[str]:
    """The candidates still worth timing: fastest sample within ``factor`` of the best's, or
    below the best candidate's slowest sample (its timings still overlap the best's)."""
    best = min(live, key=lambda n: min(samples[n]))
    fastest, spread = min(samples[best]), max(samples[best])
    return [n for n in live if min(samples[n]) <= max(factor * fastest, spread)]


def tune_layer(
    signature: str,
    tactics: list[Tactic],
    bind: Callable[[Tactic], Callable[[], None]],
    cache: TimingCache | None,
    timer: Timer | None = None,
    check: Callable[[list[Tactic]], list[Tactic]] | None = None,
) -> tuple[str, dict[str, float]]:
    """Pick the fastest of ``tactics``; returns (name, {name: microseconds}).

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
    times = time_interleaved({t.name: bind(t) for t in tactics}, timer=timer)
    winner = min(times, key=times.__getitem__)
    if cache is not None:
        cache.put(signature, winner, times)
    return winner, times
