"""Where the INT8 time goes, per layer: our INT8 engine's layer profile beside onnxruntime's
profiler on its quantized model (static QDQ per-channel), both as ``bench/int8_vs_ort.py``
builds them (same ``--work`` folder: engines and models are reused).

A layer of ours is matched to onnxruntime's node by the ONNX Conv it holds: onnxruntime's
fused QLinearConv nodes are named after the float model's Conv (plus a suffix such as
``_quant``). Our layers finish their activation in the conv's epilogue; onnxruntime runs it
as nodes of its own (SiLU: QLinearSigmoid and QLinearMul), named after the module as the
Conv is (``/model.2/cv1/act/Sigmoid`` beside ``/model.2/cv1/conv/Conv``): those are its
"ORT act µs", and ours/ORT compares with conv and activation together. The last table sums
onnxruntime's time by op type. Kernel work per layer, profilers on: data for kernel work, not
a latency claim.

Run (2 threads, BLAS unthrottled):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/int8_layer_profile.py \
        --rows mobilenetv2-b1 mobilenetv2-b8 --work /tmp/int8-vs-ort
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.engine_table import MODELS, _load_model, parse_row
from bench.int8_vs_ort import _build, row_arguments, work_folder
from bench.layer_profile import conv_kinds, ort_profile


def _conv_of(node: str, convs: list[str]) -> str | None:
    """The float model's Conv an onnxruntime node computes (the longest name it starts with)."""
    hits = [c for c in convs if node.startswith(c)]
    return max(hits, key=len) if hits else None


def _act_of(node: str, convs: list[str]) -> str | None:
    """The float model's Conv whose activation an onnxruntime node computes: a node of the
    module's ``act`` (``M/act/...`` beside the Conv ``M/conv/Conv``)."""
    for c in convs:
        module, sep, _ = c.rpartition("/conv/")
        if sep and node.startswith(f"{module}/act/"):
            return c
    return None


def profile_row(row: str, work: Path, args: argparse.Namespace) -> str:
    from edge_infer.engine.backends import get_backend
    from edge_infer.engine.benchmark import set_threads
    from edge_infer.engine.runtime import Engine

    set_threads(args.threads)
    get_backend("cpu").configure(cores=args.threads)
    engine, q_path, feeds = _build(row, work, args)
    fp32 = _load_model(MODELS[parse_row(row)[0]], work)
    kinds = conv_kinds(onnx.load(str(fp32)))
    convs = sorted(kinds)
    ours = Engine.load(str(engine)).profile_layers(feeds, iterations=args.runs)
    theirs = ort_profile(q_path, feeds, args.threads, args.runs)
    ort_by_conv: dict[str, float] = {}
    act_by_conv: dict[str, float] = {}
    by_op: dict[str, list[float]] = {}
    other_ort = 0.0
    for node, (us, op) in theirs.items():
        acc = by_op.setdefault(op, [0.0, 0])
        acc[0] += us
        acc[1] += 1
        conv = _conv_of(node, convs)
        act = None if conv is not None else _act_of(node, convs)
        if conv is not None:
            ort_by_conv[conv] = ort_by_conv.get(conv, 0.0) + us
        elif act is not None:
            act_by_conv[act] = act_by_conv.get(act, 0.0) + us
        else:
            other_ort += us
    lines = [
        f"## {row}: INT8 per layer (µs per inference, profilers on), {args.threads} threads",
        "",
        "| layer | kind | tactic | ours µs | ORT conv µs | ORT act µs | ours/ORT |",
        "|---|---|---|---|---|---|---|",
    ]
    by_kind: dict[str, list[float]] = {}
    other_ours = 0.0
    for layer in ours:
        # a horizontally merged layer computes several of the model's convs: onnxruntime's
        # time is that of all of them
        convs = [m for m in layer["members"] if m in kinds and m in ort_by_conv]
        conv = convs[0] if convs else None
        ort_us = sum(ort_by_conv[c] for c in convs) if convs else None
        act_us = sum(act_by_conv.get(c, 0.0) for c in convs)
        if conv is None or ort_us is None:
            other_ours += layer["time_us"]
            continue
        kind = kinds[conv]
        acc = by_kind.setdefault(kind, [0.0, 0.0, 0])
        acc[0] += layer["time_us"]
        acc[1] += ort_us + act_us
        acc[2] += 1
        ratio = layer["time_us"] / (ort_us + act_us) if ort_us + act_us else float("nan")
        lines.append(
            f"| {conv}{f' (+{len(convs) - 1} merged)' if len(convs) > 1 else ''} | {kind} | "
            f"{layer.get('tactic')} | {layer['time_us']:.0f} | "
            f"{ort_us:.0f} | {act_us:.0f} | {ratio:.2f} |"
        )
    lines += [
        "",
        "| kind | layers | ours µs | ORT µs (conv + act) | ours/ORT |",
        "|---|---|---|---|---|",
    ]
    for kind, (o, t, n) in sorted(by_kind.items(), key=lambda kv: -kv[1][0]):
        lines.append(f"| {kind} | {n} | {o:.0f} | {t:.0f} | {o / t:.2f} |")
    lines.append(f"| other (not a matched conv) | | {other_ours:.0f} | {other_ort:.0f} | |")
    total_ours = sum(layer["time_us"] for layer in ours)
    lines.append(f"| total | | {total_ours:.0f} | {sum(v[0] for v in by_op.values()):.0f} | |")
    lines += ["", "| onnxruntime op | nodes | µs |", "|---|---|---|"]
    for op, (us, n) in sorted(by_op.items(), key=lambda kv: -kv[1][0]):
        lines.append(f"| {op} | {n} | {us:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    row_arguments(p, "mobilenetv2-b1")
    p.add_argument("--runs", type=int, default=30)
    args: Any = p.parse_args(argv)
    work = work_folder(args)
    for row in args.rows:
        print(profile_row(row, work, args), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
