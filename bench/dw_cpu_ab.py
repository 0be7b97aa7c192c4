"""MobileNetV2's depthwise layers (bench/dw_ab.py's), one thread, CPU time of the calling
thread (a loaded host's preemptions do not count): depthwise_native with this tree's kernel
library, the same tactic with another build of kernels/conv_depthwise.c (``--variant``), and
onnxruntime's one-node Conv + Clip on the calling thread. onnxruntime's model puts layout
reorders around its Conv (NCHW in and out); its Conv's share is estimated from its profiler
(the Conv node's share of the nodes' summed times, applied to the run's CPU time).

Each round runs every candidate ``--repeat`` times in turn; reported: medians per call and the
medians of the per-round ratios. Not run by the tests.

    git show HEAD:edge_infer/engine/backends/cpu/kernels/conv_depthwise.c > /tmp/old_dw.c
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.dw_cpu_ab \\
        --batch 1 --rounds 31 --variant /tmp/old_dw.c --layers f2_96@112s2 f4_144@56s2
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.dw_ab import LAYERS, calls_into, ort_node_us, ort_session, side_library


def _cpu(run: Callable[[], Any], repeat: int) -> float:
    t0 = time.thread_time()
    for _ in range(repeat):
        run()
    return (time.thread_time() - t0) / repeat


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=31)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--layers", nargs="*", default=list(LAYERS))
    p.add_argument("--variant", type=Path, default=None, help="another conv_depthwise.c")
    args = p.parse_args()

    from edge_infer.engine.backends.cpu.program import ScratchPool
    from edge_infer.engine.backends.cpu.tactics.cpu_depthwise import DepthwiseNative
    from edge_infer.engine.backends.cpu.threads import set_thread_budget, single_threaded_blas
    from edge_infer.engine.tactics.base import ConvSpec

    set_thread_budget(1)
    single_threaded_blas()
    tmp = tempfile.TemporaryDirectory(prefix="dw-cpu-ab-")
    side = side_library(args.variant, Path(tmp.name)) if args.variant else None
    rng = np.random.default_rng(0)
    for name in args.layers:
        c, side_px, s = LAYERS[name]
        xs = (args.batch, c, side_px, side_px)
        ho = (side_px + 2 - 3) // s + 1
        os_ = (args.batch, c, ho, ho)
        x = rng.standard_normal(xs).astype(np.float32)
        w = (rng.standard_normal((c, 1, 3, 3)) / 3).astype(np.float32)
        b = rng.standard_normal(c).astype(np.float32)
        spec = ConvSpec(xs, os_, w, b, (s, s), (1,) * 4, (1, 1), c, "clip", (0.0, 6.0))
        runs: dict[str, Callable[[], Any]] = {}
        outs: dict[str, np.ndarray] = {}
        for key, lib in [("ours", None), *([("variant", side)] if side is not None else [])]:
            out = np.zeros(os_, np.float32)
            ctx = calls_into(lib) if lib is not None else contextlib.nullcontext()
            with ctx:
                runs[key] = DepthwiseNative(spec).bind([x, w, b], [out], ScratchPool(None))
            outs[key] = out
        sess = ort_session(w, b, xs, os_, s, 1)
        feeds = {"x": x}
        runs["onnxruntime"] = lambda s=sess, f=feeds: s.run(None, f)
        for r in runs.values():
            r()
        ref = sess.run(None, feeds)[0]
        for key, out in outs.items():
            err = float(np.abs(out - ref).max())
            if err > 1e-4 * max(1.0, float(np.abs(ref).max())):
                raise SystemExit(f"{name}: {key} differs from onnxruntime by {err}")
        same = side is None or np.array_equal(outs["ours"], outs["variant"])
        times: dict[str, list[float]] = {k: [] for k in runs}
        keys = list(runs)
        for i in range(args.rounds):
            for k in keys[i % len(keys) :] + keys[: i % len(keys)]:
                times[k].append(_cpu(runs[k], args.repeat))
        nodes = ort_node_us(ort_session(w, b, xs, os_, s, 1, f"{tmp.name}/ort"), feeds, 11)
        conv_share = nodes.get("Conv", 0.0) / max(sum(nodes.values()), 1e-9)
        ort_t = np.array(times["onnxruntime"]) * conv_share
        line = f"{name:14s} b{args.batch}  onnxruntime Conv ~{np.median(ort_t) * 1e6:7.1f} us"
        line += f" (share {conv_share:.2f} of {np.median(times['onnxruntime']) * 1e6:.1f})"
        for key in [k for k in keys if k != "onnxruntime"]:
            t = np.array(times[key])
            line += f"  {key} {np.median(t) * 1e6:7.1f} us ({np.median(t / ort_t):.3f}x ORT Conv)"
        if side is not None:
            ratio = np.median(np.array(times["ours"]) / np.array(times["variant"]))
            line += f"  ours/variant {ratio:.3f}" + ("" if same else " (other bits)")
        print(line, flush=True)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
