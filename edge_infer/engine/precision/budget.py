"""Per-layer INT8 sensitivity: the error each INT8 layer adds, for the accuracy-budget search.

Each INT8 layer is run alone on the FP32 network's own inputs to it (a few sample frames) and
its output compared with the FP32 layer's output; the normalized error
``‖y₈ − y₃₂‖² / ‖y₃₂‖²`` ranks the layers — the error a layer *adds*, not the error it
inherits. The search itself builds engines, so it lives above the builder
(:mod:`edge_infer.engine.accuracy_budget`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edge_infer.engine.ir import Graph
from edge_infer.engine.shape_inference import node_attrs, resolve_op


def layer_sensitivity(
    fp32: Graph, int8: Graph, feeds: Sequence[Mapping[str, np.ndarray]]
) -> dict[str, float]:
    """Normalized error each INT8 layer of ``int8`` adds, given exact FP32 inputs."""
    from edge_infer.engine.precision.capture import TensorCapture, float_activations

    layers = [
        n for n in int8.nodes if n.meta.get("precision") == "int8" and "reformat" not in n.meta
    ]
    capture = TensorCapture(fp32, float_activations(fp32))
    err = {n.name: 0.0 for n in layers}
    ref = {n.name: 0.0 for n in layers}
    for feed in feeds:
        _, values = capture.run(feed)
        values = {**feed, **values}  # graph inputs are read by the first layers
        for node in layers:
            op = resolve_op(int8, node)
            args = [
                None
                if v is None
                else v.const
                if v.const is not None
                else values[_float_source(v).name]
                for v in node.inputs
            ]
            # the layer alone: fed FP32 values (it quantizes them), its result kept in float
            attrs = {**node_attrs(op, node), "out_precision": "fp32"}
            y = np.asarray(op.kernel(*args, **attrs), np.float64)
            want = np.asarray(values[node.outputs[0].name], np.float64)
            err[node.name] += float(np.sum((y - want) ** 2))
            ref[node.name] += float(np.sum(want**2))
    return {name: err[name] / max(ref[name], 1e-30) for name in err}


def _float_source(value: Any) -> Any:
    """The FP32 network's tensor behind ``value`` (a reformat layer's input for its output)."""
    node = value.producer
    if node is not None and node.op_type == "Reformat" and node.domain == "edge_infer":
        return node.inputs[0]
    return value
