"""INT8 depthwise / 1x1 kernels before and after on a real INT8 engine's layers: one thread,
CPU time of the calling thread (a loaded host's preemptions do not count), in ONE process,
alternating.

The engine (one ``bench/int8_vs_ort.py`` built in its ``--work`` folder) is loaded once to
collect the specs of the layers bound to ``--tactic`` (qdepthwise_native or
qpointwise_native: real weights, scales, epilogues); each distinct layer is bound on random
int8 inputs twice, on the kernel library compiled from ``--old`` and from ``--new`` (whole
kernels folders), checked against the reference op bit for bit and old against new, then
timed in ``--rounds`` rounds of ``--runs`` calls a side, alternating. Reported: the fastest
call of each side and the median of the rounds' new/old ratios of their fastest calls.
``--workers 2`` binds each side with a 2-thread pool (wall time then; the host's load counts).

Run (a kernels folder at an older commit as ``--old``):
    mkdir -p /tmp/k_old && git archive HEAD edge_infer/engine/backends/cpu/kernels \\
        | tar -x --strip-components=5 -C /tmp/k_old
    .venv/bin/python bench/qlayer_cpu_ab.py --engine /tmp/int8-vs-ort/mobilenetv2-b1-int8.engine \\
        --old /tmp/k_old --new edge_infer/engine/backends/cpu/kernels --tactic qdepthwise_native
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.qconv_layer_ab import round_bests

_DTYPES = {"fp32": np.float32, "fp16": np.float16, "int8": np.int8}


def _tactic_class(name: str) -> Any:
    from edge_infer.engine.backends.cpu.tactics import cpu_qdepthwise, cpu_qpointwise

    return {
        "qdepthwise_native": cpu_qdepthwise.QDepthwiseNative,
        "qpointwise_native": cpu_qpointwise.QPointwiseNative,
    }[name]


def _specs(engine: str, cls: Any) -> list[Any]:
    """The spec of every layer the engine binds to ``cls``, in order."""
    from edge_infer.engine.runtime import Engine

    specs: list[Any] = []
    init = cls.__init__

    def spy(self: Any, spec: Any) -> None:
        init(self, spec)
        specs.append(spec)

    cls.__init__ = spy
    try:
        Engine.load(engine).create_context()
    finally:
        cls.__init__ = init
    return specs


def _bind_on(folder: Path, bind: Any) -> Any:
    """``bind()`` with the kernel library compiled from ``folder``."""
    from edge_infer.engine.backends.cpu import native

    with native.kernels_from(folder):
        return bind()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", required=True)
    p.add_argument("--old", required=True, help="kernels folder of the 'old' side")
    p.add_argument("--new", required=True, help="kernels folder of the 'new' side")
    p.add_argument("--tactic", default="qdepthwise_native")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--runs", type=int, default=20, help="calls per round and side")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--only", nargs="*", default=None, help="layers whose key contains these")
    args = p.parse_args(argv)

    from edge_infer.engine.backends.cpu.parallel import WorkPool
    from edge_infer.engine.backends.cpu.program import ScratchPool
    from edge_infer.engine.ops.quantize import qconv

    cls = _tactic_class(args.tactic)
    specs = _specs(args.engine, cls)
    rng = np.random.default_rng(0)
    keys = [
        (s.x_shape, s.cout, s.kernel, s.strides, s.residual, s.activation, s.out_precision)
        for s in specs
    ]
    clock = time.thread_time if args.workers == 1 else time.perf_counter
    pool = WorkPool(args.workers) if args.workers > 1 else None
    totals = {"old": 0.0, "new": 0.0}
    for k, (spec, key) in enumerate(zip(specs, keys, strict=True)):
        if keys.index(key) != k:
            continue
        if args.only and not any(o in str(key) for o in args.only):
            continue
        if np.dtype(spec.x_dtype) == np.int8:
            x = rng.integers(-128, 128, spec.x_shape).astype(np.int8)
        else:
            x = (rng.standard_normal(spec.x_shape) * 40 * spec.x_scale).astype(spec.x_dtype)
        z = None
        if spec.residual != "none":
            z = rng.integers(-128, 128, spec.out_shape).astype(spec.z_dtype)
        inputs = [x, spec.weight, spec.w_scale, spec.bias, z]
        want = qconv(*inputs, **spec.attrs())
        runs, outs = {}, {}
        for side in ("old", "new"):
            out = np.zeros(spec.out_shape, _DTYPES[spec.out_precision])
            run = _bind_on(
                Path(getattr(args, side)),
                lambda out=out, spec=spec, inputs=inputs: cls(spec).bind(
                    inputs, [out], ScratchPool(pool)
                ),
            )
            run()
            if not np.array_equal(out, want.astype(out.dtype)):
                raise SystemExit(f"{side}: {key} differs from the reference")
            runs[side], outs[side] = run, out
        if not np.array_equal(outs["old"], outs["new"]):
            raise SystemExit(f"{key}: old and new differ")
        per = round_bests(runs, args.rounds, args.runs, clock)
        med = {s: min(v) for s, v in per.items()}
        ratio = statistics.median(a / b for a, b in zip(per["new"], per["old"], strict=True))
        n = keys.count(key)
        for side in totals:
            totals[side] += n * med[side]
        print(
            f"{key[0]!s:18s} {key[2]!s:6s} s{key[3][0]} {spec.activation or '-':5s} x{n}  "
            f"old {med['old'] * 1e6:7.1f} us  new {med['new'] * 1e6:7.1f} us  {ratio:.3f}",
            flush=True,
        )
    print(
        f"every layer (x count): old {totals['old'] * 1e3:.3f} ms, new "
        f"{totals['new'] * 1e3:.3f} ms, new/old {totals['new'] / totals['old']:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
