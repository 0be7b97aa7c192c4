"""A whole model, one engine file, two contexts in one process: one whose bound native calls of
a kernel run another build of its source (``--variant FILE.c``, e.g. ``git show HEAD:`` of
kernels/conv_depthwise.c, compiled alone into a side library: bench.dw_ab.side_library), the
other this tree's library. Runs alternate A, B, B, A, ... (a loaded host slows both alike);
the report is each side's median and the median of the per-pair ratios, and the outputs'
largest difference. Not run by the tests.

    git show HEAD:edge_infer/engine/backends/cpu/kernels/conv_depthwise.c > /tmp/old_dw.c
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.dw_engine_ab \\
        --model mobilenetv2 --batch 1 --variant /tmp/old_dw.c --kernel conv_depthwise
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from bench.dw_ab import calls_into, side_library


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mobilenetv2")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--variant", type=Path, required=True)
    p.add_argument("--kernel", default="conv_depthwise")
    p.add_argument("--engine", type=Path, default=None, help="reuse this engine file")
    p.add_argument(
        "--split-chains",
        action="store_true",
        help="run the engine's conv chains' members one by one (their own tactics)",
    )
    args = p.parse_args()

    import edge_infer
    from edge_infer.engine.runtime import Engine
    from edge_infer.zoo import build_model

    tmp = tempfile.TemporaryDirectory(prefix="engine-ab-")
    work = Path(tmp.name)
    feeds_name, chw = "input", (3, 224, 224)
    path = args.engine
    if path is None or not path.exists():
        model = build_model(args.model, batch=None)
        onnx_path = work / "model.onnx"
        onnx.save(model, onnx_path)
        path = path or work / "model.engine"
        shapes = {feeds_name: (args.batch, *chw)}
        edge_infer.build(str(onnx_path), str(path), shapes=shapes)
    lib = side_library(args.variant, work, args.kernel)

    def load() -> Engine:
        engine = Engine.load(str(path))
        if args.split_chains:  # the plans' record of chains (backends/cpu/chains.py) dropped
            for plan in engine._plans.values():
                plan.get("meta", {}).pop("chains", None)
        return engine

    with calls_into(lib, args.kernel):
        ctx_a = load().create_context()
    ctx_b = load().create_context()
    x = np.random.default_rng(0).random((args.batch, *chw), dtype=np.float32)
    feeds = {feeds_name: x}
    out_a = next(iter(ctx_a.execute(feeds).values())).copy()
    out_b = next(iter(ctx_b.execute(feeds).values())).copy()
    diff = float(np.abs(out_a - out_b).max())
    for _ in range(5):
        ctx_a.execute(feeds)
        ctx_b.execute(feeds)
    ta, tb = [], []
    for r in range(args.rounds):
        order = [(ctx_a, ta), (ctx_b, tb)] if r % 2 == 0 else [(ctx_b, tb), (ctx_a, ta)]
        for ctx, times in order:
            t0 = time.perf_counter()
            ctx.execute(feeds)
            times.append(time.perf_counter() - t0)
    a, b = np.array(ta), np.array(tb)
    print(
        f"{args.model} b{args.batch} {args.rounds} rounds: variant (A) {np.median(a) * 1e3:.3f} ms"
        f"  this tree (B) {np.median(b) * 1e3:.3f} ms  B/A median of pairs"
        f" {np.median(b / a):.3f}  max |A - B| {diff:.1e}",
        flush=True,
    )
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
