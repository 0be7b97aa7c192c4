"""Convolutions on small maps with wide channels (ResNet-50's and MobileNetV2's 7×7, 14×14
and 28×28 layers), one layer at a time: ocvec_native with its 7-position tile (where the
library has it) and with the 6-position one, the other applicable CPU tactics of ours, and
onnxruntime running the same Conv+Relu as a one-node model, in one process.

Each round runs every candidate once, in an order that rotates round by round; the report
is each candidate's median time and its median ratio to onnxruntime over the rounds (only
same-round ratios compare on a loaded host). Threads: ``--threads`` for both;
``--cpu-time`` (one thread only: onnxruntime and our layer run on the calling thread) times
the thread's CPU time, which a loaded host's preemptions do not inflate. Not run by the
tests.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/small_map_ab.py \\
        --batch 1 --threads 2 --rounds 21
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from alternating import first_runs_checked

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: name → (cin, cout, input side, kernel, stride, pad)
LAYERS = {
    "r50_l4_conv3_512x2048@7": (512, 2048, 7, 1, 1, 0),
    "r50_l4_conv2_3x3_512@7": (512, 512, 7, 3, 1, 1),
    "r50_l4.0_conv1_1024x512@14": (1024, 512, 14, 1, 1, 0),
    "r50_l4.0_conv2_3x3s2_512@14": (512, 512, 14, 3, 2, 1),
    "r50_l4.0_down_1x1s2_1024x2048@14": (1024, 2048, 14, 1, 2, 0),
    "r50_l3.0_conv2_3x3s2_256@28": (256, 256, 28, 3, 2, 1),
    "r50_l3.0_down_1x1s2_512x1024@28": (512, 1024, 28, 1, 2, 0),
    "r50_l2.0_conv2_3x3s2_128@56": (128, 128, 56, 3, 2, 1),
    "mnv2_f18_320x1280@7": (320, 1280, 7, 1, 1, 0),
    "mnv2_f17_960x320@7": (960, 320, 7, 1, 1, 0),
    "mnv2_f15_960x160@7": (960, 160, 7, 1, 1, 0),
    "mnv2_f14_576x160@7": (576, 160, 7, 1, 1, 0),
    "mnv2_f12_576x96@14": (576, 96, 14, 1, 1, 0),
    "mnv2_f12_expand_96x576@14": (96, 576, 14, 1, 1, 0),
    "mnv2_f4_192x32@28": (192, 32, 28, 1, 1, 0),
    "mnv2_f14_expand_160x960@7": (160, 960, 7, 1, 1, 0),
}


def ort_session(
    w: np.ndarray, b: np.ndarray, x_shape: tuple, out_shape: tuple, geom: tuple, threads: int
) -> Any:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    s, p = geom[4], geom[5]
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[p] * 4, strides=[s, s]),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def variants() -> list[type]:
    """ocvec_native with the 6-position tile (as before the 7-position one)."""
    from edge_infer.engine.backends.cpu.tactics.cpu_ocvec import PB, OcVecNative

    return [type("OcVec6", (OcVecNative,), {"name": "ocvec_pb6", "tile_positions": PB})]


def rotated(
    runs: dict[str, Any], rounds: int, clock: Callable[[], float], repeat: int = 1
) -> dict[str, list[float]]:
    """``rounds`` rounds of one timed sample of each of ``runs``, each round starting one
    further along the list (alternating.rotated, with a choice of clock). A sample is the
    mean of ``repeat`` calls back to back: after the first, each side's helper threads are
    still awake (spinning), as between the layers of a model — a single call after another
    candidate's may first wait for its helper to wake, or for the other side's spinning
    threads to yield the core."""
    names = list(runs)
    times: dict[str, list[float]] = {key: [] for key in names}
    for rnd in range(rounds):
        for key in names[rnd % len(names) :] + names[: rnd % len(names)]:
            if repeat > 1:
                runs[key]()  # wakes this side's helpers
            t = clock()
            for _ in range(repeat):
                runs[key]()
            times[key].append((clock() - t) / repeat)
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--layers", nargs="*", default=list(LAYERS))
    p.add_argument("--tactics", nargs="*", default=None, help="default: every applicable")
    p.add_argument("--cpu-time", action="store_true", help="the thread's CPU time (1 thread)")
    p.add_argument(
        "--repeat", type=int, default=1, help="calls per timed sample (above 1: after one untimed)"
    )
    args = p.parse_args()
    if args.cpu_time and args.threads != 1:
        p.error("--cpu-time times one thread: use --threads 1")
    clock = time.thread_time if args.cpu_time else time.perf_counter

    from edge_infer.engine.backends.cpu.parallel import WorkPool
    from edge_infer.engine.backends.cpu.program import ScratchPool
    from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS
    from edge_infer.engine.backends.cpu.threads import set_thread_budget, single_threaded_blas
    from edge_infer.engine.tactics.base import ConvSpec

    set_thread_budget(args.threads)
    pool = WorkPool(args.threads) if args.threads > 1 else None
    if pool is not None:
        single_threaded_blas()
    rng = np.random.default_rng(0)
    for name in args.layers:
        cin, cout, side, k, s, pad = geom = LAYERS[name]
        xs = (args.batch, cin, side, side)
        ho = (side + 2 * pad - k) // s + 1
        os_ = (args.batch, cout, ho, ho)
        x = rng.standard_normal(xs).astype(np.float32)
        w = (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
        b = rng.standard_normal(cout).astype(np.float32)
        spec = ConvSpec(xs, os_, w, b, (s, s), (pad,) * 4, (1, 1), 1, "relu")
        runs: dict[str, Any] = {}
        outs: dict[str, np.ndarray] = {}
        for cls in [*CPU_TACTICS["conv"], *variants()]:
            if args.tactics and cls.name not in args.tactics:
                continue
            if not cls.applicable(spec):
                continue
            out = np.zeros(spec.out_shape, np.float32)
            runs[cls.name] = cls(spec).bind([x, w, b], [out], ScratchPool(pool))
            outs[cls.name] = out
        sess = ort_session(w, b, xs, os_, geom, args.threads)
        feeds = {"x": x}
        ref = sess.run(None, feeds)[0]
        runs["onnxruntime"] = lambda s=sess, f=feeds: s.run(None, f)
        first_runs_checked(name, runs, outs, ref)
        times = rotated(runs, args.rounds, clock, args.repeat)
        ort_t = np.array(times["onnxruntime"])
        gflop = 2 * cout * cin * k * k * ho * ho * args.batch / 1e9
        print(f"{name} b{args.batch} ({gflop:.3f} GFLOP)", flush=True)
        for key in sorted(runs, key=lambda r: np.median(times[r])):
            t = np.array(times[key])
            print(
                f"  {key:18s} {np.median(t) * 1e6:8.0f} us  {gflop / np.median(t):6.1f} GFLOP/s"
                f"  vs ORT {np.median(t / ort_t):.3f}",
                flush=True,
            )
    if pool is not None:
        pool.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
