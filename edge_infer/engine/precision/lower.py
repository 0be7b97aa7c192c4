"""Lowering: rewrite each layer to run at its assigned precision.

- INT8 convolutions become ``edge_infer::QConv`` with int8 weights, per-output-channel
  symmetric weight scales and an int32 bias (in units of ``x_scale * w_scale``); fully
  connected layers (Gemm, MatMul by a constant) become ``edge_infer::QGemm`` the same way.
  The layer's output value is kept, so consumers, aliases and graph outputs are untouched.
- FP16 layers become ``edge_infer::Fp16Layer`` around the original op, with their weights
  (conv/GEMM weights and biases) stored as float16 — half the bytes in the engine file.
- FP32 layers are left as they are.

Before the layers are rewritten, :mod:`.storage` gives every activation its storage dtype and
inserts the reformat layers; an INT8 layer then reads int8 at the scale its input is stored
with and writes what its output stores (int8 requantized with that tensor's scale, FP16 or
FP32).
"""

from __future__ import annotations

import numpy as np

from edge_infer.engine.ir import Graph, Node, Value
from edge_infer.engine.memory import reorder_for_memory
from edge_infer.engine.ops.fused import DOMAIN
from edge_infer.engine.ops.quantize import W_QMAX
from edge_infer.engine.precision.assign import Assignment
from edge_infer.engine.precision.storage import (
    FP16,
    Storage,
    apply_storage,
    plan_storage,
    storage_of,
)

#: inputs of these ops that are weights (stored at the layer's precision)
WEIGHT_INPUTS: dict[str, tuple[int, ...]] = {
    "Conv": (1, 2),
    "FusedConv": (1, 2),
    "ConvTranspose": (1, 2),
    "Gemm": (1, 2),
    "MatMul": (1,),
}
_CONV_ATTRS = (
    "group",
    "strides",
    "pads",
    "dilations",
    "kernel_shape",
    "activation",
    "activation_params",
    "residual",
)


def quantize_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric int8 weights: ``(w_q int8, scale float32[Cout])``."""
    w = np.asarray(w, np.float32)
    amax = np.max(np.abs(w.reshape(w.shape[0], -1)), axis=1).astype(np.float64)
    scale = np.where(amax > 0, amax / W_QMAX, 1.0).astype(np.float32)
    q = np.rint(w / scale.reshape(-1, *([1] * (w.ndim - 1))))
    return np.clip(q, -W_QMAX, W_QMAX).astype(np.int8), scale


def quantize_bias(b: np.ndarray, x_scale: float, w_scale: np.ndarray) -> np.ndarray:
    """int32 bias in accumulator units ``x_scale * w_scale[c]`` (saturated)."""
    unit = float(x_scale) * np.asarray(w_scale, np.float64)
    q = np.rint(np.asarray(b, np.float64) / unit)
    info = np.iinfo(np.int32)
    return np.clip(q, info.min, info.max).astype(np.int32)


def _replace(
    graph: Graph, old: Node, op_type: str, inputs: list[Value | None], attrs: dict, domain: str
) -> Node:
    outputs = list(old.outputs)
    name, meta = old.name, dict(old.meta)
    graph.remove_node(old, force=True)
    new = graph.add_node(op_type, inputs, outputs, attrs, name=name, domain=domain)
    meta.pop("tactic", None)
    meta.pop("tactic_times_us", None)
    new.meta = meta
    return new


def _storage_attrs(out: Storage | str, z: Value | None = None) -> dict:
    """QConv/QGemm attributes for the output storage (and an int8 residual's scale)."""
    out = out if isinstance(out, Storage) else Storage(out)
    attrs: dict = {"out_precision": out.dtype}
    if out.dtype == "int8":
        attrs["out_scale"] = out.scale
    zs = None if z is None else storage_of(z)
    if zs is not None and zs.dtype == "int8":
        attrs["z_scale"] = zs.scale
    return attrs


def lower_int8_conv(graph: Graph, node: Node, x_scale: float, out_precision: Storage | str) -> Node:
    """Replace a Conv/FusedConv with a QConv (see the module docstring)."""
    x, w = node.inputs[0], node.inputs[1]
    b = node.inputs[2] if len(node.inputs) > 2 else None
    z = node.inputs[3] if len(node.inputs) > 3 else None
    wq, w_scale = quantize_weights(w.const)  # type: ignore[union-attr]
    inputs: list[Value | None] = [
        x,
        graph.add_constant(f"{node.name}/w_int8", wq),
        graph.add_constant(f"{node.name}/w_scale", w_scale),
        None
        if b is None
        else graph.add_constant(f"{node.name}/b_int32", quantize_bias(b.const, x_scale, w_scale)),  # type: ignore[arg-type]
        z,
    ]
    attrs = {k: node.attrs[k] for k in _CONV_ATTRS if k in node.attrs}
    attrs.setdefault("kernel_shape", list(w.const.shape[2:]))  # type: ignore[union-attr]
    attrs.update(x_scale=float(x_scale), **_storage_attrs(out_precision, z))
    new = _replace(graph, node, "QConv", inputs, attrs, DOMAIN)
    new.meta["precision"] = "int8"
    new.meta["original_op"] = node.op_type
    return new


def lower_int8_fc(graph: Graph, node: Node, x_scale: float, out_precision: Storage | str) -> Node:
    """Replace a Gemm / MatMul by a constant with a QGemm (weights as int8 [N, K])."""
    x, w = node.inputs[0], node.inputs[1]
    c = node.inputs[2] if len(node.inputs) > 2 else None
    weight = w.const  # type: ignore[union-attr]
    if node.op_type == "MatMul" or not node.attrs.get("transB", 0):
        weight = weight.T  # type: ignore[union-attr]
    wq, w_scale = quantize_weights(np.ascontiguousarray(weight))
    inputs: list[Value | None] = [
        x,
        graph.add_constant(f"{node.name}/w_int8", wq),
        graph.add_constant(f"{node.name}/w_scale", w_scale),
        None
        if c is None
        else graph.add_constant(
            f"{node.name}/b_int32", quantize_bias(c.const.reshape(-1), x_scale, w_scale)
        ),  # type: ignore[union-attr]
    ]
    attrs = {"x_scale": float(x_scale), **_storage_attrs(out_precision)}
    new = _replace(graph, node, "QGemm", inputs, attrs, DOMAIN)
    new.meta["precision"] = "int8"
    new.meta["original_op"] = node.op_type
    return new


def lower_fp16(graph: Graph, node: Node) -> Node:
    """Wrap ``node`` in an Fp16Layer with float16 weights."""
    weights = WEIGHT_INPUTS.get(node.op_type, ()) if node.domain in ("", DOMAIN) else ()
    inputs: list[Value | None] = []
    round_inputs: list[int] = []
    for k, v in enumerate(node.inputs):
        if v is not None and v.const is not None and k in weights and v.const.dtype == np.float32:
            v = graph.add_constant(f"{v.name}/fp16", v.const.astype(np.float16))
        elif v is not None and v.const is None and v.type is not None and v.dtype == np.float32:
            round_inputs.append(k)
        inputs.append(v)
    default_opset = 1 if node.domain else 17
    attrs = {
        "op": node.op_type,
        "op_domain": node.domain,
        "op_attrs": dict(node.attrs),
        "opset": int(graph.opsets.get(node.domain, default_opset)),
        "round_inputs": round_inputs,
        # outputs the engine stores in float16 (the others hold FP16-rounded float32)
        "fp16_outputs": [k for k, v in enumerate(node.outputs) if storage_of(v) == FP16],
    }
    new = _replace(graph, node, "Fp16Layer", inputs, attrs, DOMAIN)
    new.meta["precision"] = "fp16"
    return new


def lower(
    graph: Graph, assignment: Assignment, scales: dict[str, float], fallback: str = "fp32"
) -> dict[str, int]:
    """Rewrite ``graph`` in place per ``assignment``; returns layers per precision."""
    float_out = {
        name: "fp16" if fallback == "fp16" and name not in assignment.fp16_overflow else "fp32"
        for name, p in assignment.layers.items()
        if p == "int8"
    }
    reformats = apply_storage(graph, plan_storage(graph, assignment.layers, scales, float_out))
    counts = {"fp32": 0, "fp16": 0, "int8": 0}
    for node in graph.iter_nodes():
        choice = assignment.layers.get(node.name)
        if choice is None:
            continue
        counts[choice] += 1
        if choice == "int8":
            x = node.inputs[0]
            stored = storage_of(x)  # type: ignore[arg-type]
            if stored is not None and stored.dtype == "int8":
                x_scale = stored.scale
            else:  # the engine's float input (or a view of it): quantized as it is read
                x_scale = scales[x.name]  # type: ignore[union-attr]
            rewrite = lower_int8_fc if node.op_type in ("Gemm", "MatMul") else lower_int8_conv
            rewrite(graph, node, x_scale, storage_of(node.outputs[0]) or "fp32")
        elif choice == "fp16":
            lower_fp16(graph, node)
        else:
            node.meta["precision"] = "fp32"
    graph.topological_sort()
    graph.remove_unused_values()
    # with activations at their storage sizes, a different order of the layers may let big
    # buffers die sooner (FP32 plans keep the optimizer's order)
    reordered = reorder_for_memory(graph)
    graph.verify()
    graph.meta["storage"] = {"reformats": [n.name for n in reformats], "memory_order": reordered}
    return counts
