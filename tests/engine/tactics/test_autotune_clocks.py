"""The autotuner's host clocks: candidates that run on the calling thread alone are compared by
its CPU time (another process taking the core does not count), others by the host clock, where
only unpreempted samples may drop a candidate early."""

from __future__ import annotations

import time

from edge_infer.engine.tactics.autotune import (
    HostTimer,
    Sample,
    time_interleaved,
    time_paired,
    tune_layer,
)

MS = 1e-3


class Candidate:
    def __init__(self, name: str) -> None:
        self.name, self.calls = name, 0

    def run(self) -> None:
        self.calls += 1


class Scripted(HostTimer):
    """Replays scripted samples per candidate (the rounds' samples; the warm-up is not timed)."""

    def __init__(self, samples: dict[str, list[Sample]]) -> None:
        self.samples = {k: list(v) for k, v in samples.items()}

    def sample(self, run) -> Sample:  # type: ignore[no-untyped-def,override]
        run()
        return self.samples[run.__self__.name].pop(0)


def alone(ms: float, wall_ms: float | None = None, preempted: int = 0) -> Sample:
    """A call on the calling thread alone: ``ms`` of its CPU time, ``wall_ms`` by the host
    clock (more where another process took the core meanwhile)."""
    wall = ms if wall_ms is None else wall_ms
    return Sample(wall * MS, ms * MS, ms * MS, 0, preempted)


def pooled(wall_ms: float, preempted: int = 0) -> Sample:
    """A call whose work is shared with a helper thread (the process's CPU time is twice the
    caller's)."""
    return Sample(wall_ms * MS, wall_ms * MS, 2 * wall_ms * MS, 0, preempted)


def tune(candidates: list[Candidate], timer: HostTimer) -> tuple[str, dict[str, float]]:
    return tune_layer("sig", candidates, lambda t: t.run, None, timer)  # type: ignore[arg-type]


def test_a_candidate_preempted_in_its_first_rounds_is_not_dropped() -> None:
    """At one thread on a loaded 2-core machine an INT8 Winograd layer of 1.3 ms took 11.9 ms
    in both its first samples (another process had the core): by the host clock above 4x the
    2 ms convolution, dropped. By the thread's CPU time it is the faster one."""
    wino, conv = Candidate("wino"), Candidate("conv")
    timer = Scripted(
        {
            "wino": [alone(1.3, 11.9, 3), alone(1.3, 11.9, 3)] + [alone(1.3)] * 5,
            "conv": [alone(2.0)] * 7,
        }
    )
    winner, times = tune([conv, wino], timer)
    assert winner == "wino" and times == {"wino": 1300.0, "conv": 2000.0}


def test_a_genuinely_slower_candidate_still_drops_after_two_rounds() -> None:
    """5x slower by CPU time: dropped after two rounds, as before (build time)."""
    slow, fast = Candidate("slow"), Candidate("fast")
    timer = Scripted({"slow": [alone(5.0)] * 7, "fast": [alone(1.0)] * 7})
    winner, _ = tune([slow, fast], timer)
    assert winner == "fast" and slow.calls == fast.calls == 3  # warm-up + two rounds


def test_work_on_other_threads_is_timed_by_the_host_clock() -> None:
    """A candidate that hands half its work to a helper thread uses less of the calling
    thread's CPU (0.6 ms) than the single-threaded one (0.8 ms) but takes longer (1.0 ms):
    one clock for all, the host's, as soon as any sample was not on the thread alone."""
    pool, single = Candidate("pool"), Candidate("single")
    helped = Sample(1.0 * MS, 0.6 * MS, 1.5 * MS)
    timer = Scripted({"pool": [helped] * 7, "single": [alone(0.8)] * 7})
    winner, times = tune([pool, single], timer)
    assert winner == "single" and times == {"pool": 1000.0, "single": 800.0}


def test_by_the_host_clock_only_unpreempted_samples_drop_a_candidate() -> None:
    """Timed by the host clock (a pool): the kernel's first two samples were preempted (10x);
    they do not drop it, and it wins once it runs undisturbed. A 5x slower candidate whose
    samples were not preempted is still dropped after two rounds."""
    kernel, fallback, slow = Candidate("kernel"), Candidate("fallback"), Candidate("slow")
    timer = Scripted(
        {
            "kernel": [pooled(10.0, 2), pooled(9.0, 1)] + [pooled(0.8)] * 5,
            "fallback": [pooled(1.0)] * 7,
            "slow": [pooled(5.0)] * 7,
        }
    )
    winner, times = tune([fallback, kernel, slow], timer)
    assert winner == "kernel" and times["kernel"] == 800.0
    assert slow.calls == 3 and kernel.calls > 3


def test_samples_of_the_real_clocks() -> None:
    """A call spinning on the calling thread ran on it alone; one that sleeps blocked (its
    thread CPU time is not its time): the tuner then compares by the host clock, and the
    sleeper (3 ms) loses to the spinner (1 ms) although it uses almost no CPU."""

    def spin(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    spun = HostTimer().sample(lambda: spin(0.002))
    assert spun.on_thread and spun.thread >= 0.0015 and spun.wall >= 0.002
    slept = HostTimer().sample(lambda: time.sleep(0.002))
    assert slept.blocked >= 1 and not slept.on_thread and slept.thread < 0.001
    times = time_interleaved({"sleeper": lambda: time.sleep(0.003), "spinner": lambda: spin(0.001)})
    assert times["spinner"] < times["sleeper"] and times["sleeper"] >= 3000


def test_sample_on_thread() -> None:
    assert Sample(2 * MS, 1 * MS, 1.005 * MS).on_thread  # another process took the core
    assert not Sample(1 * MS, 1 * MS, 1.5 * MS).on_thread  # a helper thread worked
    assert not Sample(1 * MS, 0.1 * MS, 0.1 * MS, blocked=1).on_thread  # it waited
    assert Sample.of(3.0) == Sample(3.0, 3.0, 3.0)


def test_paired_timing_reads_one_clock_for_all_runs() -> None:
    """time_paired (the chains' timing) reads the thread's CPU time while every run is on the
    thread alone; the host clock for all runs as soon as one is not."""

    class Named(Candidate):
        pass

    a, b = Named("a"), Named("b")
    timer = Scripted({"a": [alone(1.0, 9.0)] * 6, "b": [alone(0.8, 0.8)] * 6})
    samples = time_paired({"a": a.run, "b": b.run}, timer=timer, rounds=6, min_rounds=6)
    assert samples == {"a": [1.0 * MS] * 6, "b": [0.8 * MS] * 6}
    a, b = Named("a"), Named("b")
    timer = Scripted({"a": [alone(1.0, 9.0)] * 6, "b": [pooled(0.8)] + [alone(0.8)] * 5})
    samples = time_paired({"a": a.run, "b": b.run}, timer=timer, rounds=6, min_rounds=6)
    assert samples == {"a": [9.0 * MS] * 6, "b": [0.8 * MS] * 6}
