"""MobileNetV2's inverted-residual blocks: ``chain_native`` (one pass, kernels/conv_chain.c)
against the same three layers run one after another with the tactics the CPU backend would
pick (the fastest of the native candidates of each layer, timed here), and onnxruntime on a
one-block model of the same shapes — in one process, round by round (a loaded machine slows
all three alike), medians of the per-round ratios.

The blocks are built by hand with MobileNetV2's shapes (expand 1x1 + ReLU6, depthwise 3x3 +
ReLU6, project 1x1, the residual where input and output match) and random weights.

``--variant FILE.c`` adds the chain tactic with another build of kernels/conv_chain.c (e.g.
``git show HEAD:...`` of it, compiled alone into a side library), bound by
``--variant-tactic FILE.py`` (that version's tactics/cpu_chain.py: its buffer geometry) if
given, else by this tree's; ``--cpu`` times each run's CPU time (process_time: with
``--threads 1`` robust to the other processes of a loaded host).

``--decision N`` instead times each block N times the way a build decides (the members
against the chain): the ratio of each side's fastest sample over 7 interleaved rounds
(autotune.time_interleaved, the timing before backends/cpu/chains.tune_chain) and the median
of paired per-round ratios (chains.time_chain, what the build uses), and prints each
statistic's mean, spread and how often it keeps the chain (KEEP_BELOW).

Run (BLAS unthrottled):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.chain_ab \
        --blocks f1 f2 f3 f4 --batches 1 8 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.alternating import median_ratio
from bench.dw_ab import calls_into, side_library
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics.chain_spec import ChainSpec
from edge_infer.engine.backends.cpu.tactics.cpu_chain import ChainNative, geometry
from edge_infer.engine.backends.cpu.tactics.cpu_depthwise import DepthwiseNative
from edge_infer.engine.backends.cpu.tactics.cpu_direct import DirectNative
from edge_infer.engine.backends.cpu.tactics.cpu_ocvec import OcVecNative
from edge_infer.engine.backends.cpu.tactics.cpu_pointwise import PointwiseNative
from edge_infer.engine.tactics.base import ConvSpec

#: block → (cin, expansion t, cout, input side, depthwise stride) of MobileNetV2
BLOCKS: dict[str, tuple[int, int, int, int, int]] = {
    "f1": (32, 1, 16, 112, 1),
    "f2": (16, 6, 24, 112, 2),
    "f3": (24, 6, 24, 56, 1),
    "f4": (24, 6, 32, 56, 2),
    "f5": (32, 6, 32, 28, 1),
    "f7": (32, 6, 64, 28, 2),
    "f8": (64, 6, 64, 14, 1),
    "f11": (64, 6, 96, 14, 1),
    "f12": (96, 6, 96, 14, 1),
    "f14": (96, 6, 160, 14, 2),
    "f15": (160, 6, 160, 7, 1),
    "f17": (160, 6, 320, 7, 1),
}
LAYER_TACTICS = (PointwiseNative, DirectNative, OcVecNative, DepthwiseNative)
RELU6 = ("clip", (0.0, 6.0))
Run = Callable[[], None]


def _conv(
    xs: tuple[int, ...], w: np.ndarray, b: np.ndarray, s: int, act: tuple, res: str = "none"
) -> ConvSpec:
    k = w.shape[2]
    p = k // 2
    n, _, h, wd = xs
    out = (n, w.shape[0], (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1)
    g = xs[1] if w.shape[1] == 1 and k == 3 else 1
    return ConvSpec(xs, out, w, b, (s, s), (p, p, p, p), (1, 1), g, act[0], act[1], res)  # type: ignore[arg-type]


def block_spec(name: str, batch: int, seed: int = 0) -> ChainSpec:
    cin, t, cout, side, s = BLOCKS[name]
    rng = np.random.default_rng(seed)
    f32 = np.float32
    cmid = cin * t
    xs = (batch, cin, side, side)
    expand = None
    if t != 1:
        we = (rng.standard_normal((cmid, cin, 1, 1)) / np.sqrt(cin)).astype(f32)
        expand = _conv(xs, we, rng.standard_normal(cmid).astype(f32), 1, RELU6)
    mid = expand.out_shape if expand is not None else xs
    wd = (rng.standard_normal((cmid, 1, 3, 3)) / 3).astype(f32)
    dw = _conv(mid, wd, rng.standard_normal(cmid).astype(f32), s, RELU6)
    wp = (rng.standard_normal((cout, cmid, 1, 1)) / np.sqrt(cmid)).astype(f32)
    res = "pre" if s == 1 and cin == cout else "none"
    project = _conv(dw.out_shape, wp, rng.standard_normal(cout).astype(f32), 1, ("", ()), res)
    return ChainSpec(expand, dw, project)


def _best_layer(spec: ConvSpec, x: np.ndarray, out: np.ndarray, z: Any, scratch: Any) -> Any:
    """The fastest native tactic of one layer here (what the build's timing would pick)."""
    inputs = [x, spec.weight, spec.bias] + ([z] if z is not None else [])
    best = None
    for tactic in LAYER_TACTICS:
        if not tactic.applicable(spec):
            continue
        run = tactic(spec).bind(inputs, [out], scratch)
        for _ in range(2):
            run()
        t0 = time.perf_counter()
        for _ in range(5):
            run()
        dt = time.perf_counter() - t0
        if best is None or dt < best[0]:
            best = (dt, tactic.name, run)
    assert best is not None
    return best[1], best[2]


def _ort_session(spec: ChainSpec, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # spinning onnxruntime threads steal our cores between its runs (in one process)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(ort_model(spec), opts, providers=["CPUExecutionProvider"])


def ort_model(spec: ChainSpec) -> bytes:
    """The block's layers as one onnx model (Conv [+ Add] [+ Clip] per layer), serialized."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    prev = "x"
    for k, m in enumerate(spec.layers):
        w = f"w{k}"
        inits.append(numpy_helper.from_array(m.weight, w))
        inputs = [prev, w]
        if m.bias is not None:
            inits.append(numpy_helper.from_array(m.bias, f"b{k}"))
            inputs.append(f"b{k}")
        out = f"c{k}"
        nodes.append(
            helper.make_node(
                "Conv",
                inputs,
                [out],
                strides=list(m.strides),
                pads=list(m.pads),
                group=m.group,
                kernel_shape=list(m.kernel),
            )
        )
        if m.residual == "pre":
            nodes.append(helper.make_node("Add", [out, "z"], [f"a{k}"]))
            out = f"a{k}"
        if m.activation == "clip":
            lo, hi = (
                numpy_helper.from_array(np.float32(v), f"{n}{k}")
                for v, n in zip(m.activation_params, "lh")
            )
            inits += [lo, hi]
            nodes.append(helper.make_node("Clip", [out, f"l{k}", f"h{k}"], [f"r{k}"]))
            out = f"r{k}"
        prev = out
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(spec.x_shape))]
    if spec.residual != "none":
        ins.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, list(spec.out_shape)))
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(spec.out_shape))]
    graph = helper.make_graph(nodes, "block", ins, outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return bytes(model.SerializeToString())


def bench_block(
    name: str,
    batch: int,
    threads: int,
    rounds: int,
    with_ort: bool,
    variant: Any = None,
    cpu: bool = False,
    variant_tactic: Any = ChainNative,
) -> dict[str, Any]:
    spec = block_spec(name, batch)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(spec.x_shape).astype(np.float32)
    z = x if spec.residual != "none" else None
    pool = WorkPool(threads) if threads > 1 else None
    scratch = ScratchPool(pool)
    out_chain = np.zeros(spec.out_shape, np.float32)
    chain = ChainNative(spec).bind([x] + ([z] if z is not None else []), [out_chain], scratch)
    # the layers one after another, each with its fastest tactic, on their own buffers
    runs: list[Run] = []
    picked = []
    cur = x
    for m in spec.layers:
        o = np.zeros(m.out_shape, np.float32)
        tname, run = _best_layer(m, cur, o, z if m.residual != "none" else None, scratch)
        picked.append(tname)
        runs.append(run)
        cur = o
    out_split = cur

    def split_run() -> None:
        for r in runs:
            r()

    progs: dict[str, Run] = {"chain": chain, "split": split_run}
    out_variant = np.zeros(spec.out_shape, np.float32)
    if variant is not None:
        with calls_into(variant, "conv_chain"):
            progs["variant"] = variant_tactic(spec).bind(
                [x] + ([z] if z is not None else []), [out_variant], scratch
            )
    if with_ort:
        sess = _ort_session(spec, threads)
        feeds = {"x": x} | ({"z": z} if z is not None else {})
        progs["ort"] = lambda: sess.run(None, feeds)
    chain()
    split_run()
    err = float(np.abs(out_chain - out_split).max() / max(1.0, np.abs(out_split).max()))
    if variant is not None:
        progs["variant"]()
        scale = max(1.0, np.abs(out_split).max())
        err = max(err, float(np.abs(out_variant - out_split).max() / scale))
    if with_ort:
        ref = sess.run(None, feeds)[0]
        err = max(err, float(np.abs(out_chain - ref).max() / max(1.0, np.abs(ref).max())))
    for _ in range(3):
        for p in progs.values():
            p()
    times: dict[str, list[float]] = {k: [] for k in progs}
    clock = time.process_time if cpu else time.perf_counter
    keys = list(progs)
    for r in range(rounds):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:  # the order rotates
            t0 = clock()
            progs[k]()
            times[k].append(clock() - t0)
    if pool is not None:
        pool.close()
    row: dict[str, Any] = {
        "block": name,
        "batch": batch,
        "strip_rows": geometry(spec)["rows"],
        "layers": "/".join(picked),
        "chain_us": round(float(np.median(times["chain"])) * 1e6),
        "split_us": round(float(np.median(times["split"])) * 1e6),
        "chain/split": median_ratio(times["chain"], times["split"]),
        "max_rel_err": f"{err:.1e}",
    }
    if variant is not None:
        row["variant_us"] = round(float(np.median(times["variant"])) * 1e6)
        row["chain/variant"] = median_ratio(times["chain"], times["variant"])
    if with_ort:
        row["ort_us"] = round(float(np.median(times["ort"])) * 1e6)
        row["chain/ort"] = median_ratio(times["chain"], times["ort"])
        row["split/ort"] = median_ratio(times["split"], times["ort"])
    return row


def decision_trials(name: str, batch: int, threads: int, trials: int) -> str:
    """The build's chain-vs-members statistic, old and new, over ``trials`` timings."""
    import statistics

    from edge_infer.engine.backends.cpu import chains
    from edge_infer.engine.tactics.autotune import paired_ratio, time_interleaved

    spec = block_spec(name, batch)
    x = np.random.default_rng(1).standard_normal(spec.x_shape).astype(np.float32)
    z = x if spec.residual != "none" else None
    pool = WorkPool(threads) if threads > 1 else None
    scratch = ScratchPool(pool)
    out = np.zeros(spec.out_shape, np.float32)
    chain = ChainNative(spec).bind([x] + ([z] if z is not None else []), [out], scratch)
    runs: list[Run] = []
    cur = x
    for m in spec.layers:
        o = np.zeros(m.out_shape, np.float32)
        runs.append(_best_layer(m, cur, o, z if m.residual != "none" else None, scratch)[1])
        cur = o

    def split() -> None:
        for r in runs:
            r()

    minima, paired = [], []
    for _ in range(trials):
        t = time_interleaved({"split": split, "chain": chain})
        minima.append(t["chain"] / t["split"])
        s = chains.time_chain({"split": split, "chain": chain})
        paired.append(paired_ratio(s["chain"], s["split"]))
    if pool is not None:
        pool.close()

    def show(v: list[float]) -> str:
        kept = sum(r <= chains.KEEP_BELOW for r in v)
        return (
            f"mean {statistics.mean(v):.3f} sd {statistics.stdev(v):.3f} "
            f"range {min(v):.2f}-{max(v):.2f} kept {kept}/{len(v)}"
        )

    return f"block={name} batch={batch}  minima: {show(minima)}  paired: {show(paired)}"


def _tactic_from(path: str) -> Any:
    """ChainNative of another version of tactics/cpu_chain.py, loaded from ``path``."""
    spec = importlib.util.spec_from_file_location("chain_ab_variant_tactic", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ChainNative


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", nargs="+", default=list(BLOCKS), choices=list(BLOCKS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--no-ort", action="store_true", help="skip onnxruntime")
    parser.add_argument("--variant", default=None, help="another conv_chain.c")
    parser.add_argument("--variant-tactic", default=None, help="the variant's cpu_chain.py")
    parser.add_argument("--cpu", action="store_true", help="CPU time (with --threads 1)")
    parser.add_argument("--decision", type=int, default=0, help="N build-style timings")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="chain-ab-"))
        from pathlib import Path

        lib = side_library(Path(args.variant), Path(tmp), "conv_chain") if args.variant else None
        tactic = _tactic_from(args.variant_tactic) if args.variant_tactic else ChainNative
        for batch in args.batches:
            for name in args.blocks:
                if args.decision:
                    print(decision_trials(name, batch, args.threads, args.decision), flush=True)
                    continue
                row = bench_block(
                    name, batch, args.threads, args.rounds, not args.no_ort, lib, args.cpu, tactic
                )
                print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)


if __name__ == "__main__":
    main()
