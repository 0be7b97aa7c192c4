"""MobileNetV2's depthwise 3x3 layers (Conv + Clip(0, 6), as the engine fuses them), one layer
at a time: depthwise_native with this tree's kernel library, optionally the same tactic with
another build of kernels/conv_depthwise.c (``--variant FILE.c``, e.g. the committed one from
``git show HEAD:...``: compiled alone into a side library whose conv_depthwise_f32 the calls
use), and onnxruntime running the same Conv + Clip as a one-node model, in one process.

Each round runs every candidate once, in an order that rotates round by round; the report is
each candidate's median time and its median per-round ratio to onnxruntime (only same-round
ratios compare on a loaded host). Not run by the tests.

    git show HEAD:edge_infer/engine/backends/cpu/kernels/conv_depthwise.c > /tmp/old_dw.c
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.dw_ab \\
        --batch 1 --threads 2 --rounds 41 --variant /tmp/old_dw.c
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.alternating import first_runs_checked, rotated

#: name -> (channels, input side, stride) of MobileNetV2's depthwise layers (pads 1)
LAYERS = {
    "f1_32@112": (32, 112, 1),
    "f2_96@112s2": (96, 112, 2),
    "f3_144@56": (144, 56, 1),
    "f4_144@56s2": (144, 56, 2),
    "f5_192@28": (192, 28, 1),
    "f7_192@28s2": (192, 28, 2),
    "f8_384@14": (384, 14, 1),
    "f12_576@14": (576, 14, 1),
    "f14_576@14s2": (576, 14, 2),
    "f15_960@7": (960, 7, 1),
}


def ort_session(
    w: np.ndarray, b: np.ndarray, xs: tuple, os_: tuple, s: int, threads: int, prof: str = ""
) -> Any:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node(
                "Conv", ["x", "w", "b"], ["c"], pads=[1] * 4, strides=[s, s], group=xs[1]
            ),
            helper.make_node("Clip", ["c", "lo", "hi"], ["y"]),
        ],
        "dw",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, xs)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, os_)],
        [
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(b, "b"),
            numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
            numpy_helper.from_array(np.array(6.0, np.float32), "hi"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # spinning onnxruntime threads steal our cores between its runs (in one process)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if prof:
        opts.enable_profiling = True
        opts.profile_file_prefix = prof
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def ort_node_us(sess: Any, feeds: dict[str, np.ndarray], rounds: int) -> dict[str, float]:
    """onnxruntime's own profile of ``rounds`` runs (after 5 unprofiled-warm-up ones): the
    median kernel time (us) of each op type (the one-node model's Conv and the layout
    reorders onnxruntime puts around it, which in a whole model run once at its ends)."""
    for _ in range(5 + rounds):
        sess.run(None, feeds)
    events = json.loads(Path(sess.end_profiling()).read_text())
    by_op: dict[str, list[float]] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            by_op.setdefault(op, []).append(float(e["dur"]))
    return {op: float(np.median(d[5:] or d)) for op, d in by_op.items()}


def side_library(source: Path, out_dir: Path, kernel: str = "conv_depthwise") -> Any:
    """``source`` (a kernels/<kernel>.c) compiled alone with the engine's flags and headers."""
    from edge_infer.engine.backends.cpu import native

    target = out_dir / f"{kernel}_variant.so"
    flags = native._flags()
    cmd = [native._compiler() or "cc", *flags, f"-I{native.KERNELS}", "-o", str(target)]
    subprocess.run([*cmd, str(source)], check=True)
    lib = ctypes.CDLL(str(target))
    fn = getattr(lib, f"{kernel}_f32")
    fn.argtypes = [ctypes.POINTER(native.ARGS[f"{kernel}_f32"])]
    fn.restype = None
    return lib


@contextlib.contextmanager
def calls_into(lib: Any, kernel: str = "conv_depthwise") -> Iterator[None]:
    """While bound inside: the tactic's native calls run ``lib``'s <kernel>_f32."""
    from edge_infer.engine.backends.cpu import native

    real = native.NativeCall
    task = ctypes.cast(getattr(lib, f"{kernel}_task"), ctypes.c_void_p).value

    class SideCall(real):  # type: ignore[misc, valid-type]
        def __init__(self, name: str, fields: Any, keep: tuple[Any, ...]) -> None:
            super().__init__(name, fields, keep)
            if name == f"{kernel}_f32":  # the other kernels' calls stay this tree's
                self._fn = getattr(lib, name)
                self.__dict__["task"] = (task, ctypes.addressof(self.args))

    native.NativeCall = SideCall  # type: ignore[misc]
    try:
        yield
    finally:
        native.NativeCall = real  # type: ignore[misc]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=41)
    p.add_argument("--layers", nargs="*", default=list(LAYERS))
    p.add_argument("--variant", type=Path, default=None, help="another conv_depthwise.c")
    p.add_argument("--repeat", type=int, default=1, help="calls per timed run")
    args = p.parse_args()

    from edge_infer.engine.backends.cpu.parallel import WorkPool
    from edge_infer.engine.backends.cpu.program import ScratchPool
    from edge_infer.engine.backends.cpu.tactics.cpu_depthwise import DepthwiseNative
    from edge_infer.engine.backends.cpu.threads import set_thread_budget, single_threaded_blas
    from edge_infer.engine.tactics.base import ConvSpec

    set_thread_budget(args.threads)
    pool = WorkPool(args.threads) if args.threads > 1 else None
    if pool is not None:
        single_threaded_blas()
    tmp = tempfile.TemporaryDirectory(prefix="dw-ab-")
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
        candidates = [("ours", None), *([("variant", side)] if side is not None else [])]
        for key, lib in candidates:
            out = np.zeros(os_, np.float32)
            ctx = calls_into(lib) if lib is not None else contextlib.nullcontext()
            with ctx:
                run = DepthwiseNative(spec).bind([x, w, b], [out], ScratchPool(pool))
            runs[key] = run
            outs[key] = out
        sess = ort_session(w, b, xs, os_, s, args.threads)
        feeds = {"x": x}
        ref = sess.run(None, feeds)[0]
        runs["onnxruntime"] = lambda s=sess, f=feeds: s.run(None, f)
        first_runs_checked(name, runs, outs, ref)
        if args.repeat > 1:
            runs = {k: (lambda r=r: [r() for _ in range(args.repeat)]) for k, r in runs.items()}
        times = rotated(runs, args.rounds)
        ort_t = np.array(times["onnxruntime"])
        line = f"{name:14s} b{args.batch}"
        for key in runs:
            t = np.array(times[key])
            ratio = np.median(t / ort_t)
            line += f"  {key} {np.median(t) * 1e6 / args.repeat:7.1f} us ({ratio:.3f})"
        prof = ort_session(w, b, xs, os_, s, args.threads, f"{tmp.name}/ort")
        nodes = ort_node_us(prof, feeds, args.rounds)
        line += "  ORT nodes: " + " ".join(f"{k} {v:.1f}" for k, v in nodes.items())
        if side is not None:
            line += f"  ours/variant {np.median(np.array(times['ours']) / times['variant']):.3f}"
        print(line, flush=True)
    if pool is not None:
        pool.close()
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
