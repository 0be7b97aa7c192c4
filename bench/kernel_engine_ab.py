"""One kernel's old and new source in a whole engine, one process: three states of one program,
"new" (this tree's kernels) and "old" / "old2" (the kernel's native calls bound to another build
of its source, ``--old FILE.c``: bench.dw_ab.side_library), whole inferences in rotating order
round by round, every layer timed. The report: the chosen layers' medians and median per-round
ratios new/old, new/old2 and old2/old (old2/old shows the noise), and the same for the whole
inference; ``--new FILE.c``: the new state bound to a side library too (the engine's own
library and a side one may differ by a few per cent in the same code). ``--cpu``: thread CPU
time instead of wall time (one thread: steadier on a shared host). ``--force-stem``: the
few-channel stem convs on ``stem_native`` (direct_native not applicable there at build) so
that conv_stem.c is what runs. Not run by the tests.

    git show HEAD:edge_infer/engine/backends/cpu/kernels/conv_stem.c > /tmp/old_stem.c
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.kernel_engine_ab \\
        --kernel conv_stem --old /tmp/old_stem.c --batch 8 --threads 1 --cpu --force-stem

``--engine FILE``: an engine file as built (an INT8 one from ``bench/int8_vs_ort.py``'s work
folder), its batch and random inputs, instead of ``--model``'s FP32 build:

    git show HEAD~1:edge_infer/engine/backends/cpu/kernels/conv_int8.c > /tmp/old_int8.c
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.kernel_engine_ab \\
        --engine /tmp/int8-vs-ort/resnet50-b1-int8.engine --kernel qconv_int8 \\
        --old /tmp/old_int8.c --threads 1 --cpu --rounds 100
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from bench.dw_ab import calls_into, side_library

#: model name → (input name, C, H, W, build_model keywords)
MODELS: dict[str, tuple[str, tuple[int, int, int], dict[str, Any]]] = {
    "mobilenetv2": ("input", (3, 224, 224), {}),
    "resnet50": ("input", (3, 224, 224), {}),
    "yolov8n": ("images", (3, 320, 320), {"imgsz": 320, "fold_bn": True}),
}


def force_stem() -> None:
    """direct_native refuses convs of at most stem_native's MAX_CIN input channels."""
    from edge_infer.engine.backends.cpu.tactics import cpu_direct, cpu_stem

    applicable = cpu_direct.DirectNative.applicable.__func__  # type: ignore[attr-defined]

    def few_channels_elsewhere(cls: type, spec: Any) -> bool:
        return bool(spec.cin > cpu_stem.MAX_CIN and applicable(cls, spec))

    cpu_direct.DirectNative.applicable = classmethod(few_channels_elsewhere)  # type: ignore[assignment]


def ratio(a: list[float], b: list[float]) -> float:
    return float(np.median(np.array(a) / np.array(b)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=MODELS, default="mobilenetv2")
    p.add_argument("--engine", help="an engine file instead of --model's FP32 build")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--kernel", default="conv_stem", help="kernels/<kernel>.c, <kernel>_f32")
    p.add_argument("--old", type=Path, required=True, help="the kernel's other source")
    p.add_argument(
        "--new",
        type=Path,
        help="the new state's source too (a side library like old's: no bias between the "
        "engine's own library and a side one)",
    )
    p.add_argument("--cpu", action="store_true", help="thread CPU time (for --threads 1)")
    p.add_argument("--force-stem", action="store_true")
    p.add_argument("--layers", default="features.0/,features.1/,features.2/,features.3/,model.0/")
    args = p.parse_args()

    import edge_infer
    from edge_infer.engine.backends import get_backend
    from edge_infer.engine.runtime import Engine
    from edge_infer.zoo import build_model

    work = Path(tempfile.mkdtemp(prefix="kernel-ab-"))
    if args.engine is not None:  # an engine file as it is (an INT8 one: bench/int8_vs_ort.py)
        engine = Engine.load(args.engine)
        feeds = engine.random_feeds()
        args.model, args.batch = Path(args.engine).stem, next(iter(feeds.values())).shape[0]
    else:
        name, chw, kw = MODELS[args.model]
        path = work / "model.onnx"
        onnx.save(build_model(args.model, batch=None, **kw), path)
        x = np.random.default_rng(0).random((args.batch, *chw), dtype=np.float32)
        feeds = {name: x}
        if args.force_stem:
            force_stem()
        engine = edge_infer.build(str(path), None, shapes={name: x.shape})
    get_backend(engine.backend_name).configure(cores=args.threads)
    prog = engine.program(engine.plan_batch_for(args.batch))
    lib = side_library(args.old, work, args.kernel)
    if args.new is None:
        states = {"new": prog.new_state()}
    else:
        (work / "new").mkdir()
        new_lib = side_library(args.new, work / "new", args.kernel)
        with calls_into(new_lib, args.kernel):
            states = {"new": prog.new_state()}
    with calls_into(lib, args.kernel):
        states["old"] = prog.new_state()
        states["old2"] = prog.new_state()
    for s in states.values():
        prog._release(s)
    clock: Callable[[], float] = time.thread_time if args.cpu else time.perf_counter
    names = states["new"].names
    layer_t: dict[str, dict[str, list[float]]] = {k: {n: [] for n in names} for k in states}
    whole: dict[str, list[float]] = {k: [] for k in states}
    order = ["old", "new", "old2"]
    for r in range(args.rounds + 2):  # the first 2 rounds warm up
        for k in order[r % 3 :] + order[: r % 3]:
            s = states[k]
            prog._copy_inputs(s, feeds)
            t00 = clock()
            for n, run in zip(s.names, s.runs, strict=True):
                t0 = clock()
                run()
                if r >= 2:
                    layer_t[k][n].append(clock() - t0)
            if r >= 2:
                whole[k].append(clock() - t00)
    tactics = {layer.node.name: getattr(layer, "tactic", "?") for layer in prog.layers}
    for n in names:
        if not any(f in n for f in args.layers.split(",")):
            continue
        o, nw, o2 = (layer_t[k][n] for k in ("old", "new", "old2"))
        print(
            f"{n:40s} {tactics.get(n, '?')!s:16s} old {np.median(o) * 1e6:7.0f} us"
            f" new {np.median(nw) * 1e6:7.0f} us new/old {ratio(nw, o):.3f}"
            f" new/old2 {ratio(nw, o2):.3f} old2/old {ratio(o2, o):.3f}"
        )
    o, nw, o2 = whole["old"], whole["new"], whole["old2"]
    print(
        f"{args.model} b{args.batch} {args.threads} threads {args.rounds} rounds"
        f" ({'cpu' if args.cpu else 'wall'}): whole old {np.median(o) * 1e3:.2f} ms"
        f" new {np.median(nw) * 1e3:.2f} ms new/old {ratio(nw, o):.3f}"
        f" new/old2 {ratio(nw, o2):.3f} old2/old {ratio(o2, o):.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
