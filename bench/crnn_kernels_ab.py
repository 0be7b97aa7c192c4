"""The CRNN (zoo, width 128) whole model on two kernel trees, INT8 and FP32 engines, beside
onnxruntime's quantized model, in ONE process alternating: for a loaded host, where only
ratios measured side by side mean anything.

Sides: ``int8_old`` / ``fp32_old`` (the same engine files bound to the native kernels compiled
from ``--old-kernels``, a copy of ``backends/cpu/kernels`` at an older commit), ``int8_new`` /
``fp32_new`` (this tree) and ``ortq``. Each round times every side ``--runs`` times in a
rotating order and keeps each side's median; ratios are medians of the per-round ratios
(min-max after them). ``--old-lstm-packing``: bind the old sides' LSTMs with the weight
layout of recurrent.c before its 16-column halves ([groups][k][32]), for kernel trees older
than that change. ``--cpu-time`` (with ``--threads 1``): the calling thread's CPU time.

Run (engines and models built as bench/int8_vs_ort.py builds them, in ``--work``):
    mkdir -p /tmp/k_old && git archive HEAD edge_infer/engine/backends/cpu/kernels \\
        | tar -x --strip-components=5 -C /tmp/k_old
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/crnn_kernels_ab.py \\
        --rows crnn-w128-b1 crnn-w128-b8 --work /tmp/crnn-ab --old-kernels /tmp/k_old
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.engine_table import MODELS, _load_model, parse_row
from bench.int8_vs_ort import (
    _build,
    _ort,
    _ours,
    alternate,
    check_timing_arguments,
    row_arguments,
    timing_arguments,
    work_folder,
)


def _gates32(m: np.ndarray, hidden: int) -> np.ndarray:
    """The LSTM weights as recurrent.c read them before its halves: [groups][k][32] (i, o,
    f, c of 8 units a group), in a buffer of the current layout's shape (same size)."""
    k, groups = m.shape[1], -(-hidden // 8)
    padded = np.zeros((4, groups * 8, k), np.float32)
    padded[:, :hidden] = m.reshape(4, hidden, k)
    packed = np.ascontiguousarray(padded.reshape(4, groups, 8, k).transpose(1, 3, 0, 2))
    return packed.reshape(groups, 2, k, 16)


@contextlib.contextmanager
def _old_packing(on: bool) -> Iterator[None]:
    from edge_infer.engine.backends.cpu.tactics import cpu_recurrent

    saved = cpu_recurrent.pack_gates
    if on:
        cpu_recurrent.pack_gates = _gates32  # type: ignore[assignment]
    try:
        yield
    finally:
        cpu_recurrent.pack_gates = saved  # type: ignore[assignment]


def _fp32_engine(row: str, work: Path, threads: int) -> Path:
    import edge_infer
    from edge_infer.engine.options import BuildOptions

    name, batch = parse_row(row)
    model = MODELS[name]
    path = work / f"{row}-fp32.engine"
    if not path.exists():
        opts = BuildOptions(
            shapes={model.input_name: (batch, *model.chw)},
            timing_cache=str(work / f"{name}.fp32-timing.json"),
            backend_options={"threads": threads},
        )
        edge_infer.build(str(_load_model(model, work)), str(path), options=opts)
    return path


def _ratio(med: dict[str, list[float]], a: str, b: str) -> str:
    r = [x / y for x, y in zip(med[a], med[b], strict=True)]
    return f"{statistics.median(r):.3f} ({min(r):.2f}-{max(r):.2f})"


def bench_row(row: str, work: Path, args: argparse.Namespace) -> None:
    from edge_infer.engine.backends import get_backend
    from edge_infer.engine.benchmark import set_threads

    set_threads(args.threads)
    get_backend("cpu").configure(cores=args.threads)
    int8, q_path, feeds = _build(row, work, args)
    contexts: dict[str, Any] = {}
    for label, engine in (("int8", int8), ("fp32", _fp32_engine(row, work, args.threads))):
        with _old_packing(args.old_lstm_packing):
            contexts[f"{label}_old"] = _ours(engine, Path(args.old_kernels))
        contexts[f"{label}_new"] = _ours(engine, None)
    session = _ort(q_path, args.threads)
    sides: dict[str, Callable[[], Any]] = {
        k: (lambda c=c: c.execute(feeds)) for k, c in contexts.items()
    }
    sides["ortq"] = lambda: session.run(None, feeds)
    for label in ("int8", "fp32"):
        old, new = sides[f"{label}_old"](), sides[f"{label}_new"]()
        diff = max(float(np.abs(old[k] - new[k]).max()) for k in old)
        print(f"{row} {label}: max |new - old| = {diff:.3g}")
    med, _ = alternate(sides, args)
    ms = ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in med.items())
    print(f"{row} ms: {ms}")
    print(
        f"  new/old: int8 {_ratio(med, 'int8_new', 'int8_old')}, "
        f"fp32 {_ratio(med, 'fp32_new', 'fp32_old')}"
    )
    print(
        f"  int8/fp32: old {_ratio(med, 'int8_old', 'fp32_old')}, "
        f"new {_ratio(med, 'int8_new', 'fp32_new')}; int8/ortq: old "
        f"{_ratio(med, 'int8_old', 'ortq')}, new {_ratio(med, 'int8_new', 'ortq')}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    row_arguments(p, "crnn-w128-b1")
    timing_arguments(p, rounds=15)
    p.add_argument("--old-kernels", required=True, help="kernels folder of the 'old' sides")
    p.add_argument("--old-lstm-packing", action="store_true")
    args = p.parse_args(argv)
    check_timing_arguments(p, args)
    work = work_folder(args)
    for row in args.rows:
        bench_row(row, work, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
