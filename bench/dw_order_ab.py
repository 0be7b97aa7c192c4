"""A MobileNetV2 block's three layers in sequence (expand 1x1, depthwise 3x3, project 1x1, as
the engine runs them layer by layer over the batch), the depthwise going through the images
first to last or last to first (cpu_depthwise.REVERSE_IMAGES), against onnxruntime running the
same three Convs as one model (its profiler's per-node times: each node finds its input where
the node before left it, as in a whole model).

One thread (ours and onnxruntime's on the calling thread), CPU time of the calling thread: a
loaded host's preemptions do not count. Each round runs: ours forward, ours reversed,
onnxruntime (profiled), and reports per-layer medians and the medians of the per-round
ratios. Not run by the tests.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.dw_order_ab \\
        --block f2 --batch 8 --rounds 15
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.chain_ab import BLOCKS, block_spec, ort_model
from bench.dw_ab import calls_into, side_library
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics import cpu_depthwise
from edge_infer.engine.backends.cpu.tactics.cpu_depthwise import DepthwiseNative
from edge_infer.engine.backends.cpu.tactics.cpu_direct import DirectNative
from edge_infer.engine.backends.cpu.tactics.cpu_pointwise import PointwiseNative
from edge_infer.engine.tactics.base import ConvSpec

Run = Callable[[], Any]


def _one_by_one(spec: ConvSpec, x: np.ndarray, out: np.ndarray, scratch: Any) -> Run:
    """The 1x1 layer by the first of pointwise_native / direct_native that takes it."""
    for tactic in (PointwiseNative, DirectNative):
        if tactic.applicable(spec):
            return tactic(spec).bind([x, spec.weight, spec.bias], [out], scratch)
    raise SystemExit(f"no 1x1 tactic for {spec}")


def _layers(
    block: str, batch: int, reverse: bool, lib: Any = None
) -> tuple[list[Run], np.ndarray, Any]:
    spec = block_spec(block, batch)
    assert spec.expand is not None, "blocks with an expand layer"
    rng = np.random.default_rng(1)
    x = rng.standard_normal(spec.x_shape).astype(np.float32)
    scratch = ScratchPool(None)
    e = np.zeros(spec.expand.out_shape, np.float32)
    d = np.zeros(spec.depthwise.out_shape, np.float32)
    y = np.zeros(spec.out_shape, np.float32)
    cpu_depthwise.REVERSE_IMAGES = reverse
    dws = spec.depthwise
    with calls_into(lib) if lib is not None else contextlib.nullcontext():
        dw_run = DepthwiseNative(dws).bind([e, dws.weight, dws.bias], [d], scratch)
    runs = [
        _one_by_one(spec.expand, x, e, scratch),
        dw_run,
        _one_by_one(spec.project, d, y, scratch),
    ]
    return runs, y, spec


def _ort_nodes(sess: Any, feeds: dict[str, np.ndarray]) -> list[float]:
    """The Conv nodes' kernel times (us) of one profiled run, in graph order."""
    sess.run(None, feeds)
    events = json.loads(Path(sess.end_profiling()).read_text())
    convs = [
        e
        for e in events
        if e.get("cat") == "Node"
        and e["name"].endswith("_kernel_time")
        and e.get("args", {}).get("op_name") == "Conv"
    ]
    # the last run's nodes (one run per profile here, after the session's own warm-up)
    return [float(e["dur"]) for e in convs[-3:]]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--block", default="f2", choices=[b for b in BLOCKS if BLOCKS[b][1] != 1])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument(
        "--variant",
        type=Path,
        default=None,
        help="another conv_depthwise.c: its build (reversed order) runs as a third program",
    )
    args = p.parse_args()
    import onnxruntime as ort

    from edge_infer.engine.backends.cpu.threads import set_thread_budget, single_threaded_blas

    set_thread_budget(1)
    single_threaded_blas()
    fwd, y_fwd, spec = _layers(args.block, args.batch, False)
    rev, y_rev, _ = _layers(args.block, args.batch, True)
    programs = {"forward": fwd, "reversed": rev}
    tmp_lib = tempfile.TemporaryDirectory(prefix="dw-order-lib-")
    if args.variant is not None:
        lib = side_library(args.variant, Path(tmp_lib.name))
        programs["variant"], y_var, _ = _layers(args.block, args.batch, True, lib)
    cpu_depthwise.REVERSE_IMAGES = True
    for runs in programs.values():
        for r in runs:
            r()
    if not np.array_equal(y_fwd, y_rev):
        raise SystemExit("forward and reversed depthwise outputs differ")
    if args.variant is not None and not np.array_equal(y_var, y_rev):
        raise SystemExit("the variant's outputs differ")
    x = np.random.default_rng(1).standard_normal(spec.x_shape).astype(np.float32)
    feeds = {"x": x}
    tmp = tempfile.TemporaryDirectory(prefix="dw-order-")
    model = ort_model(spec)

    def session(prof: bool) -> Any:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        if prof:
            opts.enable_profiling = True
            opts.profile_file_prefix = f"{tmp.name}/ort"
        return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])

    plain = session(False)
    ref = plain.run(None, feeds)[0]
    err = float(np.abs(ref - y_fwd).max() / max(1.0, np.abs(ref).max()))

    def ort_profiled() -> list[float]:
        sess = session(True)
        for _ in range(2):
            sess.run(None, feeds)
        return _ort_nodes(sess, feeds)

    times: dict[str, list[list[float]]] = {k: [] for k in [*programs, "ort"]}
    ort_cpu: list[float] = []
    for _ in range(args.rounds):
        for key, runs in programs.items():
            row = []
            for r in runs:
                t0 = time.thread_time()
                r()
                row.append((time.thread_time() - t0) * 1e6)
            times[key].append(row)
        times["ort"].append(ort_profiled())
        t0 = time.thread_time()
        plain.run(None, feeds)
        ort_cpu.append((time.thread_time() - t0) * 1e6)
    med = {k: np.median(np.array(v), axis=0) for k, v in times.items()}
    arr = {k: np.array(v) for k, v in times.items()}
    names = ["expand", "depthwise", "project"]
    head = f"block {args.block} batch {args.batch}, one thread, CPU us per run"
    print(f"{head} (max rel err {err:.1e})")
    for k in times:
        cells = "  ".join(f"{n} {m:8.0f}" for n, m in zip(names, med[k]))
        print(f"  {k:9s} {cells}  sum {med[k].sum():8.0f}")
    for k in programs:
        ratios = np.median(arr[k] / arr["ort"], axis=0)
        total = np.median(arr[k].sum(axis=1) / arr["ort"].sum(axis=1))
        cells = "  ".join(f"{n} {v:.3f}" for n, v in zip(names, ratios))
        print(f"  {k:9s}/ort  {cells}  sum {total:.3f}")
    print(f"  ort whole model (with its layout reorders), CPU us: {np.median(ort_cpu):8.0f}")
    rv = np.median(arr["reversed"] / arr["forward"], axis=0)
    print("  reversed/forward  " + "  ".join(f"{n} {v:.3f}" for n, v in zip(names, rv)))
    if args.variant is not None:
        rv = np.median(arr["reversed"] / arr["variant"], axis=0)
        print("  reversed/variant  " + "  ".join(f"{n} {v:.3f}" for n, v in zip(names, rv)))
    tmp.cleanup()
    tmp_lib.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
