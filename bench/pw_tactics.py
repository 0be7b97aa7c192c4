"""MobileNetV2's 1×1 layers one at a time: every applicable FP32 conv tactic of ours beside
onnxruntime's Conv (its intra-op threads not spinning, so that they do not steal our cores
between its runs), all in one process, round by round. Ours: wall times of each bound call;
onnxruntime's: its profiler's kernel time of the run's non-reorder nodes (its layout
conversions in and out of NCHWc are not paid between layers of a model). Medians and each
one's median per-round ratio to onnxruntime.

Run (BLAS unthrottled):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.pw_tactics \
        --layers f15e f15p --batches 1 8
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.alternating import median_ratio
from bench.pointwise_ab import layer_case, ort_kernel_times, ort_session

#: MobileNetV2's 1×1 layers: (cin, cout, side, activation, residual)
LAYERS: dict[str, tuple[int, int, int, str, str]] = {
    "f1p": (32, 16, 112, "", "none"),
    "f2e": (16, 96, 112, "clip", "none"),
    "f2p": (96, 24, 56, "", "none"),
    "f3e": (24, 144, 56, "clip", "none"),
    "f3p": (144, 24, 56, "", "pre"),
    "f4p": (144, 32, 28, "", "none"),
    "f5e": (32, 192, 28, "clip", "none"),
    "f5p": (192, 32, 28, "", "pre"),
    "f7p": (192, 64, 14, "", "none"),
    "f8e": (64, 384, 14, "clip", "none"),
    "f8p": (384, 64, 14, "", "pre"),
    "f11p": (384, 96, 14, "", "none"),
    "f12e": (96, 576, 14, "clip", "none"),
    "f12p": (576, 96, 14, "", "pre"),
    "f14p": (576, 160, 7, "", "none"),
    "f15e": (160, 960, 7, "clip", "none"),
    "f15p": (960, 160, 7, "", "pre"),
    "f17p": (960, 320, 7, "", "none"),
    "f18": (320, 1280, 7, "clip", "none"),
}


def spec_and_inputs(name: str, b: int) -> tuple[Any, list[np.ndarray], np.ndarray, np.ndarray]:
    return layer_case(LAYERS[name], b)


def layer(name: str, b: int, rounds: int, pool: Any, threads: int, tmp: Path, only: list) -> dict:
    from edge_infer.engine.backends.cpu.program import ScratchPool
    from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS

    spec, ins, w, bias = spec_and_inputs(name, b)
    sess = ort_session(LAYERS[name], b, w, bias, threads, tmp / name)
    feeds = {"x": ins[0], **({"z": ins[3]} if len(ins) > 3 else {})}
    want = sess.run(None, feeds)[0]
    runs: dict[str, Any] = {}
    for cls in CPU_TACTICS["conv"]:
        if only and cls.name not in only:
            continue
        if not cls.applicable(spec):
            continue
        out = np.empty(spec.out_shape, np.float32)
        try:
            r = cls(spec).bind(ins, [out], ScratchPool(pool))
        except ValueError:  # a tactic that declines this layer at bind
            continue
        r()
        err = float(np.abs(out - want).max() / np.abs(want).max())
        assert err < 1e-4, f"{name} b{b} {cls.name}: max diff {err:.1e}"
        runs[cls.name] = r
    for _ in range(3):
        for r in runs.values():
            r()
        sess.run(None, feeds)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for k, r in runs.items():
            t0 = time.perf_counter()
            r()
            times[k].append(time.perf_counter() - t0)
        sess.run(None, feeds)
    times["ort"] = ort_kernel_times(sess, rounds)
    return {
        "us": {k: round(float(np.median(v)) * 1e6) for k, v in times.items()},
        "/ort": {k: median_ratio(v, times["ort"]) for k, v in times.items() if k != "ort"},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", nargs="+", choices=LAYERS, default=list(LAYERS))
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument(
        "--tactics",
        nargs="*",
        default=["direct_native", "ocvec_native", "pointwise_native"],
        help="only these tactics (names; none: all)",
    )
    args = p.parse_args(argv)
    from edge_infer.engine.backends.cpu.parallel import WorkPool

    pool = WorkPool(args.threads) if args.threads > 1 else None
    try:
        with tempfile.TemporaryDirectory() as t:
            for b in args.batches:
                for name in args.layers:
                    r = layer(name, b, args.rounds, pool, args.threads, Path(t), args.tactics)
                    us = " ".join(f"{k}={v}" for k, v in r["us"].items())
                    ratio = " ".join(f"{k}={v}" for k, v in r["/ort"].items())
                    print(f"{name} b{b}: us {us} | /ort {ratio}", flush=True)
    finally:
        if pool is not None:
            pool.close()
    print(f"load average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
