"""Binding choices of the FP32 tactics A/B in one engine, one process: one program, three
states bound with different class-level switches of the tactics (``--switch
Class.attr=value`` for the "new" state; "old" and "old2" keep the defaults given by
``--base Class.attr=value``), whole inferences in rotating order round by round, every layer
timed. Reports the chosen layers' and the whole inference's medians and median per-round
ratios new/old, new/old2, old2/old (the noise). ``--kernel K --old A.c --new B.c``: the
old states' calls of kernels/K.c bound to a side library built from A.c, the new state's to
one from B.c (bench.dw_ab.side_library); ``--keep-below X``: chains.KEEP_BELOW at build
(e.g. 10: every chain that is not given up kept, to compare chain kernels); ``--cpu``: thread
CPU time instead of wall time (with ``--threads 1``: steadier on a shared host). Not run by
the tests.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.mnv_fp32_ab \\
        --base OcVecNative.plain_in_place=0 --switch OcVecNative.plain_in_place=1
    git show HEAD:edge_infer/engine/backends/cpu/kernels/conv_chain.c > /tmp/old_chain.c
    cp edge_infer/engine/backends/cpu/kernels/conv_chain.c /tmp/new_chain.c
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.mnv_fp32_ab \\
        --kernel conv_chain --old /tmp/old_chain.c --new /tmp/new_chain.c
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from bench.dw_ab import calls_into, side_library
from bench.kernel_engine_ab import MODELS, ratio

CLASSES = {
    "DepthwiseNative": "edge_infer.engine.backends.cpu.tactics.cpu_depthwise",
    "OcVecNative": "edge_infer.engine.backends.cpu.tactics.cpu_ocvec",
    "ChainNative": "edge_infer.engine.backends.cpu.tactics.cpu_chain",
    "PointwiseNative": "edge_infer.engine.backends.cpu.tactics.cpu_pointwise",
}


@contextlib.contextmanager
def switched(settings: list[str]) -> Iterator[None]:
    """The class attributes ``Class.attr=int`` set, restored afterwards."""
    import importlib

    saved = []
    for item in settings:
        target, value = item.split("=")
        cls_name, attr = target.split(".")
        cls = getattr(importlib.import_module(CLASSES[cls_name]), cls_name)
        saved.append((cls, attr, cls.__dict__.get(attr)))
        setattr(cls, attr, type(getattr(cls, attr))(int(value)))
    try:
        yield
    finally:
        for cls, attr, old in reversed(saved):
            setattr(cls, attr, old)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=MODELS, default="mobilenetv2")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--base", action="append", default=[])
    p.add_argument("--switch", action="append", default=[])
    p.add_argument("--layers", default="")
    p.add_argument("--kernel", default="", help="kernels/<kernel>.c bound to --old / --new")
    p.add_argument("--old", type=Path, help="the old states' source of --kernel")
    p.add_argument("--new", type=Path, help="the new state's source of --kernel")
    p.add_argument("--all-chains", action="store_true", help="every chain kept, untimed")
    p.add_argument(
        "--two-builds",
        action="store_true",
        help="the new state from a second engine built under --switch (its own choices)",
    )
    p.add_argument(
        "--keep-below", type=float, default=0.0, help="chains.KEEP_BELOW at build (0: as is)"
    )
    p.add_argument("--cpu", action="store_true", help="thread CPU time (for --threads 1)")
    args = p.parse_args()

    import edge_infer
    from edge_infer.engine.backends import get_backend
    from edge_infer.zoo import build_model

    name, chw, kw = MODELS[args.model]
    work = Path(tempfile.mkdtemp(prefix="mnv-ab-"))
    path = work / "model.onnx"
    onnx.save(build_model(args.model, batch=None, **kw), path)
    x = np.random.default_rng(0).random((args.batch, *chw), dtype=np.float32)
    from edge_infer.engine.backends.cpu import chains

    if args.keep_below:
        chains.KEEP_BELOW = args.keep_below
    if args.all_chains:  # every chain the chain tactic takes, untimed

        def chain_wins(signature: str, tactics: list, *rest: Any, **kw: Any) -> tuple:
            return tactics[1].name, {}

        chains.tune_chain = chain_wins  # type: ignore[assignment]
    prog2: Any = None
    with switched(args.base):
        engine = edge_infer.build(str(path), None, shapes={name: x.shape})
        get_backend(engine.backend_name).configure(cores=args.threads)
        prog = engine.program(args.batch)
        old_ctx: Any = contextlib.nullcontext()
        new_ctx: Any = contextlib.nullcontext()
        if args.kernel:
            (work / "old").mkdir()
            (work / "new").mkdir()
            old_ctx = calls_into(side_library(args.old, work / "old", args.kernel), args.kernel)
            new_ctx = calls_into(side_library(args.new, work / "new", args.kernel), args.kernel)
        with old_ctx:
            states = {"old": prog.new_state(), "old2": prog.new_state()}
        if args.two_builds:  # the new state from an engine built under --switch
            with switched(args.switch):
                engine2 = edge_infer.build(str(path), None, shapes={name: x.shape})
                prog2 = engine2.program(args.batch)
                with new_ctx:
                    states["new"] = prog2.new_state()
        else:
            with switched(args.switch), new_ctx:
                states["new"] = prog.new_state()
    for what, pr in (("", prog), (" (new)", prog2 if args.two_builds else None)):
        graph = getattr(pr, "graph", None)
        kept = [] if graph is None else graph.meta.get("chains", [])
        print(f"chains{what}:", " ".join(e["members"][0].split("/")[1] for e in kept))
    progs = {k: prog2 if k == "new" and args.two_builds else prog for k in states}
    outs = {
        k: {o: np.array(v) for o, v in progs[k].run(s, {name: x}).items()}
        for k, s in states.items()
    }
    for o, v in outs["old"].items():
        err = float(np.max(np.abs(outs["new"][o] - v)) / (np.max(np.abs(v)) + 1e-30))
        print(f"output {o}: new vs old max relative difference {err:.2e}")
    names = [n for n in states["new"].names if n in states["old"].names]
    layer_t = {k: {n: [] for n in states[k].names} for k in states}
    whole: dict[str, list[float]] = {k: [] for k in states}
    order = ["old", "new", "old2"]
    clock = time.thread_time if args.cpu else time.perf_counter
    for r in range(args.rounds + 2):
        for k in order[r % 3 :] + order[: r % 3]:
            s = states[k]
            progs[k]._copy_inputs(s, {name: x})
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
        if args.layers and not any(f in n for f in args.layers.split(",")):
            continue
        o, nw, o2 = (layer_t[k][n] for k in ("old", "new", "old2"))
        print(
            f"{n:40s} {tactics.get(n, '?')!s:16s} old {np.median(o) * 1e6:7.0f} us"
            f" new {np.median(nw) * 1e6:7.0f} us new/old {ratio(nw, o):.3f}"
            f" new/old2 {ratio(nw, o2):.3f} old2/old {ratio(o2, o):.3f}"
        )
    o, nw, o2 = whole["old"], whole["new"], whole["old2"]
    print(
        f"{args.model} b{args.batch} {args.threads} threads {args.rounds} rounds:"
        f" whole old {np.median(o) * 1e3:.2f} ms new {np.median(nw) * 1e3:.2f} ms"
        f" new/old {ratio(nw, o):.3f} new/old2 {ratio(nw, o2):.3f} old2/old {ratio(o2, o):.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
