"""MobileNetV2's 1×1 convolutions on its large maps (112², 56², 28², and the wide 7² ones), one
layer at a time: the applicable native CPU tactics of ours (optionally also a git revision's
kernels, ``--base``) and onnxruntime running the same Conv (+ Clip / Add) as a one-node
model, in one process, round by round in a rotating order.

Each row is a candidate's median time and its median same-round ratio to onnxruntime.
``--cpu-time`` (one thread: ORT and our layer run on the calling thread) times the thread's
CPU time, which a loaded host's preemptions do not inflate. ORT writes into a preallocated
output (IOBinding); its times include its session call (a few µs). Not run by the tests.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/bigmap_ab.py \\
        --batch 1 --threads 1 --cpu-time --rounds 31
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from alternating import first_runs_checked
from small_map_ab import rotated

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: name → (cin, cout, side, activation, residual)
LAYERS: dict[str, tuple[int, int, int, str, str]] = {
    "f1p_32x16@112": (32, 16, 112, "", "none"),
    "f2e_16x96@112": (16, 96, 112, "clip", "none"),
    "f2p_96x24@56": (96, 24, 56, "", "none"),
    "f4e_32x192@28": (32, 192, 28, "clip", "none"),
    "f3e_24x144@56": (24, 144, 56, "clip", "none"),
    "f5p_192x32@28": (192, 32, 28, "", "pre"),
    "f18_320x1280@7": (320, 1280, 7, "clip", "none"),
    "f17p_960x320@7": (960, 320, 7, "", "none"),
    "f15p_960x160@7": (960, 160, 7, "", "pre"),
}


def ort_session(
    w: np.ndarray, b: np.ndarray, batch: int, geom: tuple, threads: int, prefix: str
) -> Any:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    cin, cout, side, act, res = geom
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, cin, side, side])]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    last = "c"
    if res != "none":
        z = [batch, cout, side, side]
        inputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, z))
        nodes.append(helper.make_node("Add", [last, "z"], ["a"]))
        last = "a"
    if act == "clip":
        inits += [
            numpy_helper.from_array(np.array(0, np.float32), "lo"),
            numpy_helper.from_array(np.array(6, np.float32), "hi"),
        ]
        nodes.append(helper.make_node("Clip", [last, "lo", "hi"], ["r"]))
        last = "r"
    nodes[-1].output[0] = "y"
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, cout, side, side])
    graph = helper.make_graph(nodes, "conv", inputs, [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.enable_profiling = True
    opts.profile_file_prefix = prefix
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def parse_layer(text: str) -> tuple[int, int, int, str, str]:
    """``cin,cout,side[,clip][,pre]`` → a LAYERS entry."""
    parts = text.split(",")
    cin, cout, side = (int(v) for v in parts[:3])
    act = "clip" if "clip" in parts[3:] else ""
    return cin, cout, side, act, "pre" if "pre" in parts[3:] else "none"


def ort_bound(sess: Any, feeds: dict[str, np.ndarray], shape: tuple) -> Any:
    """A call of ``sess`` on ``feeds`` into a preallocated output (IOBinding): no fresh output
    array (page faults) per run, as in a model where ORT's arena holds the output."""
    y = np.empty(shape, np.float32)
    binding = sess.io_binding()
    for k, v in feeds.items():
        binding.bind_cpu_input(k, v)
    binding.bind_output("y", "cpu", 0, np.float32, list(shape), y.ctypes.data)

    def run() -> None:
        sess.run_with_iobinding(binding)

    run.keep = y  # type: ignore[attr-defined]
    return run


def ort_kernel_times(sess: Any, rounds: int) -> list[float]:
    """The last ``rounds`` runs' kernel times (seconds) from ORT's profile: its nodes but the
    NCHWc reorders a one-node model adds around the conv (a whole model keeps NCHWc between
    layers, as bench/layer_profile.py and bench/pointwise_ab.py compare)."""
    events = json.loads(Path(sess.end_profiling()).read_text())
    runs: list[float] = []
    total = 0.0
    for e in events:  # a run's node events come before its model_run event
        if e.get("cat") == "Session" and e["name"] == "model_run":
            runs.append(total)
            total = 0.0
        elif (
            e.get("cat") == "Node"
            and e["name"].endswith("_kernel_time")
            and "Reorder" not in e.get("args", {}).get("op_name", "")
        ):
            total += float(e["dur"]) * 1e-6
    return runs[-rounds:]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument(
        "--layers", nargs="*", default=list(LAYERS), help="names, or cin,cout,side[,clip][,pre]"
    )
    p.add_argument("--tactics", nargs="*", default=None, help="default: every applicable")
    p.add_argument("--cpu-time", action="store_true", help="the thread's CPU time (1 thread)")
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
    tmp = tempfile.mkdtemp(prefix="bigmap_ab")  # ORT profiles
    for name in args.layers:
        cin, cout, side, act, res = geom = LAYERS.get(name) or parse_layer(name)
        xs = (args.batch, cin, side, side)
        os_ = (args.batch, cout, side, side)
        x = rng.standard_normal(xs).astype(np.float32)
        w = (rng.standard_normal((cout, cin, 1, 1)) / np.sqrt(cin)).astype(np.float32)
        b = rng.standard_normal(cout).astype(np.float32)
        z = rng.standard_normal(os_).astype(np.float32)
        params = (0.0, 6.0) if act == "clip" else ()
        spec = ConvSpec(xs, os_, w, b, (1, 1), (0,) * 4, (1, 1), 1, act, params, res)
        ins = [x, w, b] + ([z] if res != "none" else [])
        runs: dict[str, Any] = {}
        outs: dict[str, np.ndarray] = {}
        for cls in CPU_TACTICS["conv"]:
            if args.tactics and cls.name not in args.tactics:
                continue
            if not cls.name.endswith("_native") and not args.tactics:
                continue
            if not cls.applicable(spec):
                continue
            out = np.zeros(spec.out_shape, np.float32)
            runs[cls.name] = cls(spec).bind(ins, [out], ScratchPool(pool))
            outs[cls.name] = out
        prefix = str(Path(tmp) / f"ort_{name}")
        sess = ort_session(w, b, args.batch, geom, args.threads, prefix)
        feeds = {"x": x, **({"z": z} if res != "none" else {})}
        ref = sess.run(None, feeds)[0]
        runs["onnxruntime"] = ort_bound(sess, feeds, os_)
        first_runs_checked(name, runs, outs, ref)
        times = rotated(runs, args.rounds, clock)
        times["onnxruntime"] = ort_kernel_times(sess, args.rounds)
        ort_t = np.array(times["onnxruntime"])
        gflop = 2 * cout * cin * side * side * args.batch / 1e9
        mb = 4 * args.batch * side * side * (cin + cout * (2 if res != "none" else 1)) / 1e6
        print(f"{name} b{args.batch} ({gflop:.3f} GFLOP, {mb:.1f} MB in+out)", flush=True)
        for key in sorted(runs, key=lambda r: np.median(times[r])):
            t = np.array(times[key])
            med = float(np.median(t))
            print(
                f"  {key:18s} {med * 1e6:8.0f} us  {gflop / med:6.1f} GFLOP/s"
                f"  {mb / 1e3 / med:5.1f} GB/s  vs ORT {np.median(t / ort_t):.3f}",
                flush=True,
            )
    if pool is not None:
        pool.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
