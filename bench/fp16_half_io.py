"""FP16 engines with and without the conversion passes that ``half_io`` tactics skip, in one
process, alternating (issue 18, FP16 item).

    .venv/bin/python bench/fp16_half_io.py [--models yolov8n-320 demo mobilenetv2] [--rounds 30]

Builds each model (bench/fp16_cpu.py's) in FP32 and FP16, then times, round by round: FP32;
the FP16 engine with every layer on the conversion route (widen, FP32 kernel, narrow:
``takes_half`` off); the same engine as it runs (float16 read and written by the kernels of
``half_io`` tactics). Same graph, same tactics: only the conversions differ. Prints the
median per-round ratios to FP32 and checks that both FP16 programs give the same bits.
``--threads 1 --cpu-time`` times the calling thread's CPU time on one thread (less at the
mercy of other processes on a loaded machine than wall time).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from alternating import alternate, bound, median_ms, median_ratio, ratios_to, run_models
from fp16_cpu import MODELS, _model

from edge_infer.engine.backends.cpu.program import CpuProgram
from edge_infer.engine.backends.cpu.tactics import cpu_fp16
from edge_infer.engine.builder import BuildOptions, build


def _program(graph: Any, direct: bool | None = None) -> tuple[CpuProgram, Any]:
    """``graph``'s program and a state, its layers bound with the half_io route as it is
    (None), on or off."""
    takes = cpu_fp16.takes_half
    return bound(graph, None if direct is None else (lambda t: direct and takes(t)))


def run_model(name: str, rounds: int, cpu_time: bool = False) -> dict[str, Any]:
    model, inp, shape = _model(name)
    feeds = {inp: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    engines = {
        p: build(model, options=BuildOptions(shapes={inp: shape}, precision=p))
        for p in ("fp32", "fp16")
    }
    made = {
        "fp32": _program(engines["fp32"].graph(1)),
        "fp16 conversions": _program(engines["fp16"].graph(1), False),
        "fp16 half_io": _program(engines["fp16"].graph(1), True),
    }
    programs = {k: m[0] for k, m in made.items()}
    states = {k: m[1] for k, m in made.items()}
    outs = {k: p.run(states[k], feeds) for k, p in programs.items()}
    same = all(
        np.array_equal(outs["fp16 conversions"][n], outs["fp16 half_io"][n]) for n in outs["fp32"]
    )
    clock = time.thread_time if cpu_time else time.perf_counter
    times = alternate(programs, states, feeds, rounds, clock)
    return {
        "ms": median_ms(times),
        "ratio_to_fp32": ratios_to(times),
        "half_io_over_conversions": median_ratio(times["fp16 half_io"], times["fp16 conversions"]),
        "same_bits": same,
    }


def main(argv: list[str] | None = None) -> int:
    return run_models(argv, __doc__, run_model, list(MODELS), list(MODELS), 30, True)


if __name__ == "__main__":
    raise SystemExit(main())
