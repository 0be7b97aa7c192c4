"""qwinograd_native (INT8 Winograd F(2x2, 3x3)) against the direct INT8 tactics on the 3x3
stride-1 layers of a real INT8 engine, one thread, in ONE process, alternating.

The engine (e.g. one ``bench/int8_vs_ort.py`` built) is loaded once to collect its QConv
layers (real weights, scales, epilogues; with ``--real-inputs MODEL`` each layer's input as
the engine computes it on that model's validation frames, else random int8); each distinct
3x3 stride-1 layer of an int8 input is bound by qconv_native, qconv_native_oc (where this
CPU has it) and qwinograd_native, every output checked against the reference op, then timed
in rounds alternating the tactics (``qconv_layer_ab.round_bests``), each tactic's median
over the rounds of its fastest call a round by the thread's CPU time. ``wino/best`` is
qwinograd_native against the faster direct tactic (what the tuner would compare);
``--aa`` times qwinograd_native against a second binding of itself (the noise floor).

Run:
    .venv/bin/python bench/qwino_ab.py --engine <w>/yolov8n-320-b1-int8.engine \\
        --real-inputs yolov8n-320 --rounds 15 --runs 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.qconv_layer_ab import (
    _DTYPES,
    _matches,
    _real_inputs,
    _specs,
    random_inputs,
    round_bests,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", required=True)
    p.add_argument("--real-inputs", metavar="MODEL", help="bench/engine_table.py model name")
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--runs", type=int, default=3, help="calls per round and tactic")
    p.add_argument("--aa", action="store_true", help="qwinograd_native against itself")
    p.add_argument("--layers", type=int, nargs="+", help="only these (indices as printed)")
    args = p.parse_args(argv)

    from edge_infer.engine.backends.cpu.program import ScratchPool
    from edge_infer.engine.backends.cpu.tactics.cpu_qconv import QConvNative, QConvNativeOC
    from edge_infer.engine.backends.cpu.tactics.cpu_qwinograd import QWinogradNative
    from edge_infer.engine.ops.quantize import qconv

    real = _real_inputs(args.engine, args.real_inputs) if args.real_inputs else None
    specs = [r[0] for r in real] if real else _specs(args.engine)
    rng = np.random.default_rng(0)
    keys = [(s.x_shape, s.cout, s.residual, s.activation, s.out_precision) for s in specs]
    tactics: dict[str, Any] = (
        {"wino": QWinogradNative, "wino2": QWinogradNative}
        if args.aa
        else {"native": QConvNative, "oc": QConvNativeOC, "wino": QWinogradNative}
    )
    totals: dict[str, float] = {}
    index = -1
    for k, (spec, key) in enumerate(zip(specs, keys, strict=True)):
        if keys.index(key) != k or not QWinogradNative.applicable(spec):
            continue
        index += 1
        if args.layers is not None and index not in args.layers:
            continue
        if real:
            inputs = [real[k][1], spec.weight, spec.w_scale, spec.bias, real[k][2]]
        else:
            inputs = random_inputs(spec, rng)
        want = qconv(*inputs, **spec.attrs())
        runs = {}
        for side, cls in tactics.items():
            if not cls.applicable(spec):
                continue
            out = np.zeros(spec.out_shape, _DTYPES[spec.out_precision])
            run = cls(spec).bind(inputs, [out], ScratchPool(None))
            run()
            if not _matches(out, want.astype(out.dtype), spec.activation):
                raise SystemExit(f"{side}: {key} differs from the reference")
            runs[side] = run
        per = round_bests(runs, args.rounds, args.runs, time.thread_time)
        best = {side: float(np.median(v)) for side, v in per.items()}
        direct = [s for s in best if s not in ("wino",)]
        ref = min(direct, key=lambda s: best[s])
        n = keys.count(key)
        for side, t in best.items():
            totals[side] = totals.get(side, 0.0) + n * t
        totals["best"] = totals.get("best", 0.0) + n * best[ref]
        cols = "  ".join(f"{s} {t * 1e6:7.0f}" for s, t in best.items())
        print(
            f"{index:2d} {spec.x_shape!s:20s}->{spec.cout:4d} {spec.activation or '-':5s} "
            f"{spec.residual:4s} x{n}  {cols} us  wino/{ref} {best['wino'] / best[ref]:.3f}",
            flush=True,
        )
    if totals:
        print(
            "all (x count): "
            + "  ".join(f"{s} {t * 1e3:.2f} ms" for s, t in totals.items())
            + f"  wino/best {totals['wino'] / totals['best']:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
