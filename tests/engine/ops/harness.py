"""One-node model harness: run an op through edge_infer and compare with the ONNX oracles.

``check_op`` builds a single-node ONNX model, runs it through our importer and reference
executor, and compares every output with onnxruntime and ``onnx.reference.ReferenceEvaluator``
using an explicit tolerance per dtype. Inputs listed in ``const_inputs`` become initializers
(shape tensors, axes, pads, ...), as exporters write them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

#: (rtol, atol) per output dtype; atol is scaled by the reference output's max magnitude
TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-10, 1e-12),
    "float32": (1e-5, 1e-5),
    "float16": (2e-3, 2e-3),
}


def make_node_model(
    op_type: str,
    inputs: Sequence[np.ndarray | None],
    attrs: dict[str, Any] | None = None,
    *,
    num_outputs: int = 1,
    opset: int = 17,
    domain: str = "",
    const_inputs: Sequence[int] = (),
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A one-node model; returns it with the feeds for its non-constant inputs."""
    in_names: list[str] = []
    graph_inputs, inits, feeds = [], [], {}
    for k, array in enumerate(inputs):
        if array is None:
            in_names.append("")
            continue
        name = f"x{k}"
        in_names.append(name)
        array = np.asarray(array)
        if k in const_inputs:
            inits.append(numpy_helper.from_array(array, name))
        else:
            elem = helper.np_dtype_to_tensor_dtype(array.dtype)
            graph_inputs.append(helper.make_tensor_value_info(name, elem, array.shape))
            feeds[name] = array
    while in_names and in_names[-1] == "":
        in_names.pop()
    out_names = [f"y{k}" for k in range(num_outputs)]
    node = helper.make_node(op_type, in_names, out_names, domain=domain, **(attrs or {}))
    outputs = [helper.make_empty_tensor_value_info(n) for n in out_names]
    graph = helper.make_graph([node], f"{op_type}_test", graph_inputs, outputs, inits)
    opsets = [helper.make_opsetid("", opset)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = min(model.ir_version, 10)
    return model, feeds


def run_ours(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Import, bind, infer shapes (no folding), run; the inferred types must equal the
    kernel's actual outputs."""
    from edge_infer.engine.onnx_import import import_model
    from edge_infer.engine.reference import execute_graph, run_onnx
    from edge_infer.engine.shape_inference import bind_input_shapes, infer_shapes

    graph = import_model(model)
    bind_input_shapes(graph, {k: np.shape(v) for k, v in feeds.items()})
    infer_shapes(graph, fold=False)
    outputs = execute_graph(graph, feeds)
    for name, value in graph.outputs:
        if value.type is not None and value.const is None:
            got = np.asarray(outputs[name])
            assert tuple(value.type.shape) == got.shape, (
                f"shape function says {value.type.shape}, kernel gave {got.shape}"
            )
            assert value.type.dtype == got.dtype, (
                f"shape function says {value.type.dtype}, kernel gave {got.dtype}"
            )
    return run_onnx(model, feeds)


def run_onnxruntime(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, feeds)


def run_reference_evaluator(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray]
) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model).run(None, feeds)


def assert_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    if actual.dtype.name in TOLERANCES:
        rtol, atol = TOLERANCES[actual.dtype.name]
        finite = expected[np.isfinite(expected)]
        scale = float(np.max(np.abs(finite))) if finite.size else 1.0
        np.testing.assert_allclose(
            actual,
            expected,
            rtol=rtol,
            atol=atol * max(scale, 1.0),
            equal_nan=True,
            err_msg=what,
        )
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=what)


def check_op(
    op_type: str,
    inputs: Sequence[np.ndarray | None],
    attrs: dict[str, Any] | None = None,
    *,
    num_outputs: int = 1,
    opset: int = 17,
    const_inputs: Sequence[int] = (),
    oracles: Sequence[str] = ("onnxruntime", "reference"),
    compare_outputs: Sequence[int] | None = None,
) -> list[np.ndarray]:
    """Run ``op_type`` through edge_infer and assert it matches every oracle named.

    ``oracles``: "onnxruntime" and/or "reference" (the ONNX reference evaluator). Drop one
    only with a reason in the test (e.g. a known onnxruntime deviation from the spec).
    """
    model, feeds = make_node_model(
        op_type, inputs, attrs, num_outputs=num_outputs, opset=opset, const_inputs=const_inputs
    )
    ours = run_ours(model, feeds)
    runners = {"onnxruntime": run_onnxruntime, "reference": run_reference_evaluator}
    indices = list(compare_outputs) if compare_outputs is not None else list(range(len(ours)))
    for oracle in oracles:
        expected = runners[oracle](model, feeds)
        for k in indices:
            assert_close(ours[k], expected[k], f"{op_type} output {k} vs {oracle}")
    return ours
