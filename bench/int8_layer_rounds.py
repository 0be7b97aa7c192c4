"""Per-layer INT8 time, ours against onnxruntime's quantized model, in rounds in ONE process.

``bench/int8_layer_profile.py`` profiles one side after the other, so a load change between
them skews every ratio. Here each round profiles our engine (``--runs`` iterations) and then
onnxruntime (``--runs`` runs, its profiler on for the whole session, each node's i-th event
being run i), and each layer's ratio is the median over the rounds of that round's ratio.
Engines and models as ``bench/int8_vs_ort.py`` builds them (same ``--work`` folder).
``--old-kernels DIR`` adds our engine on kernels compiled from DIR to each round (column
new/old). Kernel work per layer, profilers on: data for kernel work, not a latency claim.

Run (2 threads, BLAS unthrottled):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/int8_layer_rounds.py \
        --rows mobilenetv2-b1 --work /tmp/int8-vs-ort
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.engine_table import MODELS, _load_model, parse_row
from bench.int8_layer_profile import _conv_of
from bench.int8_vs_ort import _build, row_arguments, work_folder
from bench.layer_profile import conv_kinds, ort_session


def _ort_events(session: Any) -> dict[str, list[float]]:
    """Each node's kernel times (µs) in run order."""
    events = json.loads(Path(session.end_profiling()).read_text())
    durations: dict[str, list[float]] = defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            durations[e["name"][: -len("_kernel_time")]].append(float(e["dur"]))
    return durations


def _ours_profile(engine: Path, kernels: Path | None, feeds: Any, runs: int) -> list[dict]:
    from edge_infer.engine.backends.cpu import native
    from edge_infer.engine.runtime import Engine

    if kernels is None:
        return Engine.load(str(engine)).profile_layers(feeds, iterations=runs)
    with native.kernels_from(kernels):
        return Engine.load(str(engine)).profile_layers(feeds, iterations=runs)


def profile_row(row: str, work: Path, args: argparse.Namespace) -> str:
    from edge_infer.engine.backends import get_backend
    from edge_infer.engine.benchmark import set_threads

    set_threads(args.threads)
    get_backend("cpu").configure(cores=args.threads)
    engine, q_path, feeds = _build(row, work, args)
    fp32 = _load_model(MODELS[parse_row(row)[0]], work)
    kinds = conv_kinds(onnx.load(str(fp32)))
    convs = sorted(kinds)
    old = Path(args.old_kernels) if args.old_kernels else None
    ours: dict[str, list[float]] = defaultdict(list)  # conv (or layer name) -> per round
    olds: dict[str, list[float]] = defaultdict(list)
    info: dict[str, tuple[str, str]] = {}
    totals: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        session = ort_session(q_path, args.threads, str(Path(tmp) / "ort"))
        for _ in range(5):
            session.run(None, feeds)
        for r in range(args.rounds):
            sides = ["ours", "old"] if old else ["ours"]
            if r % 2:
                sides.reverse()
            for side in sides:
                layers = _ours_profile(engine, None if side == "ours" else old, feeds, args.runs)
                acc = ours if side == "ours" else olds
                total = 0.0
                for layer in layers:
                    conv = next((m for m in layer["members"] if m in kinds), None)
                    key = conv or layer["name"]
                    info[key] = (
                        kinds.get(conv, layer["op"]) if conv else layer["op"],
                        str(layer.get("tactic")),
                    )
                    acc[key].append(layer["time_us"])
                    total += layer["time_us"]
                totals[side].append(total)
                time.sleep(0.05)
            for _ in range(args.runs):
                session.run(None, feeds)
            time.sleep(0.05)
        durations = _ort_events(session)
    warm = 5
    ort_rounds: dict[str, list[float]] = defaultdict(lambda: [0.0] * args.rounds)
    for node, d in durations.items():
        conv = _conv_of(node, convs) or "other"
        d = d[warm:]
        for r in range(args.rounds):
            ort_rounds[conv][r] += statistics.median(d[r * args.runs : (r + 1) * args.runs])
    ort_total = [sum(v[r] for v in ort_rounds.values()) for r in range(args.rounds)]
    lines = [
        f"## {row}: INT8 per layer, {args.rounds} rounds x {args.runs} runs, "
        f"{args.threads} threads (µs: medians over rounds; ratio: median of rounds' ratios)",
        "",
        "| layer | kind | tactic | ours µs | ORT µs | ours/ORT | new/old |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = []
    other_ours = [0.0] * args.rounds
    for key, times in ours.items():
        if key not in ort_rounds or key == "other":
            for r, t in enumerate(times):
                other_ours[r] += t
            continue
        theirs = ort_rounds[key]
        ratio = statistics.median(a / b for a, b in zip(times, theirs, strict=True) if b > 0)
        no = ""
        if key in olds:
            no = f"{statistics.median(a / b for a, b in zip(times, olds[key], strict=True)):.3f}"
        rows.append(
            (statistics.median(times) - statistics.median(theirs), key, times, theirs, ratio, no)
        )
    for _, key, times, theirs, ratio, no in sorted(rows, reverse=True):
        kind, tactic = info[key]
        lines.append(
            f"| {key} | {kind} | {tactic} | {statistics.median(times):.0f} | "
            f"{statistics.median(theirs):.0f} | {ratio:.2f} | {no} |"
        )
    lines.append(
        f"| other (not a matched conv) | | | {statistics.median(other_ours):.0f} | "
        f"{statistics.median(ort_rounds['other']):.0f} | | |"
    )
    tr = statistics.median(a / b for a, b in zip(totals["ours"], ort_total, strict=True))
    no_total = ""
    if old:
        pairs = zip(totals["ours"], totals["old"], strict=True)
        no_total = f"{statistics.median(a / b for a, b in pairs):.3f}"
    lines.append(
        f"| total | | | {statistics.median(totals['ours']):.0f} | "
        f"{statistics.median(ort_total):.0f} | {tr:.3f} | {no_total} |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    row_arguments(p, "mobilenetv2-b1")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--old-kernels", default=None, help="kernels folder of the 'old' side")
    args: Any = p.parse_args(argv)
    work = work_folder(args)
    for row in args.rows:
        print(profile_row(row, work, args), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
