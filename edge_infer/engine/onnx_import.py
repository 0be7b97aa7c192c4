"""ONNX model → IR.

Loading is defensive: a file that is not ONNX, a truncated file, external data that points
outside the model's folder, and unsupported ops (every one of them, listed at once with node
names) each raise a clear :class:`~edge_infer.errors.EdgeInferError` before anything is built.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from edge_infer.engine.dtypes import attribute_value, numpy_dtype, tensor_to_array
from edge_infer.engine.external_data import read_external
from edge_infer.engine.ir import Graph, TensorType, Value
from edge_infer.engine.ops import get_registry
from edge_infer.engine.ops.registry import OpRegistry
from edge_infer.errors import ExternalDataError, ModelLoadError, UnsupportedOpError

#: opsets of the default domain this importer accepts
MIN_OPSET, MAX_OPSET = 7, 22
_ONNX_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class LoadedModel:
    """A parsed model with its external data resolved, plus where it came from."""

    proto: onnx.ModelProto
    sha256: str
    path: Path | None


def load_model(source: str | os.PathLike | bytes | onnx.ModelProto) -> LoadedModel:
    """Parse an ONNX model from a path, bytes or a proto; external data is loaded safely."""
    path: Path | None = None
    if isinstance(source, onnx.ModelProto):
        data = source.SerializeToString()
        proto = source
    else:
        if isinstance(source, bytes):
            data = source
        else:
            path = Path(source)
            if not path.is_file():
                raise ModelLoadError(f"{path}: no such model file")
            data = path.read_bytes()
        proto = _parse(data, str(path or "<bytes>"))
    proto = _resolve_external_data(proto, path)
    return LoadedModel(proto, hashlib.sha256(data).hexdigest(), path)


def _parse(data: bytes, where: str) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(
            f"{where}: not a valid ONNX model (protobuf parse failed: {exc}); the file may be "
            "truncated or not an ONNX file"
        ) from exc
    if proto.ir_version <= 0 or not proto.HasField("graph") or not proto.opset_import:
        raise ModelLoadError(
            f"{where}: not an ONNX model (no IR version, graph or opset import found)"
        )
    return proto


def _resolve_external_data(proto: onnx.ModelProto, path: Path | None) -> onnx.ModelProto:
    tensors = [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    for node in proto.graph.node:
        for attr in node.attribute:
            if attr.HasField("t") and attr.t.data_location == onnx.TensorProto.EXTERNAL:
                tensors.append(attr.t)
    if not tensors:
        return proto
    if path is None:
        raise ExternalDataError(
            "model has external data but was not loaded from a file; load it by path"
        )
    base = path.resolve().parent
    for tensor in tensors:
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        where = f"{path}: initializer '{tensor.name}' external data {location[:200]!r}"
        raw = read_external(tensor, base, where)  # every field checked (external_data.py)
        tensor.ClearField("external_data")
        tensor.data_location = onnx.TensorProto.DEFAULT
        tensor.raw_data = raw
    return proto


def _value_type(info: onnx.ValueInfoProto, where: str) -> TensorType:
    ttype = info.type.tensor_type
    if not info.type.HasField("tensor_type"):
        raise ModelLoadError(f"{where} '{info.name}': only tensor inputs/outputs are supported")
    dtype = numpy_dtype(ttype.elem_type, f"{where} '{info.name}'")
    dims: list[int | str] = []
    for axis, dim in enumerate(ttype.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            dims.append(int(dim.dim_value))
        else:
            dims.append(dim.dim_param or f"{info.name}_dim{axis}")
    return TensorType(tuple(dims), dtype)


def is_dynamic_dim(dim: onnx.TensorShapeProto.Dimension) -> bool:
    """Whether an ONNX dimension is dynamic: a ``dim_param``, no value at all, or a
    ``dim_value`` that is not positive.

    Some exporters (Paddle2ONNX, older tf2onnx/keras2onnx) write ``-1`` for a dynamic batch,
    height or width, and some ``0``; onnxruntime treats both as dynamic. A ``0`` could also
    declare an empty tensor, but the engine never runs zero-size tensors (every bound dim
    must be ≥ 1), so on a model's inputs, outputs and ``value_info`` the only reading under
    which the model can be built is "unknown": both are bound by ``--shapes`` / profiles like a
    ``dim_param``. Initializers are data, not declarations, and keep their zero dims.
    """
    return not (dim.HasField("dim_value") and dim.dim_value > 0)


def import_model(
    source: str | os.PathLike | bytes | onnx.ModelProto | LoadedModel,
    *,
    registry: OpRegistry | None = None,
) -> Graph:
    """Import an ONNX model into a :class:`Graph` (types of graph inputs only; run
    :func:`edge_infer.engine.shape_inference.infer_shapes` after binding shapes)."""
    loaded = source if isinstance(source, LoadedModel) else load_model(source)
    proto = loaded.proto
    registry = registry or get_registry()
    opsets = {
        ("" if d.domain in _ONNX_DOMAINS else d.domain): int(d.version) for d in proto.opset_import
    }
    default = opsets.get("")
    if default is None or not MIN_OPSET <= default <= MAX_OPSET:
        raise ModelLoadError(
            f"model uses opset {default} of the default domain; edge_infer supports opsets "
            f"{MIN_OPSET}–{MAX_OPSET}. Convert it with onnx.version_converter."
        )
    g = proto.graph
    graph = Graph(name=g.name or "graph", opsets=opsets)
    graph.meta["model_sha256"] = loaded.sha256
    graph.meta["producer"] = f"{proto.producer_name} {proto.producer_version}".strip()
    if loaded.path is not None:
        graph.meta["model_path"] = str(loaded.path)

    init_names = set()
    for tensor in g.initializer:
        graph.add_constant(tensor.name, tensor_to_array(tensor), unique=False)
        init_names.add(tensor.name)
    for info in g.input:
        if info.name in init_names:
            continue  # IR < 4 style: an initializer listed as input stays a constant
        graph.add_input(info.name, _value_type(info, "graph input"))

    unsupported = _check_ops(g, opsets, registry)
    if unsupported:
        lines = "\n".join(f"  - node '{n}': {d or 'ai.onnx'}::{o}" for n, d, o in unsupported)
        kinds = sorted({f"{d or 'ai.onnx'}::{o}" for _, d, o in unsupported})
        raise UnsupportedOpError(
            f"{len(unsupported)} node(s) use ops edge_infer does not support "
            f"({', '.join(kinds)}):\n{lines}\nRegister a plugin for custom ops "
            "(edge_infer.engine.plugins) or re-export the model without them.",
            unsupported,
        )

    names: set[str] = set()
    for index, node in enumerate(g.node):
        name = node.name or f"{node.op_type}_{index}"
        if name in names:
            name = f"{name}_{index}"
        names.add(name)
        where = f"node '{name}' ({node.op_type})"
        inputs: list[Value | None] = []
        for input_name in node.input:
            if not input_name:
                inputs.append(None)
            elif graph.has_value(input_name):
                inputs.append(graph.value(input_name))
            else:
                raise ModelLoadError(
                    f"{where} reads '{input_name}', which no node, input or initializer defines "
                    "(is the graph topologically sorted?)"
                )
        outputs: list[Value | str] = []
        for out in node.output:
            if not out:
                out = f"{name}__unused{len(outputs)}"
            if graph.has_value(out):
                raise ModelLoadError(f"{where} writes '{out}', which is already defined")
            outputs.append(graph.add_value(out, unique=False))
        attrs = {a.name: attribute_value(a, where) for a in node.attribute}
        domain = "" if node.domain in _ONNX_DOMAINS else node.domain
        if (
            node.op_type == "Split"
            and not domain
            and "split" not in attrs
            and (len(inputs) < 2 or inputs[1] is None)
        ):
            # Before opset 18 an even Split is defined by its output count, which a kernel
            # cannot see: make it explicit (the opset-18 attribute) for kernels and folding.
            attrs.setdefault("num_outputs", len(outputs))
        graph.add_node(node.op_type, inputs, outputs, attrs, name=name, domain=domain)

    for info in g.output:
        if not graph.has_value(info.name):
            raise ModelLoadError(f"graph output '{info.name}' is not produced by any node")
        graph.add_output(graph.value(info.name), info.name)
    graph.verify()
    return graph


def _check_ops(
    g: onnx.GraphProto, opsets: dict[str, int], registry: OpRegistry
) -> list[tuple[str, str, str]]:
    missing = []
    for index, node in enumerate(g.node):
        domain = "" if node.domain in _ONNX_DOMAINS else node.domain
        opset = opsets.get(domain, 1)
        if registry.resolve(domain, node.op_type, opset) is None:
            missing.append((node.name or f"{node.op_type}_{index}", domain, node.op_type))
    return missing


def array_fingerprint(array: np.ndarray) -> str:
    """A short content hash, used to name and deduplicate constants."""
    digest = hashlib.sha256()
    digest.update(str(array.dtype).encode())
    digest.update(str(array.shape).encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:24]
