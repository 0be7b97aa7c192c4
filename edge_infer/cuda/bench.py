"""Latency of a CUDA engine: device time from events around each run, host time around it.

Each iteration records an event, enqueues the run (input copies, the replayed launches,
output copies) on the context's stream, records a second event and waits: the events'
elapsed time is the device's, the wall clock around it the host's (their difference is the
per-inference host overhead). On the emulator the events time the emulator, not a GPU: the
figures only show the path works.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def _stats(samples_ms: list[float], batch: int) -> dict[str, float]:
    a = np.asarray(samples_ms)
    median = float(np.median(a))
    return {
        "median_ms": median,
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "throughput": batch * 1e3 / median if median > 0 else 0.0,
    }


def bench_engine(
    engine: Any, feeds: Mapping[str, np.ndarray], *, iterations: int = 50, warmup: int = 5
) -> dict[str, Any]:
    """Device (event) and host (wall) time of ``iterations`` runs of ``engine`` on ``feeds``
    after ``warmup`` untimed ones."""
    import time

    from edge_infer.engine import ExecutionContext

    batch = ExecutionContext.validate_feeds(engine, feeds)
    plan_batch = engine.plan_batch_for(batch)
    program = engine.program(plan_batch)
    device = program.device
    state = program.new_state()
    start, end = device.event("bench start"), device.event("bench end")
    gpu, host = [], []
    try:
        for k in range(warmup + iterations):
            t0 = time.perf_counter()
            start.record(state.stream)
            program.enqueue(state, feeds)
            end.record(state.stream)
            program.collect(state)
            wall = (time.perf_counter() - t0) * 1e3
            if k >= warmup:
                host.append(wall)
                gpu.append(start.elapsed_ms(end))
    finally:
        start.close()
        end.close()
        state.close()
    fp = engine.build_record.get("device", {})
    return {
        "device": fp.get("gpu"),
        "emulated": device.properties.emulated,
        "batch": batch,
        "iterations": iterations,
        "gpu": _stats(gpu, batch),
        "host": _stats(host, batch),
        "host_overhead_ms": float(np.median(np.subtract(host, gpu))),
    }


def print_report(report: Mapping[str, Any]) -> str:
    """The report as the lines `edge-infer bench` prints."""
    lines = [
        f"{report['device']}: batch {report['batch']}, {report['iterations']} iterations"
        + (" (emulated: these times are the emulator's, not a GPU's)" if report["emulated"] else "")
    ]
    for kind, what in (("gpu", "device time (events)"), ("host", "host time (wall)")):
        s = report[kind]
        lines.append(
            f"  {what:<22} median {s['median_ms']:9.3f} ms  p90 {s['p90_ms']:9.3f}  "
            f"p99 {s['p99_ms']:9.3f}  {s['throughput']:9.1f} items/s"
        )
    lines.append(f"  host overhead per inference: {report['host_overhead_ms'] * 1e3:.0f} µs")
    return "\n".join(lines)
