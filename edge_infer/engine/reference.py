"""The numeric reference: run a graph node by node with the registry's numpy kernels.

No optimizations, no memory planning — this is what every optimized path is compared with.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from edge_infer.engine.ir import Graph
from edge_infer.engine.ops.registry import OpRegistry
from edge_infer.engine.shape_inference import (
    bind_input_shapes,
    infer_shapes,
    node_attrs,
    resolve_op,
)
from edge_infer.errors import EdgeInferError


def execute_graph(
    graph: Graph, feeds: Mapping[str, np.ndarray], *, registry: OpRegistry | None = None
) -> dict[str, np.ndarray]:
    """Evaluate ``graph`` on ``feeds``; returns every graph output by its public name."""
    env: dict[int, np.ndarray] = {}
    for value in graph.inputs:
        env[id(value)] = np.asarray(feeds[value.name])
    for node in graph.nodes:
        op = resolve_op(graph, node, registry)
        args = []
        for value in node.inputs:
            if value is None:
                args.append(None)
            elif value.const is not None:
                args.append(value.const)
            else:
                args.append(env[id(value)])
        try:
            result = op.kernel(*args, **node_attrs(op, node))
        except EdgeInferError:
            raise
        except Exception as exc:
            shapes = ", ".join("-" if a is None else f"{a.dtype}{list(a.shape)}" for a in args)
            raise EdgeInferError(
                f"{node.op_type} node '{node.name}' failed at run time: "
                f"{type(exc).__name__}: {exc} (inputs: {shapes})"
            ) from exc
        results = result if isinstance(result, tuple | list) else (result,)
        for out, array in zip(node.outputs, results, strict=False):
            env[id(out)] = np.asarray(array)
    outputs = {}
    for name, value in graph.outputs:
        outputs[name] = value.const if value.const is not None else env[id(value)]
    return outputs


def run_onnx(
    model: onnx.ModelProto | str, feeds: Mapping[str, np.ndarray], *, fold: bool = True
) -> list[np.ndarray]:
    """Import ``model``, bind shapes from ``feeds``, infer, and run the reference executor.

    Returns the outputs in the model's output order (like ``InferenceSession.run(None, ...)``).
    """
    from edge_infer.engine.onnx_import import import_model

    graph = import_model(model)
    bind_input_shapes(graph, {k: np.shape(v) for k, v in feeds.items()})
    infer_shapes(graph, fold=fold)
    outputs = execute_graph(graph, feeds)
    return [np.asarray(outputs[name]) for name in graph.output_names()]
