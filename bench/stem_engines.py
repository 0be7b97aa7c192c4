"""Whole FP32 engines with and without ``stem_native`` beside onnxruntime, in one process:
ResNet-50 and MobileNetV2 (and the other zoo models with ``--models``) at each ``--batch``.

Two engines per model and batch are built (tuned on this host): one with every CPU tactic,
one with ``stem_native`` taken out of the table (what the engine was before it); the stem
layer's tactic in each is printed. Then each round runs the two engines and onnxruntime once,
in an order that rotates round by round; the report is each one's median time and its median
ratio to onnxruntime over the rounds (only same-round ratios compare on a loaded host).
Not run by the tests.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/stem_engines.py \\
        --models resnet50 mobilenetv2 --batch 1 8 --threads 2 --rounds 20
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from alternating import rotated

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: model → (input name, C, H, W, zoo keyword arguments)
MODELS: dict[str, tuple[str, tuple[int, int, int], dict[str, Any]]] = {
    "resnet50": ("input", (3, 224, 224), {}),
    "mobilenetv2": ("input", (3, 224, 224), {}),
    "yolov8n": ("images", (3, 320, 320), {"imgsz": 320, "fold_bn": True}),
}


def _build(path: Path, name: str, shape: tuple[int, ...], threads: int, stem: bool) -> Any:
    import edge_infer
    from edge_infer.engine.backends.cpu import tactics

    table = tactics.CPU_TACTICS["conv"]
    if not stem:
        tactics.CPU_TACTICS["conv"] = tuple(t for t in table if t.name != "stem_native")
    try:
        return edge_infer.build(str(path), None, shapes={name: shape})
    finally:
        tactics.CPU_TACTICS["conv"] = table


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="*", default=["resnet50", "mobilenetv2"])
    p.add_argument("--batch", nargs="*", type=int, default=[1, 8])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=20)
    args = p.parse_args()

    import onnx
    import onnxruntime as ort

    from edge_infer.engine.backends import get_backend
    from edge_infer.zoo import build_model

    get_backend("cpu").configure(cores=args.threads)
    work = Path(tempfile.mkdtemp(prefix="stem_engines_"))
    for model in args.models:
        name, chw, kw = MODELS[model]
        path = work / f"{model}.onnx"
        onnx.save(build_model(model, batch=None, **kw), path)
        for batch in args.batch:
            shape = (batch, *chw)
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            runs: dict[str, Any] = {}
            outs: dict[str, np.ndarray] = {}
            for label, stem in (("ours", True), ("ours w/o stem", False)):
                engine = _build(path, name, shape, args.threads, stem)
                plan = engine.plan(batch)
                first = [
                    (n["name"], (n.get("meta") or {}).get("tactic"))
                    for n in plan["nodes"]
                    if name in n["inputs"]
                ]
                print(f"{model} b{batch} {label}: stem layer tactics {first}")
                ctx = engine.create_context()
                runs[label] = lambda c=ctx, f={name: x}: c.execute(f)
                outs[label] = np.array(next(iter(ctx.execute({name: x}).values())))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = args.threads
            opts.inter_op_num_threads = 1
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            runs["onnxruntime"] = lambda s=sess, f={name: x}: s.run(None, f)
            ref = sess.run(None, {name: x})[0]
            for label, got in outs.items():
                err = float(np.abs(got - ref).max() / max(1e-6, np.abs(ref).max()))
                print(f"  {label}: max rel diff vs onnxruntime {err:.1e}")
            names = list(runs)
            times = rotated(runs, args.rounds)
            ort_t = np.array(times["onnxruntime"])
            for k in names:
                t = np.array(times[k])
                print(
                    f"  {model} b{batch} {k:14s} {np.median(t) * 1e3:8.2f} ms"
                    f"  vs ORT {np.median(t / ort_t):.3f}  (min {t.min() * 1e3:.2f} ms)"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
