"""conv_int8.c before / after on the QConv layers of a real INT8 engine, one thread, in ONE
process, alternating.

The engine (e.g. one ``bench/int8_vs_ort.py`` built in its ``--work`` folder) is loaded once
to collect its QConv layers' specs (real weights, scales, epilogues); each distinct layer is
bound twice on random int8 inputs, once on conv_int8.c compiled from ``--old`` and once from
``--new`` (each with that folder's pool.c and args.c), checked against the reference op (bit
for bit; within one int8 step on a rounding half under an exp-based activation, as the qconv
tests allow) and old against new bit for bit, then timed in rounds of ``--runs`` calls
alternating the sides. The minimum per side is robust to other jobs loading the machine
(kernel work, one thread: not the engine's latency). The cpu_qconv.py of this checkout binds
both sides.

Run (a kernels folder at an older commit as ``--old``):
    mkdir -p /tmp/k_old && git archive HEAD~1 edge_infer/engine/backends/cpu/kernels \\
        | tar -x --strip-components=5 -C /tmp/k_old
    .venv/bin/python bench/qconv_layer_ab.py --engine /tmp/int8-vs-ort/resnet50-b1-int8.engine \\
        --old /tmp/k_old --new edge_infer/engine/backends/cpu/kernels
Kernels from before 3865c7a (qconv_terms.pair_terms) need ``--old-natural``: they pair every
two consecutive terms, and a paired order's leftover terms would wrap in int16 there.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


_DTYPES = {"fp32": np.float32, "fp16": np.float16, "int8": np.int8}


def random_inputs(spec: Any, rng: np.random.Generator, lo: int = -128) -> list[Any]:
    """qconv's inputs for ``spec`` on random data: an int8 x in [lo, 127], the layer's own
    weights, scales and bias, an int8 residual where it has one (else None)."""
    x = rng.integers(lo, 128, spec.x_shape).astype(np.int8)
    z = None
    if spec.residual != "none":
        z = rng.integers(-128, 128, spec.out_shape).astype(np.int8)
    return [x, spec.weight, spec.w_scale, spec.bias, z]


def _library(folder: Path, target: Path) -> Any:
    """conv_int8.c, pool.c and args.c of ``folder`` as a library (ctypes)."""
    from edge_infer.engine.backends.cpu import native

    cc = native._compiler()
    if cc is None:
        raise SystemExit("no C compiler")
    sources = [str(folder / f) for f in ("conv_int8.c", "pool.c", "args.c")]
    subprocess.run([cc, *native._flags(), "-o", str(target), *sources], check=True)
    lib = ctypes.CDLL(str(target))
    for name in ("qconv_split_f32", "qconv_int8_f32"):
        getattr(lib, name).restype = None
        getattr(lib, name).argtypes = [ctypes.POINTER(native.ARGS[name])]
    return lib


#: activations through float32 exp: conv_int8.c's may differ from numpy's in the last bit
#: (one int8 step on a rounding half; the qconv tests' tolerance)
_EXP_ACTS = ("sigmoid", "silu", "tanh")


def _matches(got: np.ndarray, want: np.ndarray, activation: str) -> bool:
    """``got`` is the reference's ``want``: bit for bit, or within the exp activations'
    tolerance (int8: one step on at most 1 % of the outputs; else rtol 1e-6 / 1e-3)."""
    if activation not in _EXP_ACTS:
        return bool(np.array_equal(got, want))
    g, w = got.astype(np.float64), want.astype(np.float64)
    if got.dtype == np.int8:
        diff = np.abs(g - w)
        return bool(diff.max() <= 1 and (diff > 0).mean() <= 0.01)
    rtol = 1e-6 if got.dtype == np.float32 else 1e-3
    return bool(np.allclose(g, w, rtol=rtol, atol=1e-6))


def round_bests(
    runs: dict[str, Any], rounds: int, per_round: int, clock: Any = time.perf_counter
) -> dict[str, list[float]]:
    """Each side's fastest call (seconds, by ``clock``) in each of ``rounds`` rounds of
    ``per_round`` calls a side, the order of the sides reversed every other round."""
    per: dict[str, list[float]] = {s: [] for s in runs}
    for r in range(rounds):
        for side in list(runs)[:: 1 if r % 2 else -1]:
            best = float("inf")
            for _ in range(per_round):
                t0 = clock()
                runs[side]()
                best = min(best, clock() - t0)
            per[side].append(best)
    return per


def best_times(runs: dict[str, Any], rounds: int, per_round: int) -> dict[str, float]:
    """Each side's fastest call (seconds) over :func:`round_bests`' rounds."""
    return {s: min(v) for s, v in round_bests(runs, rounds, per_round).items()}


def _specs(engine: str) -> list[Any]:
    """The QConvSpec of every qconv_native layer the engine binds, in order."""
    from edge_infer.engine.backends.cpu.tactics import cpu_qconv
    from edge_infer.engine.runtime import Engine

    specs: list[Any] = []
    init = cpu_qconv.QConvNative.__init__

    def spy(self: Any, spec: Any) -> None:
        init(self, spec)
        specs.append(spec)

    cpu_qconv.QConvNative.__init__ = spy  # type: ignore[method-assign]
    try:
        Engine.load(engine).create_context()
    finally:
        cpu_qconv.QConvNative.__init__ = init  # type: ignore[method-assign]
    return specs


def _real_inputs(engine: str, model: str) -> list[tuple[Any, np.ndarray, Any]]:
    """(spec, input, residual input) of every qconv_native layer as the engine runs it on
    ``bench/engine_table.py``'s validation frames of ``model`` (the activations' real
    ranges: after a SiLU most bytes lie in [-30, 120], not over the whole int8 range)."""
    from bench.engine_table import MODELS, synth_frames
    from edge_infer.engine.backends.cpu.tactics import cpu_qconv
    from edge_infer.engine.runtime import Engine

    seen: list[tuple[Any, list[Any]]] = []
    bind = cpu_qconv.QConvNative.bind

    def spy(self: Any, inputs: list[Any], outputs: list[Any], scratch: Any) -> Any:
        run = bind(self, inputs, outputs, scratch)
        got: list[Any] = []
        seen.append((self.spec, got))

        def first() -> None:
            if not got:
                z = inputs[4] if len(inputs) > 4 and inputs[4] is not None else None
                got.extend([np.array(inputs[0]), None if z is None else np.array(z)])
            run()

        return first

    cpu_qconv.QConvNative.bind = spy  # type: ignore[method-assign]
    try:
        eng = Engine.load(engine)
        name = next(iter(eng.random_feeds()))
        batch = eng.random_feeds()[name].shape[0]
        m = MODELS[model]
        frames = np.stack(synth_frames(batch, m.chw, "val")).astype(np.float32)
        eng.create_context().execute({name: frames})
    finally:
        cpu_qconv.QConvNative.bind = bind  # type: ignore[method-assign]
    return [(spec, got[0], got[1]) for spec, got in seen if got]


def _one_order() -> Any:
    """QConvNativeOC with the layer's one order of the terms (no order per block)."""
    from edge_infer.engine.backends.cpu.tactics.cpu_qconv import QConvNativeOC

    class OneOrder(QConvNativeOC):
        def _block_order(self, prep: dict[str, Any]) -> None:
            return None

    return OneOrder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", required=True)
    p.add_argument("--old", required=True, help="kernels folder of the 'old' side")
    p.add_argument("--new", required=True, help="kernels folder of the 'new' side")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--runs", type=int, default=10, help="calls per round and side")
    p.add_argument(
        "--nonnegative",
        action="store_true",
        help="int8 inputs in [0, 127] (as after a relu: ResNet-50's inner layers)",
    )
    p.add_argument(
        "--float-input",
        action="store_true",
        help="the float-input layers only (the stem: its input quantized in the layout)",
    )
    p.add_argument(
        "--tie-every",
        type=int,
        default=7,
        help="with --float-input: every this many values on a half step (the rest random)",
    )
    p.add_argument(
        "--real-inputs",
        metavar="MODEL",
        help="each layer's input as the engine computes it on this model's validation "
        "frames (bench/engine_table.py), instead of random bytes",
    )
    p.add_argument(
        "--old-natural",
        action="store_true",
        help="bind the old side in the terms' own order (no qconv_terms.pair_terms: for kernels "
        "before it, which read every consecutive pair of terms)",
    )
    p.add_argument(
        "--new-tactic",
        choices=["qconv_native", "qconv_native_oc"],
        default="qconv_native",
        help="the tactic binding the new side (qconv_native_oc: the AVX2 output-channel tiles)",
    )
    p.add_argument(
        "--old-tactic",
        choices=["qconv_native", "qconv_native_oc"],
        default="qconv_native",
        help="the tactic binding the old side",
    )
    p.add_argument(
        "--old-one-order",
        action="store_true",
        help="bind the old side's qconv_native_oc with one order of the terms for the layer "
        "(for kernels before the order per block of channels, BLOCK_ORDER)",
    )
    p.add_argument(
        "--kernel",
        type=int,
        help="only the layers of this kernel size (3: the 3x3 layers)",
    )
    p.add_argument(
        "--layers",
        type=int,
        nargs="+",
        help="only these of the distinct layers (their indices, as printed: 0 the first)",
    )
    p.add_argument(
        "--cpu-time",
        action="store_true",
        help="time by the thread's CPU time, each side's median over the rounds of its "
        "fastest call a round (on a loaded host)",
    )
    args = p.parse_args(argv)

    from edge_infer.engine.backends.cpu import native
    from edge_infer.engine.backends.cpu.program import ScratchPool
    from edge_infer.engine.backends.cpu.tactics.cpu_qconv import QConvNative, QConvNativeOC
    from edge_infer.engine.ops.quantize import qconv

    one_order = _one_order() if args.old_one_order else None
    real = _real_inputs(args.engine, args.real_inputs) if args.real_inputs else None
    specs = [r[0] for r in real] if real else _specs(args.engine)
    tmp = Path(tempfile.mkdtemp(prefix="qconv-ab-"))
    libs = {s: _library(Path(getattr(args, s)), tmp / f"{s}.so") for s in ("old", "new")}
    rng = np.random.default_rng(0)
    keys = [(s.x_shape, s.cout, s.kernel, s.strides, s.residual, s.group) for s in specs]
    totals = {"old": 0.0, "new": 0.0}
    distinct = list(dict.fromkeys(keys))
    for k, (spec, key) in enumerate(zip(specs, keys, strict=True)):
        if keys.index(key) != k or (np.dtype(spec.x_dtype) == np.int8) == args.float_input:
            continue  # a layer seen before / not of the input type asked for
        if args.layers is not None and distinct.index(key) not in args.layers:
            continue
        if args.kernel and spec.kernel != (args.kernel, args.kernel):
            continue
        x = rng.integers(0 if args.nonnegative else -128, 128, spec.x_shape).astype(np.int8)
        if args.float_input:  # over the int8 range and past it, some values on half steps
            x = (rng.uniform(-140, 140, spec.x_shape) * spec.x_scale).astype(np.float32)
            t = x.flat[:: args.tie_every]
            x.flat[:: args.tie_every] = ((np.round(t / spec.x_scale) + 0.5) * spec.x_scale).astype(
                np.float32
            )
        z = None
        if spec.residual != "none":
            z = rng.integers(-128, 128, spec.out_shape).astype(np.int8)
        if real:
            x, z = real[k][1], real[k][2] if spec.residual != "none" else None
        inputs = [x, spec.weight, spec.w_scale, spec.bias, z]
        want = qconv(*inputs, **spec.attrs())
        runs, outs = {}, {}
        for side, lib in libs.items():
            native.library = lambda lib=lib: lib  # type: ignore[assignment]
            out = np.zeros(spec.out_shape, _DTYPES[spec.out_precision])
            tactic = args.new_tactic if side == "new" else args.old_tactic
            cls = QConvNativeOC if tactic == "qconv_native_oc" else QConvNative
            if side == "old" and one_order is not None and cls is QConvNativeOC:
                cls = one_order
            bound = spec
            if side == "old" and args.old_natural:  # x_range past 254: the natural order
                bound = dataclasses.replace(spec, x_range=(-128, 127))
            run = cls(bound).bind(inputs, [out], ScratchPool(None))
            run()
            if not _matches(out, want.astype(out.dtype), spec.activation):
                raise SystemExit(f"{side}: {key} differs from the reference")
            runs[side], outs[side] = run, out
        if not np.array_equal(outs["old"], outs["new"]):
            raise SystemExit(f"{key}: old and new differ")
        if args.cpu_time:  # the thread's CPU time: what preemption by other jobs leaves out
            per = round_bests(runs, args.rounds, args.runs, time.thread_time)
            best = {side: float(np.median(v)) for side, v in per.items()}
        else:
            best = best_times(runs, args.rounds, args.runs)
        n = keys.count(key)
        for side in totals:
            totals[side] += n * best[side]
        print(
            f"{distinct.index(key):2d} {key[:5]!s:62s} x{n}  old {best['old'] * 1e6:7.0f} us  new "
            f"{best['new'] * 1e6:7.0f} us  {best['new'] / best['old']:.3f}",
            flush=True,
        )
    print(
        f"every {'float' if args.float_input else 'int8'}-input layer (x count): "
        f"old {totals['old'] * 1e3:.2f} ms, new "
        f"{totals['new'] * 1e3:.2f} ms, new/old {totals['new'] / totals['old']:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
