"""FP16 engines with and without half_io in direct_native and ocvec_native, in one process,
alternating (issue 18, FP16 item; under load say so).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/fp16_direct_half.py \
        [--models demo yolov8n-320] [--rounds 30]

Per model: the FP32 engine; the FP16 engine "before" (direct_native and ocvec_native on the
conversion route: their ``takes_half`` off, every other half_io tactic as it is); the same
FP16 engine as it runs. Prints the medians of the per-round ratios to FP32, after / before,
and whether both FP16 programs give the same bits.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from alternating import alternate, bound, median_ms, median_ratio, ratios_to, run_models
from fp16_cpu import MODELS, _model

from edge_infer.engine.backends.cpu.program import CpuProgram
from edge_infer.engine.backends.cpu.tactics import cpu_fp16
from edge_infer.engine.backends.cpu.tactics.cpu_direct import DirectNative
from edge_infer.engine.backends.cpu.tactics.cpu_ocvec import OcVecNative
from edge_infer.engine.builder import BuildOptions, build

MINE = (DirectNative, OcVecNative)


def _program(graph: Any, before: bool) -> tuple[CpuProgram, Any]:
    """``graph``'s program and a state; with ``before`` direct_native and ocvec_native
    decline float16 storage."""
    takes = cpu_fp16.takes_half
    return bound(graph, (lambda t: not isinstance(t, MINE) and takes(t)) if before else None)


def run_model(name: str, rounds: int) -> dict[str, Any]:
    model, inp, shape = _model(name)
    feeds = {inp: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    engines = {
        p: build(model, options=BuildOptions(shapes={inp: shape}, precision=p))
        for p in ("fp32", "fp16")
    }
    made = {
        "fp32": _program(engines["fp32"].graph(1), False),
        "fp16 before": _program(engines["fp16"].graph(1), True),
        "fp16 after": _program(engines["fp16"].graph(1), False),
    }
    programs = {k: m[0] for k, m in made.items()}
    states = {k: m[1] for k, m in made.items()}
    outs = {k: p.run(states[k], feeds) for k, p in programs.items()}
    same = all(np.array_equal(outs["fp16 before"][n], outs["fp16 after"][n]) for n in outs["fp32"])
    tactics = [n.meta.get("tactic") for n in engines["fp16"].graph(1).nodes]
    times = alternate(programs, states, feeds, rounds)
    return {
        "ms": median_ms(times),
        "ratio_to_fp32": ratios_to(times),
        "after_over_before": median_ratio(times["fp16 after"], times["fp16 before"]),
        "layers": {t: tactics.count(t) for t in ("fp16_direct_native", "fp16_ocvec_native")},
        "same_bits": same,
    }


def main(argv: list[str] | None = None) -> int:
    return run_models(argv, __doc__, run_model, list(MODELS), ["demo", "yolov8n-320"], 30)


if __name__ == "__main__":
    raise SystemExit(main())
