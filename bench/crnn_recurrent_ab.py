"""The CRNN (zoo, width 128) with its LSTMs as ``recurrent_gemm`` (before: numpy per step)
and as ``recurrent_native`` (after: kernels/recurrent.c), beside onnxruntime, in ONE process
alternating the three many times: for a loaded machine, where only ratios measured side by
side mean anything. Per round each side runs ``--iters`` times (median); the report is the
median over rounds of each side and of the per-round ratios.

Run (2 threads, BLAS unthrottled; ``--cpu-time``: 1 thread, CPU time per run instead):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/crnn_recurrent_ab.py \
        --batch 1 8 [--cpu-time]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx


@contextlib.contextmanager
def native_recurrent_disabled() -> Iterator[None]:
    """Within the block the native recurrent tactic is no candidate (the 'before' engine)."""
    from edge_infer.engine.backends.cpu.tactics.cpu_recurrent import RecurrentNative

    applicable = RecurrentNative.__dict__["applicable"]
    RecurrentNative.applicable = classmethod(lambda cls, spec: False)  # type: ignore[method-assign]
    try:
        yield
    finally:
        RecurrentNative.applicable = applicable  # type: ignore[method-assign]


def lstm_tactics(engine: Any, batch: int) -> list[str | None]:
    return [n.meta.get("tactic") for n in engine.graph(batch).nodes if n.op_type == "LSTM"]


def sides(path: Path, batch: int, threads: int) -> dict[str, Callable[[], np.ndarray]]:
    import onnxruntime as ort

    import edge_infer

    x = np.random.default_rng(0).random((batch, 3, 32, 128), dtype=np.float32)
    shapes = {"image": x.shape}
    with native_recurrent_disabled():
        before = edge_infer.build(str(path), None, shapes=shapes)
    after = edge_infer.build(str(path), None, shapes=shapes)
    print(f"b{batch} LSTM tactics: before {lstm_tactics(before, batch)}, "
          f"after {lstm_tactics(after, batch)}")  # fmt: skip
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    b_ctx, a_ctx = before.create_context(), after.create_context()
    return {
        "before": lambda: b_ctx.execute({"image": x})["logits"],
        "after": lambda: a_ctx.execute({"image": x})["logits"],
        "onnxruntime": lambda: sess.run(None, {"image": x})[0],
    }


def measure(
    runs: dict[str, Callable[[], np.ndarray]], rounds: int, iters: int, cpu_time: bool
) -> None:
    outs = {k: f() for k, f in runs.items()}
    for k in ("after", "onnxruntime"):
        print(f"  max |{k} - before| = {np.abs(outs[k] - outs['before']).max():.2e}")
    per: dict[str, list[float]] = {k: [] for k in runs}
    clock = time.thread_time if cpu_time else time.perf_counter
    for _ in range(rounds):
        for name, f in runs.items():
            f()  # one warm run after the other side's
            ts = []
            for _ in range(iters):
                t0 = clock()
                f()
                ts.append(clock() - t0)
            # CPU time: the least a run cost (load only adds); wall time: the median
            per[name].append(float(np.min(ts) if cpu_time else np.median(ts)) * 1e3)
    med = {k: float(np.median(v)) for k, v in per.items()}
    ratio = lambda a, b: float(np.median(np.array(per[a]) / np.array(per[b])))  # noqa: E731
    unit = "CPU ms" if cpu_time else "ms"
    print(f"  median {unit}: " + ", ".join(f"{k} {v:.2f}" for k, v in med.items()))
    print(
        f"  before/after {ratio('before', 'after'):.2f}x, after/onnxruntime "
        f"{ratio('after', 'onnxruntime'):.2f}x, before/onnxruntime "
        f"{ratio('before', 'onnxruntime'):.2f}x (median of per-round ratios, {rounds} rounds)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument(
        "--cpu-time",
        action="store_true",
        help="one thread, timed by the thread's CPU time: what a run costs, hardly moved by "
        "the load of other processes (onnxruntime runs in the calling thread at 1 thread)",
    )
    args = ap.parse_args()
    if args.cpu_time:
        args.threads = 1
    from edge_infer.engine.backends import get_backend
    from edge_infer.zoo import build_model

    get_backend("cpu").configure(cores=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "crnn.onnx"
        onnx.save(build_model("crnn", batch=None, width=None), path)
        for batch in args.batch:
            measure(sides(path, batch, args.threads), args.rounds, args.iters, args.cpu_time)


if __name__ == "__main__":
    main()
