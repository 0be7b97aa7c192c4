"""qpointwise_native against qconv_native on the 1x1 QConv layers of a real INT8 engine, in
ONE process, alternating.

The engine (e.g. one ``bench/int8_vs_ort.py`` built in its ``--work`` folder) is loaded once
to collect its QConv layers' specs (real weights, scales, epilogues); each distinct 1x1 layer
that qpointwise_native's kernel can run (its cin / positions limits ignored) is bound by both
tactics on random int8 inputs (signed, or [0, 127] as after a relu with ``--nonnegative``),
both checked against the reference op bit for bit, then timed in rounds of ``--runs`` calls
alternating the sides (``--workers`` threads). Per layer: the minimum per side (robust to
other jobs loading the machine) and the ratio. ``--x-range``: each layer's inputs signed or
in [0, 127] as its spec's x_range says (the engine's u8 and signed tiles as in the model);
``--cpu-time`` (with one worker): each call timed by the thread's CPU time, so that what
other jobs take from a loaded host is left out. ``--kernels DIR`` builds both sides from a
kernels folder (conv_int8.c, conv_int8_pw.c, pool.c, args.c) instead of the library;
``--cold MB``: that much memory read before each call (untimed), so that the layer's weights
come from memory as in a whole model (whose weights outgrow the caches). ``--kernels-b DIR``
adds a third side, qpointwise_native on that folder's conv_int8_pw.c (a change to it against
``--kernels``, e.g. the kernels at HEAD from ``git archive``); per layer then also the median
over rounds of the per-round ratio b / qpw (``med``), robust where the host's speed drifts
between rounds, and for all layers its sum weighted by qpw's time x count.

Run:
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/qpw_layer_ab.py \\
        --engine /tmp/int8-vs-ort/mobilenetv2-b1-int8.engine --rounds 4 --runs 5
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _pointwise(spec: Any) -> bool:
    """qpointwise_native's applicability with its cin / positions limits lifted."""
    from edge_infer.engine.backends.cpu.tactics import cpu_qpointwise as qp

    old = (qp.MIN_CIN, qp.MAX_POSITIONS)
    qp.MIN_CIN, qp.MAX_POSITIONS = 0, 1 << 40
    try:
        return qp.QPointwiseNative.applicable(spec)
    finally:
        qp.MIN_CIN, qp.MAX_POSITIONS = old


def _specs(engine: str) -> list[Any]:
    """The QConvSpec of every qconv_native or qpointwise_native layer the engine binds."""
    from edge_infer.engine.backends.cpu.tactics import cpu_qconv, cpu_qpointwise
    from edge_infer.engine.runtime import Engine

    specs: list[Any] = []
    classes = (cpu_qconv.QConvNative, cpu_qpointwise.QPointwiseNative)
    inits = [c.__init__ for c in classes]

    def spy(init: Any) -> Any:
        def wrapped(self: Any, spec: Any) -> None:
            init(self, spec)
            specs.append(spec)

        return wrapped

    for c, init in zip(classes, inits, strict=True):
        c.__init__ = spy(init)  # type: ignore[method-assign]
    try:
        Engine.load(engine).create_context()
    finally:
        for c, init in zip(classes, inits, strict=True):
            c.__init__ = init  # type: ignore[method-assign]
    return specs


def _library(folder: Path) -> Any:
    """conv_int8.c, conv_int8_pw.c, pool.c and args.c of ``folder`` as a library (ctypes)."""
    from edge_infer.engine.backends.cpu import native

    cc = native._compiler()
    if cc is None:
        raise SystemExit("no C compiler")
    target = Path(tempfile.mkdtemp(prefix="qpw-ab-")) / "k.so"
    names = ("conv_int8.c", "conv_int8_pw.c", "pool.c", "args.c")
    subprocess.run(
        [cc, *native._flags(), "-o", str(target), *(str(folder / f) for f in names)], check=True
    )
    lib = ctypes.CDLL(str(target))
    for name in ("qconv_split_f32", "qconv_int8_f32", "qpw_int8_f32"):
        getattr(lib, name).restype = None
        getattr(lib, name).argtypes = [ctypes.POINTER(native.ARGS[name])]
    lib.qconv_int8_tile.restype = ctypes.c_long
    lib.qconv_int8_tile.argtypes = [ctypes.POINTER(native.ARGS["qconv_int8_f32"])]
    lib.qpw_int8_path.restype = ctypes.c_long
    lib.qpw_int8_path.argtypes = []
    lib.pool_create.restype = ctypes.c_void_p
    lib.pool_create.argtypes = [ctypes.c_long, ctypes.c_long]
    lib.pool_run.restype = None
    lib.pool_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
    lib.pool_destroy.restype = None
    lib.pool_destroy.argtypes = [ctypes.c_void_p]
    return lib


def _cold_bests(
    runs: dict[str, Any], rounds: int, per_round: int, clock: Any, mb: int
) -> dict[str, list[float]]:
    """round_bests with ``mb`` MB read before each call, untimed: the layer's weights (and
    everything else) come from memory as in a model whose weights outgrow the caches."""
    flush = np.ones(mb << 17)  # float64
    per: dict[str, list[float]] = {s: [] for s in runs}
    for r in range(rounds):
        for side in list(runs)[:: 1 if r % 2 else -1]:
            best = float("inf")
            for _ in range(per_round):
                flush.sum()
                t0 = clock()
                runs[side]()
                best = min(best, clock() - t0)
            per[side].append(best)
    return per


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", required=True)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--runs", type=int, default=10, help="calls per round and side")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--nonnegative", action="store_true", help="int8 inputs in [0, 127]")
    p.add_argument("--x-range", action="store_true", help="inputs signed as each x_range")
    p.add_argument("--cpu-time", action="store_true", help="the thread's CPU time (1 worker)")
    p.add_argument("--only", default="", help="layers whose key contains this text")
    p.add_argument(
        "--cold", type=int, default=0, help="MB read before each call (untimed): cold caches"
    )
    p.add_argument("--kernels-b", help="a second kernels folder: its qpointwise_native too")
    p.add_argument(
        "--kernels", help="a kernels folder to build both sides from (default: the library)"
    )
    args = p.parse_args(argv)
    if args.cpu_time and args.workers != 1:
        p.error("--cpu-time needs --workers 1")

    from bench.qconv_layer_ab import random_inputs, round_bests
    from edge_infer.engine.backends.cpu import native
    from edge_infer.engine.backends.cpu.parallel import WorkPool
    from edge_infer.engine.backends.cpu.program import ScratchPool
    from edge_infer.engine.backends.cpu.tactics.cpu_qconv import QConvNative
    from edge_infer.engine.backends.cpu.tactics.cpu_qpointwise import QPointwiseNative
    from edge_infer.engine.ops.quantize import qconv

    specs = [s for s in _specs(args.engine) if _pointwise(s)]
    libs = {"qconv": native.library(), "qpw": native.library()}
    if args.kernels:
        libs["qconv"] = libs["qpw"] = _library(Path(args.kernels))
    if args.kernels_b:
        libs["qpw_b"] = _library(Path(args.kernels_b))
    tactics = {"qconv": QConvNative, "qpw": QPointwiseNative, "qpw_b": QPointwiseNative}
    pool = WorkPool(args.workers) if args.workers > 1 else None
    rng = np.random.default_rng(0)
    keys = [(s.x_shape, s.cout, s.activation, s.residual) for s in specs]
    totals = dict.fromkeys(libs, 0.0)
    med_total = 0.0  # qpw's time x the median b / qpw ratio, x count
    try:
        for k, (spec, key) in enumerate(zip(specs, keys, strict=True)):
            if keys.index(key) != k or args.only not in str(key):
                continue
            lo = 0 if args.nonnegative else -128
            if args.x_range and spec.x_range is not None:
                lo = 0 if spec.x_range[0] >= 0 else -128
            inputs = random_inputs(spec, rng, lo)
            want = qconv(*inputs, **spec.attrs())
            runs = {}
            for side, lib in libs.items():
                native.library = lambda lib=lib: lib  # type: ignore[assignment]
                out = np.zeros(spec.out_shape, want.dtype)
                run = tactics[side](spec).bind(inputs, [out], ScratchPool(pool))
                run()
                if not np.array_equal(out, want):
                    raise SystemExit(f"{side}: {key} differs from the reference")
                runs[side] = run
            clock = time.thread_time if args.cpu_time else time.perf_counter
            if args.cold:
                rb = _cold_bests(runs, args.rounds, args.runs, clock, args.cold)
            else:
                rb = round_bests(runs, args.rounds, args.runs, clock)
            best = {side: min(v) for side, v in rb.items()}
            n = keys.count(key)
            for side in totals:
                totals[side] += n * best[side]
            b = ""
            if "qpw_b" in best:
                med = statistics.median(y / x for x, y in zip(rb["qpw"], rb["qpw_b"], strict=True))
                med_total += n * best["qpw"] * med
                ratio = best["qpw_b"] / best["qpw"]
                b = f"  qpw_b {best['qpw_b'] * 1e6:7.1f} us  b/qpw {ratio:.3f} med {med:.3f}"
            print(
                f"{key!s:64s} x{n}  qconv {best['qconv'] * 1e6:7.1f} us  qpw "
                f"{best['qpw'] * 1e6:7.1f} us  {best['qpw'] / best['qconv']:.3f}{b}",
                flush=True,
            )
    finally:
        if pool is not None:
            pool.close()
    b = ""
    if "qpw_b" in totals:
        b = (
            f", qpw_b {totals['qpw_b'] * 1e3:.3f} ms, b/qpw {totals['qpw_b'] / totals['qpw']:.3f}"
            f" (med {med_total / totals['qpw']:.3f})"
        )
    print(
        f"all (x count): qconv {totals['qconv'] * 1e3:.3f} ms, qpw {totals['qpw'] * 1e3:.3f} "
        f"ms, qpw/qconv {totals['qpw'] / max(totals['qconv'], 1e-12):.3f}{b}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
