"""ResNet-50 (or another zoo classifier) end to end, in one process: our FP32 engine with
winograd_native's thread split as it is now (one block split by output channels where blocks of
tiles would leave a thread idle) and as it was (blocks of 16 tiles only), beside
onnxruntime — each round runs the three once, in rotating order; the report is each one's
median and its median ratio to onnxruntime over the rounds (same-round ratios: the host's
speed drifts). The engine is built once (tactics timed as usual); both of our contexts run
the same tactics and kernels, only the Winograd layers' split differs.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/resnet_ab.py \\
        --batch 1 --threads 2 --rounds 30
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from alternating import rotated

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet50")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=30)
    args = p.parse_args()

    import onnxruntime as ort

    import edge_infer
    from edge_infer.engine.backends import get_backend
    from edge_infer.engine.backends.cpu.tactics.cpu_winograd import WinogradNative
    from edge_infer.engine.benchmark import set_threads
    from edge_infer.engine.runtime import Engine
    from edge_infer.zoo import build_model

    set_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, engine_path = Path(tmp) / "m.onnx", Path(tmp) / "m.engine"
        onnx.save(build_model(args.model, batch=None), onnx_path)
        shapes = {"input": (args.batch, 3, 224, 224)}
        edge_infer.build(str(onnx_path), str(engine_path), shapes=shapes)
        engine = Engine.load(str(engine_path))
        get_backend(engine.backend_name).configure(cores=args.threads)
        feeds = {"input": np.random.default_rng(0).random((args.batch, 3, 224, 224), np.float32)}
        new = engine.create_context()
        shared = WinogradNative.shared_tiles
        WinogradNative.shared_tiles = 0  # as before: blocks of 16 tiles, split by tiles
        try:
            old = engine.create_context()
        finally:
            WinogradNative.shared_tiles = shared
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        runs: dict[str, Any] = {
            "ours (now)": lambda: new.execute(feeds),
            "ours (16-tile split)": lambda: old.execute(feeds),
            "onnxruntime": lambda: sess.run(None, feeds),
        }
        program = engine.program(engine.plan_batch_for(args.batch))
        tactics = [layer.node.meta.get("tactic") for layer in program.layers]
        for fn in runs.values():
            for _ in range(3):
                fn()
        names = list(runs)
        times = rotated(runs, args.rounds)  # (three runs)
    ort_t = np.array(times["onnxruntime"])
    print(f"{args.model} b{args.batch}, {args.threads} threads, {args.rounds} rounds")
    print(f"  winograd_native layers: {sum(t == 'winograd_native' for t in tactics)}")
    for k in names:
        t = np.array(times[k])
        print(
            f"  {k:22s} median {np.median(t) * 1e3:7.2f} ms  min {t.min() * 1e3:7.2f} ms"
            f"  vs onnxruntime {np.median(t / ort_t):.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
