"""An FP32 model's engine against onnxruntime in ONE process, alternating round by round.

The model (``bench.kernel_engine_ab.MODELS``) is built fresh in a temporary folder (no timing
cache: the tree's own kernels time their own tactics), onnxruntime runs the same ONNX file at
ORT_ENABLE_ALL with the same threads; each round times one inference of each side, the order
alternating, 50 ms after each onnxruntime run so that its spinning threads do not take our
cores. Reports both sides' medians and 10th percentiles and the median of the per-round
ratios ours/onnxruntime. ``--cpu``: the thread's CPU time (with ``--threads 1``: steadier on a
shared host); ``--layers``: our layers' medians too. To compare two trees, run it in each with
``PYTHONPATH`` set to that tree, alternating processes. Not run by the tests.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.fp32_vs_ort \\
        --model mobilenetv2 --batch 1 --threads 1 --cpu --rounds 40
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from bench.kernel_engine_ab import MODELS


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="mobilenetv2")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--layers", action="store_true")
    p.add_argument("--keep-below", type=float, default=0.0)
    p.add_argument("--no-chains", action="store_true")
    args = p.parse_args()

    import onnxruntime as ort

    import edge_infer
    from edge_infer.engine.backends import get_backend
    from edge_infer.engine.backends.cpu import chains
    from edge_infer.zoo import build_model

    if args.keep_below:
        chains.KEEP_BELOW = args.keep_below
    name, chw, kw = MODELS[args.model]
    work = Path(tempfile.mkdtemp(prefix="fp32_vs_ort-"))
    path = work / "model.onnx"
    onnx.save(build_model(args.model, batch=None, **kw), path)
    x = np.random.default_rng(0).random((args.batch, *chw), dtype=np.float32)
    get_backend("cpu").configure(cores=args.threads)
    engine = edge_infer.build(str(path), None, shapes={name: x.shape})
    get_backend(engine.backend_name).configure(cores=args.threads)
    prog = engine.program(args.batch)
    if args.no_chains:
        from edge_infer.engine.backends.cpu.program import CpuProgram

        prog.graph.meta["chains"] = []
        prog = CpuProgram(prog.graph)
    print("chains:", " ".join(e[0].split("/")[1] for e in [c.names for c in prog.chains]))
    st = prog.new_state()
    o = ort.SessionOptions()
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    o.intra_op_num_threads = args.threads
    o.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
    ours_out = next(iter(prog.run(st, {name: x}).values()))
    ort_out = sess.run(None, {name: x})[0]
    print("max rel diff", float(np.max(np.abs(ours_out - ort_out)) / np.max(np.abs(ort_out))))
    clock = time.thread_time if args.cpu else time.perf_counter
    t_ours, t_ort = [], []
    layer_t = {n: [] for n in st.names}
    for r in range(args.rounds + 3):
        for side in ("ours", "ort") if r % 2 else ("ort", "ours"):
            if side == "ours":
                prog._copy_inputs(st, {name: x})
                t0 = clock()
                for n, run in zip(st.names, st.runs, strict=True):
                    if args.layers:
                        t1 = clock()
                        run()
                        if r >= 3:
                            layer_t[n].append(clock() - t1)
                    else:
                        run()
                if r >= 3:
                    t_ours.append(clock() - t0)
            else:
                t0 = clock()
                sess.run(None, {name: x})
                if r >= 3:
                    t_ort.append(clock() - t0)
                time.sleep(0.05)  # onnxruntime's threads stop spinning before our side
    a, b = np.array(t_ours), np.array(t_ort)
    mode = "cpu" if args.cpu else "wall"
    ours_ms, ort_ms = np.median(a) * 1e3, np.median(b) * 1e3
    ours_p10, ort_p10 = np.percentile(a, 10) * 1e3, np.percentile(b, 10) * 1e3
    print(
        f"{args.model} b{args.batch} t{args.threads} {mode}: ours {ours_ms:.3f} ms"
        f" (p10 {ours_p10:.3f}) ort {ort_ms:.3f} (p10 {ort_p10:.3f})"
        f" ratio median {np.median(a / b):.3f} p10-ratio {ours_p10 / ort_p10:.3f}"
    )
    if args.layers:
        tac = {layer.node.name: getattr(layer, "tactic", "?") for layer in prog.layers}
        for n in st.names:
            print(f"  {n:45s} {tac.get(n)!s:18s} {np.median(layer_t[n]) * 1e6:8.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
