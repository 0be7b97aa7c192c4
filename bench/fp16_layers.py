"""Which layers of an FP16 engine still pay float16 conversion passes (issue 18, FP16 item).

    .venv/bin/python bench/fp16_layers.py [--models yolov8n-320 demo mobilenetv2]

Builds each model (bench/fp16_cpu.py's) in FP32 and FP16, profiles both engines layer by
layer (Engine.profile_layers, median of --iterations runs) and prints, per FP16 tactic: the
layers, how many take float16 directly (``half_io``: tactics/cpu_fp16.py) and how many go
through the conversions, the float16 values those conversions widen and narrow per
inference, and the layers' time against the same layers in the FP32 engine (matched by
name). Then the conversion-route layers slowest first.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from fp16_cpu import MODELS, _model

from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS
from edge_infer.engine.backends.cpu.tactics.cpu_fp16 import Fp16Step, takes_half
from edge_infer.engine.builder import BuildOptions, build
from edge_infer.engine.tactics import candidates


def _route(node: Any) -> tuple[str, int]:
    """("direct" | "convert", float16 values converted per run) of an Fp16Layer."""
    tactics, spec = candidates(node, CPU_TACTICS)
    chosen = node.meta.get("tactic")
    tactic = next((t for t in tactics if t.name == chosen), None)
    made = tactic(spec) if tactic is not None else None
    inner = getattr(made, "inner", None)
    if isinstance(made, Fp16Step):  # Sigmoid / Softmax on the float16 storage
        direct = made.takes_half()
    else:
        direct = inner is not None and takes_half(inner)
    values = sum(
        int(np.prod(v.shape))
        for v in [*node.inputs, *node.outputs]
        if v is not None and v.const is None and np.dtype(v.dtype) == np.float16
    )
    return ("direct" if direct else "convert"), (0 if direct else values)


def run_model(name: str, iterations: int) -> None:
    model, inp, shape = _model(name)
    feeds = {inp: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    engines = {
        p: build(model, options=BuildOptions(shapes={inp: shape}, precision=p))
        for p in ("fp32", "fp16")
    }
    prof = {p: e.profile_layers(feeds, iterations=iterations) for p, e in engines.items()}
    fp32_us = {row["name"]: row["time_us"] for row in prof["fp32"]}
    nodes = {n.name: n for n in engines["fp16"].graph(shape[0]).nodes}
    groups: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    converted: list[tuple[float, float, str, str, int]] = []
    total = {"fp16": 0.0, "fp32": 0.0}
    for row in prof["fp16"]:
        node = nodes.get(row["name"])
        t16, t32 = row["time_us"], fp32_us.get(row["name"], float("nan"))
        total["fp16"] += t16
        total["fp32"] += 0.0 if np.isnan(t32) else t32
        if node is None or node.op_type != "Fp16Layer":
            g = groups[f"(not Fp16Layer) {row['op']}"]
        else:
            route, values = _route(node)
            g = groups[str(row["tactic"])]
            g[route] += 1
            g["values"] += values
            if route == "convert":
                converted.append((t16, t32, row["name"], str(row["tactic"]), values))
        g["layers"] += 1
        g["fp16_us"] += t16
        g["fp32_us"] += 0.0 if np.isnan(t32) else t32
    print(f"== {name}: FP16 {total['fp16']:.0f} us, FP32 {total['fp32']:.0f} us (sum of layers)")
    print(f"{'tactic':34} {'layers':>6} {'direct':>6} {'conv':>5} {'kvalues':>8} "
          f"{'fp16 us':>8} {'fp32 us':>8}")  # fmt: skip
    for tactic, g in sorted(groups.items(), key=lambda kv: -kv[1]["fp16_us"]):
        print(
            f"{tactic[:34]:34} {int(g['layers']):6d} {int(g['direct']):6d} "
            f"{int(g['convert']):5d} {g['values'] / 1e3:8.1f} {g['fp16_us']:8.0f} "
            f"{g['fp32_us']:8.0f}"
        )
    print("conversion-route layers, slowest first: fp16 us, fp32 us, name, tactic, kvalues")
    for t16, t32, lname, tactic, values in sorted(converted, reverse=True)[:12]:
        print(f"  {t16:7.0f} {t32:7.0f}  {lname[:40]:40} {tactic:28} {values / 1e3:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    b1 = [k for k in MODELS if not k.endswith("-b8")]
    parser.add_argument("--models", nargs="+", default=b1, choices=list(MODELS))
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args(argv)
    for name in args.models:
        run_model(name, args.iterations)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
