"""Prototype, measured, not in the engine: the detection head's class-logit Reshapes
``(N, C, H, W) -> (N, C, H*W)`` (``/model.22/Split/1/scale0..2`` in YOLOv8n) as views.

Today each Reshape's output is a slice of the anchor concat (``eliminate_concat``), so the
memory plan cannot make it a reshape alias of its input (``find_aliases`` only reshapes whole
contiguous buffers) and the CPU step copies it (``_copy_reshape``). Turned around — the
Reshape's *input* a strided reshape alias of its output slice — the producing 1x1 conv writes
straight into the concat (the conv tactics take any channel stride: ``flat3`` views with
``ocs``), and the Reshape does nothing. This script patches ``engine.memory`` in this process
only (:func:`find_aliases`, :func:`resolve_addresses`), builds a second ``CpuProgram`` from the
same tuned graph, checks the outputs are bit-identical, prints both arenas, and times both
engines alternating in one process (median of per-round ratios).

What the real change needs (files this prototype does not edit):
- ``engine/memory.py`` ``find_aliases``: for a Reshape-like node whose output is a slice alias
  and whose input is produced by a node, used once, not a graph output, neither an alias nor
  the base of one, and whose leading dims up to the slice axis are the output's: alias the
  input to the output (``Alias(out)``, axis None);
- ``engine/memory.py`` ``resolve_addresses``: a reshape alias of a non-contiguous parent gets
  the no-copy reshape's strides (numpy's ``_attempt_nocopy_reshape``, :func:`reshape_strides`
  below), an error where none exists;
- ``backends/cpu/program.py``: skip as a view only Reshape-like layers whose output is an
  implicit alias, or whose input aliases their output (today every layer whose output is in
  ``plan.aliases`` is skipped: the conv would be dropped);
- device backends that read addresses must take an output channel stride other than H*W
  (or the alias be limited to backends that declare it).

Run (BLAS unthrottled):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/detect_head_alias.py \
        --imgsz 640 --rounds 200
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx


def reshape_strides(
    shape: tuple[int, ...], strides: tuple[int, ...], new: tuple[int, ...]
) -> tuple[int, ...] | None:
    """Byte strides of ``new`` as a no-copy reshape of a strided array, or None."""
    old = [(d, s) for d, s in zip(shape, strides, strict=True) if d != 1]
    out = [0] * len(new)
    oi = ni = 0
    while ni < len(new) and oi < len(old):
        np_, op, nj, oj = new[ni], old[oi][0], ni + 1, oi + 1
        while np_ != op:
            if np_ < op:
                np_ *= new[nj]
                nj += 1
            else:
                op *= old[oj][0]
                oj += 1
        if any(old[k][1] != old[k + 1][0] * old[k + 1][1] for k in range(oi, oj - 1)):
            return None
        out[nj - 1] = old[oj - 1][1]
        for k in range(nj - 1, ni, -1):
            out[k - 1] = out[k] * new[k]
        ni, oi = nj, oj
    for k in range(ni, len(new)):
        out[k] = out[ni - 1] if ni else 1
    return tuple(out)


def patched_memory() -> tuple[Any, Any]:
    """``find_aliases`` and ``resolve_addresses`` with strided reshape aliases."""
    from edge_infer.engine import memory as m

    original = m.find_aliases

    def find_aliases(graph: Any) -> dict[str, Any]:
        aliases = original(graph)
        bases = {a.parent for a in aliases.values()}
        for node in graph.nodes:
            if node.op_type not in m.RESHAPE_OPS or node.domain:
                continue
            src, out = node.inputs[0], node.outputs[0]
            spec = aliases.get(out.name)
            if spec is None or spec.axis is None or src is None or src.const is not None:
                continue
            if src.producer is None or src.name in aliases or src.name in bases:
                continue
            if graph.is_graph_output(src) or len(src.uses) != 1:
                continue
            if tuple(src.shape)[: spec.axis] != tuple(out.shape)[: spec.axis]:
                continue
            aliases[src.name] = m.Alias(out.name)
        return aliases

    def resolve_addresses(graph: Any, plan: Any) -> dict[str, Any]:
        links, addresses = plan.links, {}
        for name, offset in plan.offsets.items():
            t = graph.value(name).type
            shape = tuple(int(d) for d in t.shape)
            strides = m.contiguous_strides(shape, t.dtype)
            addresses[name] = m.Address(name, offset, shape, strides, np.dtype(t.dtype))

        def resolve(name: str) -> Any:
            if name in addresses:
                return addresses[name]
            alias = links[name]
            parent = resolve(alias.parent)
            shape = tuple(int(d) for d in graph.value(name).type.shape)
            if alias.axis is None:
                strides = (
                    m.contiguous_strides(shape, parent.dtype)
                    if parent.contiguous
                    else reshape_strides(parent.shape, parent.strides, shape)
                )
                if strides is None or int(np.prod(shape)) != int(np.prod(parent.shape)):
                    raise ValueError(f"alias '{name}' is no view of '{alias.parent}'")
                result = m.Address(parent.buffer, parent.offset, shape, strides, parent.dtype)
            else:
                offset = parent.offset + alias.start * parent.strides[alias.axis]
                result = m.Address(parent.buffer, offset, shape, parent.strides, parent.dtype)
            addresses[name] = result
            return result

        for name in links:
            resolve(name)
        return addresses

    return find_aliases, resolve_addresses


def aliased_program(graph: Any) -> tuple[Any, set[str]]:
    """A CpuProgram of ``graph`` under the patched plan, and the values newly aliased."""
    from edge_infer.engine import memory as m
    from edge_infer.engine.backends.cpu.program import CpuProgram, _explicit_aliases, _Layer

    saved = m.find_aliases, m.resolve_addresses
    m.find_aliases, m.resolve_addresses = patched_memory()
    try:
        program = CpuProgram(graph)
    finally:
        m.find_aliases, m.resolve_addresses = saved
    reshaped = {n.inputs[0].name for n in graph.nodes if n.op_type in m.RESHAPE_OPS}
    new = {n for n, a in program.plan.aliases.items() if a.axis is None and n in reshaped}
    new = {n for n in new if graph.value(n).producer.op_type not in m.RESHAPE_OPS}
    explicit = _explicit_aliases(graph)
    program.layers = []
    for node in graph.nodes:
        if node.meta.get("noop"):
            continue
        out = node.outputs[0].name
        if node.op_type in m.RESHAPE_OPS and (
            node.inputs[0].name in new or (out in program.plan.aliases and out not in explicit)
        ):
            continue  # a view: nothing to run (only Reshape-like layers)
        program.layers.append(_Layer(node, program._layer_factory(node)))
    return program, new


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--rounds", type=int, default=100)
    args = p.parse_args(argv)
    import edge_infer
    from edge_infer.engine.backends.cpu.program import CpuProgram
    from edge_infer.zoo import build_model

    model = build_model("yolov8n", batch=None, imgsz=args.imgsz, fold_bn=True)
    feeds = {"images": np.random.default_rng(0).random((1, 3, args.imgsz, args.imgsz), np.float32)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save(model, path)
        engine = edge_infer.build(str(path), None, shapes={"images": feeds["images"].shape})
    graph = engine.graph(1)
    before = CpuProgram(graph)
    after, new = aliased_program(graph)
    print("newly aliased:", ", ".join(sorted(new)))
    for tag, program in (("before", before), ("after", after)):
        plan = program.plan
        sizes = f"arena {plan.arena_bytes} B, total {plan.total_bytes} B"
        print(f"{tag}: {len(program.layers)} layers, {sizes}")
    states = {"before": before.new_state(), "after": after.new_state()}
    programs = {"before": before, "after": after}
    try:
        outs = {tag: programs[tag].run(states[tag], feeds) for tag in programs}
        same = all(np.array_equal(outs["before"][k], outs["after"][k]) for k in outs["before"])
        print("outputs bit-identical:", same)
        times: dict[str, list[float]] = {tag: [] for tag in programs}
        for r in range(args.rounds):
            for tag in ("before", "after") if r % 2 == 0 else ("after", "before"):
                programs[tag]._copy_inputs(states[tag], feeds)
                t0 = time.perf_counter()
                programs[tag]._call(states[tag])
                times[tag].append(time.perf_counter() - t0)
        profiles = {t: programs[t].profile(states[t], feeds, iterations=30) for t in programs}
    finally:
        for state in states.values():
            state.close()
    producers = {graph.value(n).producer.name for n in new}
    reshapes = {u.name for n in new for u, _ in graph.value(n).uses}
    for name in sorted(producers | reshapes):
        us = {t: f"{profiles[t][name]:.0f}" if name in profiles[t] else "-" for t in programs}
        print(f"  {name}: µs {us}")
    ratio = np.median(np.array(times["after"]) / np.array(times["before"]))
    medians = {tag: f"{np.median(v) * 1e3:.2f} ms" for tag, v in times.items()}
    print(f"median {medians}, after/before median of per-round ratios {ratio:.3f}")
    print("load average", os.getloadavg())
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
