"""IR → ONNX model: for comparing a network built in code with onnxruntime, and debugging."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edge_infer.engine.dtypes import onnx_elem_type
from edge_infer.engine.ir import Graph, Value


def _value_info(name: str, value: Value) -> onnx.ValueInfoProto:
    if value.type is None:
        return helper.make_empty_tensor_value_info(name)
    return helper.make_tensor_value_info(name, onnx_elem_type(value.dtype), list(value.shape))


def export_onnx(graph: Graph, ir_version: int = 8) -> onnx.ModelProto:
    """The graph as an ONNX model (constants become initializers)."""
    nodes = []
    for node in graph.nodes:
        attrs = {
            k: (numpy_helper.from_array(np.asarray(v)) if isinstance(v, np.ndarray) else v)
            for k, v in node.attrs.items()
        }
        if node.op_type == "Split" and not node.domain and graph.opsets.get("", 17) < 18:
            attrs.pop("num_outputs", None)  # set by the importer; not an attribute before 18
        nodes.append(
            helper.make_node(
                node.op_type,
                ["" if v is None else v.name for v in node.inputs],
                [v.name for v in node.outputs],
                name=node.name,
                domain=node.domain,
                **attrs,
            )
        )
    initializers = [numpy_helper.from_array(np.asarray(v.const), v.name) for v in graph.constants()]
    outputs, extra = [], []
    for name, value in graph.outputs:
        if name != value.name:  # an output renamed by a pass: re-expose under its public name
            extra.append(helper.make_node("Identity", [value.name], [name]))
        outputs.append(_value_info(name, value))
    proto = helper.make_graph(
        nodes + extra,
        graph.name,
        [_value_info(v.name, v) for v in graph.inputs],
        outputs,
        initializers,
    )
    opsets = [helper.make_opsetid(domain, version) for domain, version in graph.opsets.items()]
    model = helper.make_model(proto, opset_imports=opsets, producer_name="edge_infer")
    model.ir_version = ir_version
    return model
