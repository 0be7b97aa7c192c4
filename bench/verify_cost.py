"""Build-time cost of the tactic self-check (tactics/verify.py): builds with and without it.

    .venv/bin/python bench/verify_cost.py --config yolov8n-320-b1 --pairs 3

Cold builds (no timing cache: every candidate timed) and warm rebuilds (a timing cache that
already holds every layer), each pair once with the check and once without, alternating
which goes first, in one process (the native kernels are compiled before the first build).
Prints the median wall and CPU seconds (all threads) of each and the relative cost: on a
shared machine the CPU seconds are the steadier figure.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine import CONFIGS

import edge_infer
from edge_infer.engine.options import BuildOptions
from edge_infer.zoo import build_model


def _cpu_s() -> float:
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def _build(model: Path, shapes: dict, verify: bool, cache: Path | None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of every thread of this process) of one build."""
    opts = BuildOptions(
        shapes=shapes, verify_tactics=verify, timing_cache=None if cache is None else str(cache)
    )
    t0, c0 = time.perf_counter(), _cpu_s()
    edge_infer.build(str(model), options=opts)
    return time.perf_counter() - t0, _cpu_s() - c0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="yolov8n-320-b1", choices=sorted(CONFIGS))
    p.add_argument("--pairs", type=int, default=3)
    args = p.parse_args()
    family, kw, input_name, chw, batch = CONFIGS[args.config]
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model.onnx"
        onnx.save(build_model(family, batch=None, **kw), model)
        shapes = {input_name: (batch, *chw)}
        cache = Path(tmp) / "timing.json"
        _build(model, shapes, False, cache)  # compiles the kernels, fills the cache
        times: dict[str, list[tuple[float, float]]] = {
            "cold on": [],
            "cold off": [],
            "warm on": [],
            "warm off": [],
        }
        for k in range(args.pairs):
            order = (True, False) if k % 2 == 0 else (False, True)
            for verify in order:
                times[f"cold {'on' if verify else 'off'}"].append(
                    _build(model, shapes, verify, None)
                )
            for verify in order:
                times[f"warm {'on' if verify else 'off'}"].append(
                    _build(model, shapes, verify, cache)
                )
    for kind in ("cold", "warm"):
        for k, what in enumerate(("wall", "CPU")):
            on = statistics.median(v[k] for v in times[f"{kind} on"])
            off = statistics.median(v[k] for v in times[f"{kind} off"])
            print(
                f"{args.config} {kind} build, {what} s: self-check on {on:.2f}, off {off:.2f}, "
                f"cost {100 * (on / off - 1):+.0f} % (on "
                f"{[round(v[k], 2) for v in times[f'{kind} on']]}, off "
                f"{[round(v[k], 2) for v in times[f'{kind} off']]})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
