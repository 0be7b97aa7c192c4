"""The networks' stems (full convs with 3 input channels, stride 2) one layer at a time:
``stem_native`` beside ``direct_native`` (and every other applicable CPU tactic with
``--tactics``) and onnxruntime running the same Conv + activation as a one-node model, in
one process.

Each round runs every candidate once, in an order that rotates round by round; the report
is each candidate's median time and its median ratio to onnxruntime over the rounds (only
same-round ratios compare on a loaded host). Threads: ``--threads`` for both (our work
pool, onnxruntime's intra-op threads). Not run by the tests.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/conv_stem.py \\
        --batch 1 --threads 2 --rounds 30
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

#: name → (input C, H, W), Cout, kernel, stride, pad, activation (FusedConv attribute, params)
LAYERS: dict[str, tuple[tuple[int, int, int], int, int, int, int, str, tuple[float, ...]]] = {
    "resnet50_7x7": ((3, 224, 224), 64, 7, 2, 3, "relu", ()),
    "mobilenetv2_3x3": ((3, 224, 224), 32, 3, 2, 1, "clip", (0.0, 6.0)),
    "yolov8n320_3x3": ((3, 320, 320), 16, 3, 2, 1, "silu", ()),
    "yolov8n640_3x3": ((3, 640, 640), 16, 3, 2, 1, "silu", ()),
    "demo416x256_3x3": ((3, 256, 416), 16, 3, 2, 1, "silu", ()),
}


def ort_session(
    w: np.ndarray, b: np.ndarray, xs: tuple, k: int, s: int, p: int, act: str, threads: int
) -> Any:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[p] * 4, strides=[s, s])]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    if act == "relu":
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    elif act == "clip":
        nodes.append(helper.make_node("Clip", ["c", "lo", "hi"], ["y"]))
        inits += [
            numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
            numpy_helper.from_array(np.array(6.0, np.float32), "hi"),
        ]
    else:  # silu
        nodes += [
            helper.make_node("Sigmoid", ["c"], ["sg"]),
            helper.make_node("Mul", ["c", "sg"], ["y"]),
        ]
    graph = helper.make_graph(
        nodes,
        "stem",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, xs)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--layers", nargs="*", default=list(LAYERS))
    p.add_argument("--tactics", nargs="*", default=["stem_native", "direct_native"])
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
        (c, h, wd), cout, k, s, pad, act, params = LAYERS[name]
        xs = (args.batch, c, h, wd)
        ho, wo = (h + 2 * pad - k) // s + 1, (wd + 2 * pad - k) // s + 1
        x = rng.standard_normal(xs).astype(np.float32)
        w = (rng.standard_normal((cout, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
        b = rng.standard_normal(cout).astype(np.float32)
        spec = ConvSpec(xs, (xs[0], cout, ho, wo), w, b, (s, s), (pad,) * 4, (1, 1), 1, act, params)
        runs: dict[str, Any] = {}
        outs: dict[str, np.ndarray] = {}
        for cls in CPU_TACTICS["conv"]:
            if args.tactics and cls.name not in args.tactics:
                continue
            if not cls.applicable(spec):
                continue
            out = np.zeros(spec.out_shape, np.float32)
            runs[cls.name] = cls(spec).bind([x, w, b], [out], ScratchPool(pool))
            outs[cls.name] = out
        sess = ort_session(w, b, xs, k, s, pad, act, args.threads)
        feeds = {"x": x}
        ref = sess.run(None, feeds)[0]
        runs["onnxruntime"] = lambda s=sess, f=feeds: s.run(None, f)
        first_runs_checked(name, runs, outs, ref)
        names = list(runs)
        times = rotated(runs, args.rounds)
        ort_t = np.array(times["onnxruntime"])
        gflop = 2 * cout * c * k * k * ho * wo * args.batch / 1e9
        print(f"{name} b{args.batch} ({gflop:.3f} GFLOP)")
        for key in sorted(names, key=lambda key: np.median(times[key])):
            t = np.array(times[key])
            print(
                f"  {key:16s} {np.median(t) * 1e6:9.1f} us {gflop / np.median(t):6.1f} GFLOP/s"
                f"  vs ORT {np.median(t / ort_t):.3f}  (min {t.min() * 1e6:.1f} us)"
            )
    if pool is not None:
        pool.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
