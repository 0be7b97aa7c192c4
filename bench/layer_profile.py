"""Where the time goes, per layer: our FP32 engine's layer profile beside onnxruntime's
profiler on the same model, grouped by convolution kind (depthwise, 1×1, full k×k, …).

Our side is ``Engine.profile_layers`` (median per layer); onnxruntime's is its own profiler
(``SessionOptions.enable_profiling``, ORT_ENABLE_ALL, same threads): each node's median
kernel time over the timed runs. The two take turns (``--rounds``): profiled one after the
other, minutes apart, they fell in different phases of a shared host (up to 1.5x apart). A
layer of ours is matched to onnxruntime's node by the ONNX Conv it holds (onnxruntime's
fused nodes keep the Conv's name), and both are put in the Conv's kind. Data for kernel
work, not a latency claim: each profiler adds overhead.

Run (BLAS unthrottled):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/layer_profile.py \
        --model mobilenetv2 --out bench/results/layer_profile_mobilenetv2.md
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx

ZOO = {
    "mobilenetv2": ("input", (3, 224, 224), {}),
    "resnet50": ("input", (3, 224, 224), {}),
    "yolov8n": ("images", (3, 320, 320), {"imgsz": 320, "fold_bn": True}),
    "crnn": ("image", (3, 32, 128), {"width": None}),
}


def conv_kinds(model: onnx.ModelProto) -> dict[str, str]:
    """Each Conv node's kind: "depthwise k×k", "1×1", "k×k (full)", "k×k (grouped)"."""
    weights = {i.name: i.dims for i in model.graph.initializer}
    kinds = {}
    for node in model.graph.node:
        if node.op_type != "Conv" or node.input[1] not in weights:
            continue
        cout, cin_g, kh, kw = list(weights[node.input[1]])
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        stride = next((list(a.ints) for a in node.attribute if a.name == "strides"), [1, 1])
        s = f"/s{stride[0]}" if stride[0] > 1 else ""
        if group > 1 and cin_g == 1 and group == cout:
            kinds[node.name] = f"depthwise {kh}×{kw}{s}"
        elif kh == kw == 1:
            kinds[node.name] = f"1×1{s}"
        else:
            kinds[node.name] = f"{kh}×{kw} {'grouped' if group > 1 else 'full'}{s}"
    return kinds


def ort_session(path: Path, threads: int, prefix: str) -> Any:
    """onnxruntime on ``path`` as the tables time it (ORT_ENABLE_ALL, ``threads`` intra-op
    threads), its profiler on, writing under ``prefix``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.enable_profiling = True
    opts.profile_file_prefix = prefix
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _ort_nodes(events: list[dict], skip: int) -> dict[str, tuple[float, str]]:
    """Median kernel time (µs) per onnxruntime node from its profile's events, the first
    ``skip`` runs (warm-up) left out, and each node's op type."""
    durations: dict[str, list[float]] = defaultdict(list)
    ops: dict[str, str] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            node = e["name"][: -len("_kernel_time")]
            durations[node].append(float(e["dur"]))
            ops[node] = e.get("args", {}).get("op_name", "?")
    return {n: (float(np.median(d[skip:] or d)), ops[n]) for n, d in durations.items()}


def ort_profile(path: Path, feeds: dict[str, np.ndarray], threads: int, runs: int) -> dict:
    """Median kernel time (µs) per onnxruntime node over the last ``runs`` of ``runs + 5``
    runs (the first 5 warm up), and each node's op type."""
    with tempfile.TemporaryDirectory() as tmp:
        sess = ort_session(path, threads, str(Path(tmp) / "ort"))
        for _ in range(5 + runs):
            sess.run(None, feeds)
        return _ort_nodes(json.loads(Path(sess.end_profiling()).read_text()), 5)


def profiles(
    path: Path, feeds: dict[str, np.ndarray], threads: int, runs: int, rounds: int
) -> tuple[list[dict[str, Any]], dict[str, tuple[float, str]]]:
    """Our engine's layer profile and onnxruntime's node profile of the model at ``path``,
    taken in ``rounds`` alternating turns of ``runs / rounds`` runs each (a pause after each
    turn, as ``compare_paired``'s: onnxruntime's threads stop spinning), so that both sides'
    figures come from the same phases of a shared host; per layer (node) the median over the
    turns (runs)."""
    import edge_infer
    from edge_infer.engine.backends import get_backend
    from edge_infer.engine.benchmark import PAIRED_PAUSE_S

    engine = edge_infer.build(str(path), None, shapes={k: v.shape for k, v in feeds.items()})
    get_backend(engine.backend_name).configure(cores=threads)
    warmup, per_turn = 5, max(1, runs // max(1, rounds))
    ours: dict[str, list[float]] = defaultdict(list)
    meta: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sess = ort_session(path, threads, str(Path(tmp) / "ort"))
        for _ in range(warmup):
            sess.run(None, feeds)
        for _ in range(max(1, rounds)):
            for layer in engine.profile_layers(feeds, iterations=per_turn):
                ours[layer["name"]].append(layer["time_us"])
                meta[layer["name"]] = layer
            time.sleep(PAIRED_PAUSE_S)
            for _ in range(per_turn):
                sess.run(None, feeds)
            time.sleep(PAIRED_PAUSE_S)
        events = json.loads(Path(sess.end_profiling()).read_text())
    layers = [{**meta[n], "time_us": float(np.median(v))} for n, v in ours.items()]
    layers.sort(key=lambda layer: -layer["time_us"])
    return layers, _ort_nodes(events, warmup)


def ort_conv(model: onnx.ModelProto, node_name: str, kinds: dict[str, str]) -> str | None:
    """The ONNX Conv an onnxruntime node computes: its own name, or for a fused NCHWc node
    (named ``<last output of the fused chain>_nchwc``) the Conv found walking back from that
    tensor through the chain (BatchNormalization, Clip, Add, ...; at an Add the input that
    only it consumes, not the residual)."""
    if node_name in kinds:
        return node_name
    producer = {o: n for n in model.graph.node for o in n.output}
    uses: dict[str, int] = defaultdict(int)
    for n in model.graph.node:
        for i in n.input:
            uses[i] += 1
    tensor = node_name.removesuffix("_nchwc")
    for _ in range(4):
        node = producer.get(tensor)
        if node is None:
            return None
        if node.name in kinds:
            return node.name
        inputs = [i for i in node.input if i in producer]
        if not inputs:
            return None
        tensor = min(inputs, key=lambda i: uses[i])
    return None


def compare(model: onnx.ModelProto, ours: list[dict], theirs: dict) -> dict[str, Any]:
    kinds = conv_kinds(model)
    by_conv: dict[str, float] = {}
    rest: dict[str, tuple[float, str]] = {}
    for name, (us, op) in theirs.items():
        conv = ort_conv(model, name, kinds)
        if conv is None:
            rest[name] = (us, op)
        else:
            by_conv[conv] = by_conv.get(conv, 0.0) + us
    by_kind: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])  # type: ignore[arg-type]
    rows = []
    matched = set()
    for layer in ours:
        if layer["op"] == "Chain":  # a conv chain (backends/cpu/chains.py): its members' sum
            convs = [m for m in layer["members"] if m in by_conv]
            kind, ort_us = "chain", (sum(by_conv[c] for c in convs) if convs else None)
            matched.update(convs)
            by_kind[kind][0] += layer["time_us"]
            by_kind[kind][1] += ort_us or 0.0
            by_kind[kind][2] += 1
            rows.append((layer["name"], kind, layer.get("tactic"), layer["time_us"], ort_us))
            continue
        conv = next((m for m in layer["members"] if m in kinds), None)
        kind = kinds[conv] if conv else layer["op"]
        ort_us = by_conv.get(conv) if conv else None
        if ort_us is not None:
            matched.add(conv)
        by_kind[kind][0] += layer["time_us"]
        by_kind[kind][1] += ort_us or 0.0
        by_kind[kind][2] += 1
        rows.append((layer["name"], kind, layer.get("tactic"), layer["time_us"], ort_us))
    rest.update({c: (us, "Conv") for c, us in by_conv.items() if c not in matched})
    for _, (us, op) in rest.items():
        key = f"onnxruntime {op} (unmatched)"
        by_kind[key][1] += us
    return {"by_kind": dict(by_kind), "layers": rows}


def markdown(name: str, result: dict[str, Any], top: int) -> str:
    total_ours = sum(v[0] for v in result["by_kind"].values())
    total_ort = sum(v[1] for v in result["by_kind"].values())
    lines = [
        f"## {name}: time per conv kind (µs per inference, profilers on)",
        "",
        "| kind | layers (ours) | ours µs | ORT µs | ours/ORT | share of ours |",
        "|---|---|---|---|---|---|",
    ]
    for kind, (ours, ort, n) in sorted(result["by_kind"].items(), key=lambda kv: -kv[1][0]):
        ratio = f"{ours / ort:.2f}×" if ort and ours else "–"
        share = ours / max(total_ours, 1e-9)
        lines.append(f"| {kind} | {n} | {ours:.0f} | {ort:.0f} | {ratio} | {share:.0%} |")
    lines.append(f"| **total** | | {total_ours:.0f} | {total_ort:.0f} | "
                 f"{total_ours / max(total_ort, 1e-9):.2f}× | |")  # fmt: skip
    lines += [
        "",
        f"Slowest {top} layers of ours:",
        "",
        "| layer | kind | tactic | ours µs | ORT µs (same conv) |",
        "|---|---|---|---|---|",
    ]
    for name_, kind, tactic, us, ort_us in result["layers"][:top]:
        ort_text = f"{ort_us:.0f}" if ort_us is not None else "–"
        lines.append(f"| {name_} | {kind} | {tactic} | {us:.0f} | {ort_text} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=ZOO, default="mobilenetv2")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--runs", type=int, default=30, help="profiled runs a side, in all")
    p.add_argument("--rounds", type=int, default=6, help="turns a side the runs are split in")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--out", help="markdown file (the JSON goes beside it)")
    args = p.parse_args(argv)
    from edge_infer.zoo import build_model

    input_name, chw, kw = ZOO[args.model]
    model = build_model(args.model, batch=None, **kw)
    feeds = {input_name: np.random.default_rng(0).random((args.batch, *chw), dtype=np.float32)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save(model, path)
        ours, theirs = profiles(path, feeds, args.threads, args.runs, args.rounds)
    result = compare(model, ours, theirs)
    result["load_average"] = os.getloadavg()
    text = markdown(f"{args.model} batch {args.batch}, {args.threads} threads", result, args.top)
    text += f"\n\nload average at the end: {result['load_average']}\n"
    if args.out:
        Path(args.out).write_text(text)
        Path(args.out).with_suffix(".json").write_text(json.dumps(result, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
