"""FP16 engines against FP32 ones, with and without this session's FP16 paths, in one
process, alternating (issue 18 FP16 item; under load say so).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/fp16_before_after.py \
        [--models demo mobilenetv2 yolov8n-320 crnn] [--rounds 30]

Per model: the FP32 engine, the FP16 engine as built, and the same FP16 engine "before":
``stem_native`` on the conversion route (``half_io`` off: the bits are the same) and
recurrent FP16 layers on ``fp16_kernel`` (the reference LSTM). Prints the medians of the
per-round ratios to FP32.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from alternating import alternate, median_ms, ratios_to, run_models
from fp16_cpu import MODELS, _model

from edge_infer.engine.backends.cpu.program import CpuProgram
from edge_infer.engine.backends.cpu.tactics.cpu_stem import StemNative
from edge_infer.engine.builder import BuildOptions, build

RECURRENT = ("fp16_recurrent_native", "fp16_recurrent_gemm")


def _load(name: str) -> tuple[Any, str, tuple[int, ...]]:
    if name == "crnn":
        from edge_infer.zoo import build_model

        return build_model("crnn", batch=None, width=None), "image", (1, 3, 32, 128)
    return _model(name)


def run_model(name: str, rounds: int) -> dict[str, Any]:
    model, inp, shape = _load(name)
    feeds = {inp: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    engines = {
        p: build(model, options=BuildOptions(shapes={inp: shape}, precision=p))
        for p in ("fp32", "fp16")
    }
    before_graph = engines["fp16"].graph(1)
    tactics = [n.meta.get("tactic") for n in before_graph.nodes]
    changed = sum(t == "fp16_stem_native" or t in RECURRENT for t in tactics)
    for node in before_graph.nodes:
        if node.meta.get("tactic") in RECURRENT:
            node.meta["tactic"] = "fp16_kernel"
    programs = {"fp32": CpuProgram(engines["fp32"].graph(1)), "fp16": None, "fp16 before": None}
    programs["fp16"] = CpuProgram(engines["fp16"].graph(1))
    states = {k: p.new_state() for k, p in programs.items() if p is not None}
    StemNative.half_io = False  # the conversion route, bound now
    try:
        programs["fp16 before"] = CpuProgram(before_graph)
        states["fp16 before"] = programs["fp16 before"].new_state()
    finally:
        StemNative.half_io = True
    times = alternate(programs, states, feeds, rounds)
    return {
        "layers changed": changed,
        "ms": median_ms(times),
        "ratio to fp32": ratios_to(times),
    }


def main(argv: list[str] | None = None) -> int:
    names = [*MODELS, "crnn"]
    return run_models(argv, __doc__, run_model, names, names, 30)


if __name__ == "__main__":
    raise SystemExit(main())
