"""An FP32 model's engine against onnxruntime in ONE process, alternating round by round.

The model (``bench.kernel_engine_ab.MODELS``) is built fresh in a temporary folder (no timing
cache: the tree's own kernels time their own tactics), onnxruntime runs the same ONNX file at
ORT_ENABLE_ALL with the same threads; the two are timed by ``bench.int8_vs_ort.alternate``
(rounds of ``--runs`` inferences a side in rotating order, 50 ms between sides so that
onnxruntime's spinning threads do not take our cores). Reports each side's median of its
per-round medians and the median, min and max of the per-round ratios ours/onnxruntime.
``--cpu-time``: the thread's CPU time (with ``--threads 1``: steadier on a shared host). To
compare two trees, run it in each with ``PYTHONPATH`` set to that tree, alternating
processes. Not run by the tests.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.fp32_vs_ort \\
        --model mobilenetv2 --batch 1 --threads 1 --cpu-time --rounds 40 --runs 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import onnx

from bench.int8_vs_ort import _ort, alternate, check_timing_arguments, timing_arguments
from bench.kernel_engine_ab import MODELS


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=MODELS, default="mobilenetv2")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    timing_arguments(p, rounds=40)
    args = p.parse_args(argv)
    check_timing_arguments(p, args)

    import edge_infer
    from edge_infer.engine.backends import get_backend
    from edge_infer.zoo import build_model

    name, chw, kw = MODELS[args.model]
    path = Path(tempfile.mkdtemp(prefix="fp32_vs_ort-")) / "model.onnx"
    onnx.save(build_model(args.model, batch=None, **kw), path)
    x = np.random.default_rng(0).random((args.batch, *chw), dtype=np.float32)
    get_backend("cpu").configure(cores=args.threads)
    context = edge_infer.build(str(path), None, shapes={name: x.shape}).create_context()
    sess = _ort(path, args.threads)
    ours_out = next(iter(context.execute({name: x}).values()))
    ort_out = sess.run(None, {name: x})[0]
    print("max rel diff", float(np.max(np.abs(ours_out - ort_out)) / np.max(np.abs(ort_out))))
    sides = {"ours": lambda: context.execute({name: x}), "ort": lambda: sess.run(None, {name: x})}
    medians, _ = alternate(sides, args)
    ratios = [a / b for a, b in zip(medians["ours"], medians["ort"], strict=True)]
    mode = "cpu" if args.cpu_time else "wall"
    print(
        f"{args.model} b{args.batch} t{args.threads} {mode}: ours "
        f"{statistics.median(medians['ours']):.3f} ms, ort {statistics.median(medians['ort']):.3f}"
        f" ms; ours/ort {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
