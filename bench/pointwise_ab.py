"""One 1×1 layer at a time: ``pointwise_native`` with the kernel of a git revision ("old")
and of the working tree ("new") beside onnxruntime's Conv on the same layer, in one process,
round by round (bench/alternating.py's way: a loaded machine slows all three alike).

"old" is kernels/conv_pointwise.c at ``--base`` compiled alone (with this tree's args.c:
the argument struct must not have changed) and swapped into the bound calls; both bind the
same tactic, so only the kernel differs. onnxruntime runs a one-Conv model (plus Clip or
Add for the fused activation or residual) at ORT_ENABLE_ALL with its profiler on: each
round's time is the kernel time of its non-reorder nodes (what bench/layer_profile.py
compares). Ours are wall times of the bound call (the pool's hand-off included).

Run (BLAS unthrottled):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.pointwise_ab \
        --layers f1p f2p --batches 1 8 --base HEAD
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bench.alternating import median_ratio

#: MobileNetV2's 1×1 layers on its large planes: (cin, cout, side, activation, residual)
LAYERS: dict[str, tuple[int, int, int, str, str]] = {
    "f1p": (32, 16, 112, "", "none"),  # features.1/project
    "f2e": (16, 96, 112, "clip", "none"),  # features.2/expand
    "f2p": (96, 24, 56, "", "none"),  # features.2/project
    "f3e": (24, 144, 56, "clip", "none"),  # features.3/expand (= features.4/expand)
    "f3p": (144, 24, 56, "", "pre"),  # features.3/project (+ residual)
    "f5e": (32, 192, 28, "clip", "none"),  # features.5/expand
    "f5p": (192, 32, 28, "", "pre"),  # features.5/project (+ residual)
    "f7p": (384, 64, 14, "", "pre"),  # features.8/project (+ residual)
    "f12e": (96, 576, 14, "clip", "none"),  # features.12/expand
    "f15e": (160, 960, 7, "clip", "none"),  # features.15/expand
    "f15p": (960, 160, 7, "", "pre"),  # features.15/project (+ residual)
    "f17p": (960, 320, 7, "", "none"),  # features.17/project
}
KERNEL = "edge_infer/engine/backends/cpu/kernels/conv_pointwise.c"


def old_library(base: str, tmp: Path, kernel: str = KERNEL) -> ctypes.CDLL:
    """``kernel`` (conv_pointwise.c) at git revision ``base`` (an absolute path: that file),
    compiled with this tree's headers."""
    from edge_infer.engine.backends.cpu import native

    src = tmp / f"{Path(kernel).stem}_old.c"
    if Path(kernel).is_absolute():  # a source file outside git
        src.write_text(Path(kernel).read_text())
    else:
        src.write_text(
            subprocess.run(
                ["git", "show", f"{base}:{kernel}"], capture_output=True, text=True, check=True
            ).stdout
        )
    lib = tmp / f"{Path(kernel).stem}_old.so"
    cmd = [
        "cc",
        *native._flags(),
        "-I",
        str(native.KERNELS),
        "-o",
        str(lib),
        str(src),
        str(native.KERNELS / "args.c"),
    ]
    subprocess.run(cmd, check=True)
    return ctypes.CDLL(str(lib))


def bound(
    spec: Any, ins: list, out: np.ndarray, pool: Any, lib: ctypes.CDLL | None, cls: Any = None
) -> Any:
    """The tactic ``cls`` (pointwise_native) bound; with ``lib`` its calls run ``lib``'s
    kernel instead."""
    from edge_infer.engine.backends.cpu import native
    from edge_infer.engine.backends.cpu.program import ScratchPool
    from edge_infer.engine.backends.cpu.tactics.cpu_pointwise import PointwiseNative

    real = native.NativeCall

    class OldCall(real):  # type: ignore[misc, valid-type]
        def __init__(self, name: str, fields: Any, keep: tuple) -> None:
            super().__init__(name, fields, keep)
            assert lib is not None
            self._fn = getattr(lib, name)
            wrapper = ctypes.cast(
                getattr(lib, name.removesuffix("_f32") + "_task"), ctypes.c_void_p
            )
            self.__dict__["task"] = (wrapper.value or 0, ctypes.addressof(self.args))

    if lib is not None:
        native.NativeCall = OldCall  # type: ignore[misc]
    try:
        return (cls or PointwiseNative)(spec).bind(ins, [out], ScratchPool(pool))
    finally:
        native.NativeCall = real  # type: ignore[misc]


def ort_model(
    cin: int, cout: int, side: int, act: str, res: str, b: int, w: np.ndarray, bias: np.ndarray
) -> onnx.ModelProto:
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [b, cin, side, side])]
    last = "c"
    if res != "none":
        inputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [b, cout, side, side]))
        nodes.append(helper.make_node("Add", [last, "z"], ["a"], name="add"))
        last = "a"
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias, "b")]
    if act == "clip":
        inits += [
            numpy_helper.from_array(np.float32(0), "lo"),
            numpy_helper.from_array(np.float32(6), "hi"),
        ]
        nodes.append(helper.make_node("Clip", [last, "lo", "hi"], ["r"], name="clip"))
        last = "r"
    nodes[-1].output[0] = "y"
    graph = helper.make_graph(
        nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def ort_session(
    shape: tuple[int, int, int, str, str],
    b: int,
    w: np.ndarray,
    bias: np.ndarray,
    threads: int,
    stem: Path,
) -> Any:
    """onnxruntime on a one-layer model of ``shape`` (ORT_ENABLE_ALL, ``threads`` intra-op
    threads not spinning: they would take our cores between its runs), its profiler on;
    the model and the profile are written at ``stem`` (+ batch and suffix)."""
    import onnxruntime as ort

    cin, cout, side, act, res = shape
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.enable_profiling = True
    opts.profile_file_prefix = f"{stem}_ort_{b}"
    path = Path(f"{stem}_{b}.onnx")
    onnx.save(ort_model(cin, cout, side, act, res, b, w, bias), path)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_kernel_times(sess: Any, rounds: int) -> list[float]:
    """Seconds per run of the last ``rounds`` runs: the kernel times of non-reorder nodes."""
    events = json.loads(Path(sess.end_profiling()).read_text())
    runs = [float(e["dur"]) * 1e-6 for e in events if e.get("name") == "model_run"]
    kernel = [
        (float(e["ts"]), float(e["dur"]) * 1e-6)
        for e in events
        if e.get("cat") == "Node"
        and e["name"].endswith("_kernel_time")
        and "Reorder" not in e.get("args", {}).get("op_name", "")
    ]
    starts = sorted(float(e["ts"]) for e in events if e.get("name") == "model_run")
    sums = [0.0] * len(starts)
    for ts, dur in kernel:
        i = int(np.searchsorted(starts, ts, side="right")) - 1
        sums[max(i, 0)] += dur
    assert len(sums) == len(runs)
    return sums[-rounds:]


def layer_case(
    shape: tuple[int, int, int, str, str], b: int
) -> tuple[Any, list[np.ndarray], np.ndarray, np.ndarray]:
    """A 1×1 layer of ``shape`` (cin, cout, side, activation, residual) at batch ``b``: its
    ConvSpec, its inputs (x, w, bias[, z]), random (seed 0), and its weights and bias."""
    from edge_infer.engine.tactics.base import ConvSpec

    cin, cout, side, act, res = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((b, cin, side, side)).astype(np.float32)
    w = (rng.standard_normal((cout, cin, 1, 1)) / np.sqrt(cin)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    z = rng.standard_normal((b, cout, side, side)).astype(np.float32)
    params = (0.0, 6.0) if act == "clip" else ()
    spec = ConvSpec(
        x.shape, (b, cout, side, side), w, bias, (1, 1), (0, 0, 0, 0), (1, 1), 1, act, params, res
    )
    return spec, [x, w, bias] + ([z] if res != "none" else []), w, bias


def layer(
    name: str, b: int, rounds: int, pool: Any, threads: int, old: ctypes.CDLL, tmp: Path
) -> dict:
    res = LAYERS[name][4]
    spec, ins, w, bias = layer_case(LAYERS[name], b)
    outs = {k: np.empty(spec.out_shape, np.float32) for k in ("old", "new")}
    runs = {
        "old": bound(spec, ins, outs["old"], pool, old),
        "new": bound(spec, ins, outs["new"], pool, None),
    }
    sess = ort_session(LAYERS[name], b, w, bias, threads, tmp / name)
    feeds = {"x": ins[0], **({"z": ins[3]} if res != "none" else {})}
    want = sess.run(None, feeds)[0]
    for k, r in runs.items():
        r()
        err = float(np.abs(outs[k] - want).max() / np.abs(want).max())
        assert err < 1e-4, f"{name} b{b} {k}: max diff {err:.1e}"
    for _ in range(3):
        for r in runs.values():
            r()
        sess.run(None, feeds)
    times: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(rounds):
        for k, r in runs.items():
            t0 = time.perf_counter()
            r()
            times[k].append(time.perf_counter() - t0)
        sess.run(None, feeds)
    times["ort"] = ort_kernel_times(sess, rounds)
    med = {k: round(float(np.median(v)) * 1e6) for k, v in times.items()}
    return {
        "layer": name,
        "batch": b,
        "us": med,
        "new/old": median_ratio(times["new"], times["old"]),
        "old/ort": median_ratio(times["old"], times["ort"]),
        "new/ort": median_ratio(times["new"], times["ort"]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", nargs="+", choices=LAYERS, default=list(LAYERS))
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--base", default="HEAD", help="git revision of the old kernel")
    p.add_argument("--out", help="JSON file for the rows")
    args = p.parse_args(argv)
    from edge_infer.engine.backends.cpu.parallel import WorkPool

    pool = WorkPool(args.threads) if args.threads > 1 else None
    rows = []
    try:
        with tempfile.TemporaryDirectory() as t:
            tmp = Path(t)
            old = old_library(args.base, tmp)
            print("| layer | batch | old µs | new µs | ORT µs | new/old | old/ORT | new/ORT |")
            print("|---|---|---|---|---|---|---|---|")
            for b in args.batches:
                for name in args.layers:
                    r = layer(name, b, args.rounds, pool, args.threads, old, tmp)
                    rows.append(r)
                    u = r["us"]
                    print(
                        f"| {name} | {b} | {u['old']} | {u['new']} | {u['ort']} | {r['new/old']} "
                        f"| {r['old/ort']} | {r['new/ort']} |",
                        flush=True,
                    )
    finally:
        if pool is not None:
            pool.close()
    print(f"\nload average at the end: {os.getloadavg()}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
