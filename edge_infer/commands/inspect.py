"""`edge-infer inspect ENGINE [--json]`: bindings, layers and build record."""

from __future__ import annotations

import argparse
import json
from typing import Any

from edge_infer.commands.device_option import add_device_argument, apply_device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="show an engine's bindings, layers and build record "
        "(or an ONNX model's inputs and outputs, dynamic dims marked)",
    )
    p.add_argument("engine", help="engine file, or an .onnx model")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--batch", type=int, help="show the plan for this batch size (default opt)")
    p.add_argument(
        "--no-device-check", action="store_true", help="inspect an engine built on another device"
    )
    add_device_argument(p)
    p.set_defaults(func=run)


_STORAGE_NAMES = {"float32": "fp32", "float16": "fp16", "int8": "int8"}


def _storage(value: Any) -> str:
    """A value's storage dtype as `inspect` prints it: fp32, fp16 or int8@scale."""
    meta = value.meta.get("storage") or {}
    dtype = meta.get("dtype") or _STORAGE_NAMES.get(value.dtype.name, value.dtype.name)
    return f"int8@{meta['scale']:.6g}" if dtype == "int8" and "scale" in meta else dtype


def engine_report(engine: Any, batch: int | None) -> dict[str, Any]:
    batch = batch or engine.profile.opt_batch
    graph = engine.graph(batch)
    layers = []
    for node in graph.nodes:
        layers.append(
            {
                "name": node.name,
                "op": node.op_type,
                "members": node.meta.get("members", [node.name]),
                "tactic": node.meta.get("tactic")
                or ("eliminated: producers write into views" if node.meta.get("noop") else None),
                "time_us": node.meta.get("time_us"),
                # candidates the tactic self-check refused here: {tactic: what was wrong}
                "rejected_tactics": node.meta.get("rejected_tactics", {}),
                "inputs": [None if v is None else f"{v.name}: {v.type}" for v in node.inputs],
                "outputs": [f"{v.name}: {v.type}" for v in node.outputs],
                # how each output is stored between layers (fp32 / fp16 / int8 with its scale)
                "storage": [_storage(v) for v in node.outputs],
                "reformat": node.meta.get("reformat"),
                # CUDA engines: each kernel the layer launches, its tile, registers, shared memory
                "kernels": _cuda_kernels(engine, batch, node.meta.get("cuda_kernels")),
            }
        )
    report = engine.describe()
    report["plan_batch"] = engine.plan_batch_for(batch)
    report["layers"] = layers
    report["original_layers"] = engine.build_record.get("original_layers")
    report["final_layers"] = len(layers)
    report["arena"] = graph.meta.get("arena")
    report["schedule"] = graph.meta.get("schedule")
    return report


def _cuda_kernels(engine: Any, batch: int, entries: list[str] | None) -> list[dict[str, Any]]:
    """The kernels a CUDA engine's layer launches, with the compiler's resource report."""
    if not entries:
        return []
    import re

    key = f"{engine.plan_batch_for(batch)}/cuda/manifest.json"
    manifest = json.loads(engine.blobs[key]) if key in engine.blobs else {"kernels": {}}
    out = []
    for entry in entries:
        res = manifest["kernels"].get(entry, {})
        tile = re.search(r"_(\d+x\d+)", entry)
        out.append(
            {
                "kernel": entry,
                "tile": tile.group(1) if tile else None,
                "registers": res.get("registers"),
                "shared_bytes": res.get("shared_bytes"),
            }
        )
    return out


def model_report(path: str) -> dict[str, Any]:
    """An ONNX model's declared inputs and outputs; dynamic dims (a ``dim_param``, no value,
    or a ``dim_value`` of ``-1`` or ``0`` as some exporters write) are reported as ``"?"``
    or by name, so the user sees which ones ``--shapes`` must bind."""
    from edge_infer.engine import is_dynamic_dim, load_model

    graph = load_model(path).proto.graph
    initializers = {t.name for t in graph.initializer}

    def dims(info: Any) -> list[int | str]:
        return [
            (d.dim_param or "?") if is_dynamic_dim(d) else int(d.dim_value)
            for d in info.type.tensor_type.shape.dim
        ]

    def entry(info: Any) -> dict[str, Any]:
        shape = dims(info)
        return {
            "name": info.name,
            "shape": shape,
            "dynamic": [k for k, d in enumerate(shape) if isinstance(d, str)],
        }

    return {
        "model": path,
        "inputs": [entry(i) for i in graph.input if i.name not in initializers],
        "outputs": [entry(o) for o in graph.output],
    }


def _run_model(args: argparse.Namespace) -> int:
    report = model_report(args.engine)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"model {args.engine}")
    for kind in ("inputs", "outputs"):
        for b in report[kind]:
            dims = "x".join(str(d) for d in b["shape"])
            dynamic = (
                f"  (dynamic dims {b['dynamic']}: bind them with --shapes)"
                if b["dynamic"] and kind == "inputs"
                else ""
            )
            print(f"  {kind[:-1]:<6} {b['name']}: [{dims}]{dynamic}")
    return 0


def _print_self_check(rec: dict[str, Any]) -> None:
    """The tactic self-check's verdicts from the build record
    (deploy/jetson/tactic-self-check.md)."""
    verify = rec.get("options", {}).get("verify_tactics")
    rejected = rec.get("rejected_tactics", [])
    if verify is None:
        print("  tactic self-check: not recorded (engine built before the self-check)")
        return
    if not verify:
        print("  tactic self-check: off (built with --no-verify-tactics)")
        return
    print(f"  tactic self-check: on, {len(rejected)} candidate(s) rejected")
    for r in rejected:
        print(f"    rejected {r['tactic']} for {r['layer']} (batch {r['batch']}): {r['error']}")


def run(args: argparse.Namespace) -> int:
    from edge_infer.engine import Engine

    if str(args.engine).endswith(".onnx"):
        return _run_model(args)
    apply_device(args)
    engine = Engine.load(args.engine, check_device=not args.no_device_check)
    report = engine_report(engine, args.batch)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    rec = report["build"]
    print(f"engine {args.engine}")
    print(
        f"  built by edge_infer {rec['edge_infer_version']} on {rec['created']}, "
        f"backend {rec['backend']}, precision {rec['options']['precision']}"
    )
    print(
        f"  model {rec.get('model_path') or rec.get('model_name')} (sha256 "
        f"{str(rec.get('model_sha256'))[:16]}…)"
    )
    if engine.tuned_settings:
        tuned = ", ".join(f"{k}={v}" for k, v in engine.tuned_settings.items())
        print(f"  tactics timed at {tuned}")
    prof = report["profile"]
    print(
        f"  batch min/opt/max {prof['min_batch']}/{prof['opt_batch']}/{prof['max_batch']}, "
        f"plans for {prof['specializations']}"
    )
    for b in report["inputs"]:
        print(f"  input  {b}")
    for b in report["outputs"]:
        print(f"  output {b}")
    print(
        f"  layers: {report['original_layers']} in the model → {report['final_layers']} "
        f"in the plan for batch {report['plan_batch']}"
    )
    for layer in report["layers"]:
        members = " + ".join(layer["members"])
        tactic = f"  [{layer['tactic']}]" if layer["tactic"] else ""
        timing = f"  {layer['time_us']:.0f} µs" if layer["time_us"] else ""
        stored = f"  → {', '.join(layer['storage'])}" if layer["storage"] else ""
        print(f"    {layer['op']:<22} {members}{tactic}{timing}{stored}")
        for k in layer["kernels"]:
            if k["kernel"] == "host":
                print("      kernel: none, host fallback")
                continue
            print(
                f"      kernel {k['kernel']}  tile {k['tile'] or '-'}  "
                f"{k['registers']} registers  {k['shared_bytes']} B shared"
            )
    reformats = [layer for layer in report["layers"] if layer["reformat"]]
    print(f"  reformat layers: {len(reformats)}")
    for layer in reformats:
        print(f"    {layer['name']}: {layer['reformat']}")
    _print_self_check(rec)
    if report["schedule"]:
        print(f"  schedule: {report['schedule']}")
    if report["arena"]:
        arena = report["arena"]
        by_dtype = ", ".join(
            f"{_STORAGE_NAMES.get(k, k)} {v / 1e6:.2f} MB"
            for k, v in arena.get("buffer_bytes_by_dtype", {}).items()
        )
        io = f" + {arena['io_bytes'] / 1e6:.2f} MB inputs/outputs" if "io_bytes" in arena else ""
        in_place = f"; {arena['in_place']} layers in place" if arena.get("in_place") else ""
        print(
            f"  arena: {arena['bytes'] / 1e6:.2f} MB activations{io} "
            f"(naive sum {arena['naive_bytes'] / 1e6:.2f} MB"
            f"{'; buffers ' + by_dtype if by_dtype else ''}{in_place})"
        )
    return 0
