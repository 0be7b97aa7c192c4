"""A whole model, one built engine, several bound states in one process that differ only in
how one image's layers split between threads: ocvec's in-place projections by positions
("proj") or by output channels ("old": cpu_ocvec.SPATIAL_PLAIN). Full inferences alternate
between the states (rotating which goes first, so a loaded host slows them alike); the
report is each state's median time per layer kind and whole, the median of the per-round
ratios against the first state, and the outputs' largest difference. A state named twice
(``old2``) is a second copy: its own arena, so the copies' ratio shows what placement alone
does. Not run by the tests.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.split_ab \\
        --model mobilenetv2 --batch 1 --threads 2 --rounds 40 --states old,proj,old2,proj2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx

from bench.layer_profile import ZOO

#: the states: name -> in-place projections by positions
STATES = {"old": False, "proj": True}


def _kind(layer: object) -> str:
    tactic = str(getattr(layer, "tactic", None))
    name = getattr(getattr(layer, "node", None), "name", "")
    part = "project" if "project" in name else "expand" if "expand" in name else "dw"
    if tactic == "depthwise_native":
        return "depthwise"
    return f"{tactic}:{part}" if "native" in tactic else "other"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=ZOO, default="mobilenetv2")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--states", default="old,proj,old2,proj2")
    p.add_argument("--layers", action="store_true", help="each layer's ratios too")
    args = p.parse_args()

    import edge_infer
    from edge_infer.engine.backends import get_backend
    from edge_infer.engine.backends.cpu.tactics import cpu_ocvec
    from edge_infer.zoo import build_model

    input_name, chw, kw = ZOO[args.model]
    model = build_model(args.model, batch=None, **kw)
    x = np.random.default_rng(0).random((args.batch, *chw), dtype=np.float32)
    path = Path(tempfile.mkdtemp()) / "m.onnx"
    onnx.save(model, path)
    engine = edge_infer.build(str(path), None, shapes={input_name: x.shape})
    get_backend(engine.backend_name).configure(cores=args.threads)
    prog = engine.program(args.batch)
    names = args.states.split(",")
    states = {}
    for name in names:
        # a digit at the end: another copy of a state (its own arena: placement noise)
        cpu_ocvec.SPATIAL_PLAIN = STATES[name.rstrip("0123456789")]
        states[name] = prog.new_state()
    layers = {layer.node.name: layer for layer in prog.layers}
    times: dict[str, dict[str, list[float]]] = {k: defaultdict(list) for k in states}
    total: dict[str, list[float]] = {k: [] for k in states}
    outs = {}
    for r in range(args.rounds + 2):
        order = names[r % len(names) :] + names[: r % len(names)]
        for k in order:
            s = states[k]
            prog._copy_inputs(s, {input_name: x})
            t00 = time.perf_counter()
            for lname, run in zip(s.names, s.runs, strict=True):
                t0 = time.perf_counter()
                run()
                if r >= 2:
                    times[k][lname].append(time.perf_counter() - t0)
            if r >= 2:
                total[k].append(time.perf_counter() - t00)
            if r == 0:
                outs[k] = [np.array(s.views[v.name]) for _, v in prog.outputs]
            time.sleep(0.002)  # the last state's helper threads stop spinning
    kinds: dict[str, list[str]] = defaultdict(list)
    for lname in states[names[0]].names:
        kinds[_kind(layers.get(lname))].append(lname)
    base = names[0]
    print(f"{args.model} b{args.batch} {args.threads} threads, {args.rounds} rounds (us, medians)")
    for kind, members in sorted(kinds.items()):
        row = f"{kind:28s} ({len(members):2d})"
        b = np.sum([np.array(times[base][m]) for m in members], axis=0)
        for k in names:
            t = np.sum([np.array(times[k][m]) for m in members], axis=0)
            row += f"  {k} {np.median(t) * 1e6:7.0f}"
            if k != base:
                row += f" ({np.median(t / b):.3f})"
        print(row)
    row = f"{'whole':33s}"
    for k in names:
        row += f"  {k} {np.median(total[k]) * 1e3:7.3f} ms"
        if k != base:
            row += f" ({np.median(np.array(total[k]) / total[base]):.3f})"
    print(row)
    if args.layers:
        for lname in states[base].names:
            b = np.array(times[base][lname])
            row = f"{lname[:40]:40s} {_kind(layers.get(lname)):26s} {np.median(b) * 1e6:6.0f}"
            for k in names[1:]:
                row += f"  {k} {np.median(np.array(times[k][lname]) / b):.3f}"
            print(row)
    ref = outs[base]
    diff = max(float(np.max(np.abs(a - b))) for k in names for a, b in zip(outs[k], ref))
    print(f"largest output difference against {base}: {diff:.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
