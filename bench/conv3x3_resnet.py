"""ResNet-50's 3×3 convolutions, one layer at a time: every applicable CPU tactic of ours
beside onnxruntime running the same Conv+Relu as a one-node model, in one process.

Each round runs every candidate once, in an order that rotates round by round; the report
is each candidate's median time and its median ratio to onnxruntime over the rounds (the
host's speed drifts, so only same-round ratios compare). Threads: ``--threads`` for both
(our work pool, onnxruntime's intra-op threads). Not run by the tests.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/conv3x3_resnet.py \\
        --batch 1 --threads 2 --rounds 15
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from alternating import first_runs_checked, rotated

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: name → (Cin = Cout, input side, stride): torchvision ResNet-50's 3×3 layers
LAYERS = {
    "l1_64x56": (64, 56, 1),
    "l2_128x28": (128, 28, 1),
    "l3_256x14": (256, 14, 1),
    "l4_512x7": (512, 7, 1),
    "l2s2_128x56": (128, 56, 2),
    "l3s2_256x28": (256, 28, 2),
    "l4s2_512x14": (512, 14, 2),
}


def ort_session(w: np.ndarray, b: np.ndarray, x_shape: tuple, stride: int, threads: int) -> Any:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    ho = (x_shape[2] + 2 - 3) // stride + 1
    out_shape = (x_shape[0], w.shape[0], ho, ho)
    graph = helper.make_graph(
        [
            helper.make_node(
                "Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[stride, stride]
            ),
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
    """winograd_native as before its one-block mode: blocks of 16 tiles split by tiles."""
    from edge_infer.engine.backends.cpu.tactics.cpu_winograd import WinogradNative

    attrs = {"name": "winograd_tiles16", "tb": 16, "shared_tiles": 0}
    return [type("WinogradTiles16", (WinogradNative,), attrs)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--layers", nargs="*", default=list(LAYERS))
    p.add_argument("--tactics", nargs="*", default=None, help="default: every applicable")
    args = p.parse_args()

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
        c, side, s = LAYERS[name]
        xs = (args.batch, c, side, side)
        ho = (side + 2 - 3) // s + 1
        x = rng.standard_normal(xs).astype(np.float32)
        w = (rng.standard_normal((c, c, 3, 3)) / np.sqrt(c * 9)).astype(np.float32)
        b = rng.standard_normal(c).astype(np.float32)
        spec = ConvSpec(xs, (xs[0], c, ho, ho), w, b, (s, s), (1, 1, 1, 1), (1, 1), 1, "relu")
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
        sess = ort_session(w, b, xs, s, args.threads)
        feeds = {"x": x}
        ref = sess.run(None, feeds)[0]
        runs["onnxruntime"] = lambda s=sess, f=feeds: s.run(None, f)
        first_runs_checked(name, runs, outs, ref)
        names = list(runs)
        times = rotated(runs, args.rounds)
        ort_t = np.array(times["onnxruntime"])
        gflop = 2 * c * c * 9 * ho * ho * args.batch / 1e9
        print(f"{name} b{args.batch} ({gflop:.2f} GFLOP)")
        for k in sorted(names, key=lambda k: np.median(times[k])):
            t = np.array(times[k])
            print(
                f"  {k:18s} {np.median(t) * 1e3:8.3f} ms  {gflop / np.median(t):6.1f} GFLOP/s"
                f"  vs ORT {np.median(t / ort_t):.3f}  (min {t.min() * 1e3:.3f} ms)"
            )
    if pool is not None:
        pool.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
