"""Timing shared by the FP16 benches: programs run in turn, round by round, in one process
(a loaded machine slows them alike), and the medians of the per-round ratios."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


def alternate(
    programs: Mapping[str, Any],
    states: Mapping[str, Any],
    feeds: dict[str, np.ndarray],
    rounds: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Three warm-up runs of each program, then ``rounds`` rounds of one timed run each, in
    turn; the states closed afterwards. Seconds per run, by program."""
    for _ in range(3):
        for k, p in programs.items():
            p.run(states[k], feeds)
    times: dict[str, list[float]] = {k: [] for k in programs}
    for _ in range(rounds):
        for k, p in programs.items():
            t0 = clock()
            p.run(states[k], feeds)
            times[k].append(clock() - t0)
    for s in states.values():
        s.close()
    return times


def median_ms(times: Mapping[str, list[float]]) -> dict[str, float]:
    return {k: round(float(np.median(v)) * 1e3, 2) for k, v in times.items()}


def median_ratio(num: list[float], den: list[float]) -> float:
    """The median of the per-round ratios ``num / den``."""
    return round(float(np.median(np.array(num) / den)), 3)


def ratios_to(times: Mapping[str, list[float]], base: str = "fp32") -> dict[str, float]:
    """Each program's median per-round ratio to ``base``'s."""
    return {k: median_ratio(v, times[base]) for k, v in times.items() if k != base}


def bound(graph: Any, takes_half: Callable[[Any], bool] | None = None) -> tuple[Any, Any]:
    """``graph``'s program and a state, its layers bound (in ``new_state``) with
    ``cpu_fp16.takes_half`` replaced by ``takes_half`` (None: as it is)."""
    from edge_infer.engine.backends.cpu.program import CpuProgram
    from edge_infer.engine.backends.cpu.tactics import cpu_fp16

    takes = cpu_fp16.takes_half
    if takes_half is not None:
        cpu_fp16.takes_half = takes_half  # type: ignore[assignment]
    try:
        program = CpuProgram(graph)
        return program, program.new_state()
    finally:
        cpu_fp16.takes_half = takes  # type: ignore[assignment]


def first_runs_checked(
    name: str,
    runs: Mapping[str, Callable[[], Any]],
    outs: Mapping[str, np.ndarray],
    ref: np.ndarray,
    ref_key: str = "onnxruntime",
) -> None:
    """Each of ``runs`` once (a warm-up); those with an output in ``outs`` compared with
    ``ref``: a line printed where the largest difference exceeds 1e-3 of ``ref``'s largest."""
    for key, r in runs.items():
        r()
        if key != ref_key:
            err = float(np.abs(outs[key] - ref).max() / np.abs(ref).max())
            if err > 1e-3:
                print(f"  {name} {key}: max diff {err:.1e} (wrong?)")


def rotated(runs: Mapping[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """``rounds`` rounds of one timed call of each of ``runs``, each round starting one
    further along the list. Seconds per call, by run."""
    names = list(runs)
    times: dict[str, list[float]] = {key: [] for key in names}
    for rnd in range(rounds):
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for key in order:
            t = time.perf_counter()
            runs[key]()
            times[key].append(time.perf_counter() - t)
    return times


def run_models(
    argv: list[str] | None,
    doc: str,
    run: Callable[..., dict[str, Any]],
    choices: list[str],
    default: list[str],
    rounds: int,
    timing_options: bool = False,
) -> int:
    """A model bench's command line: ``--models``, ``--rounds`` and, with ``timing_options``,
    ``--threads`` (threads per context) and ``--cpu-time`` (passed to ``run``); prints
    ``run``'s result for each model."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=default, choices=choices)
    parser.add_argument("--rounds", type=int, default=rounds)
    if timing_options:
        parser.add_argument("--threads", type=int, default=None, help="threads per context")
        parser.add_argument("--cpu-time", action="store_true", help="the thread's CPU time")
    args = parser.parse_args(argv)
    if timing_options and args.threads:
        from edge_infer.engine.backends.cpu.threads import set_thread_budget

        set_thread_budget(args.threads)
    for name in args.models:
        extra = (args.cpu_time,) if timing_options else ()
        print(name, run(name, args.rounds, *extra), flush=True)
    return 0
