"""ONNX element types ↔ numpy dtypes, and ONNX attribute values ↔ Python values."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, numpy_helper

from edge_infer.errors import ModelLoadError

_ONNX_TO_NUMPY: dict[int, np.dtype] = {
    TensorProto.FLOAT: np.dtype(np.float32),
    TensorProto.DOUBLE: np.dtype(np.float64),
    TensorProto.FLOAT16: np.dtype(np.float16),
    TensorProto.INT8: np.dtype(np.int8),
    TensorProto.INT16: np.dtype(np.int16),
    TensorProto.INT32: np.dtype(np.int32),
    TensorProto.INT64: np.dtype(np.int64),
    TensorProto.UINT8: np.dtype(np.uint8),
    TensorProto.UINT16: np.dtype(np.uint16),
    TensorProto.UINT32: np.dtype(np.uint32),
    TensorProto.UINT64: np.dtype(np.uint64),
    TensorProto.BOOL: np.dtype(np.bool_),
}
_NUMPY_TO_ONNX = {v: k for k, v in _ONNX_TO_NUMPY.items()}

#: dtypes an engine may carry in tensors and bindings
SUPPORTED_DTYPES: frozenset[np.dtype] = frozenset(_ONNX_TO_NUMPY.values())


def numpy_dtype(elem_type: int, where: str = "") -> np.dtype:
    """The numpy dtype of an ONNX element type, or a clear error."""
    try:
        return _ONNX_TO_NUMPY[elem_type]
    except KeyError:
        known = elem_type in TensorProto.DataType.values()
        name = TensorProto.DataType.Name(elem_type) if known else elem_type
        raise ModelLoadError(f"{where}: element type {name} is not supported") from None


def onnx_elem_type(dtype: np.dtype) -> int:
    return _NUMPY_TO_ONNX[np.dtype(dtype)]


def tensor_to_array(tensor: onnx.TensorProto, where: str = "") -> np.ndarray:
    """Decode a TensorProto (inline data only; external data is resolved by the importer)."""
    numpy_dtype(tensor.data_type, where or tensor.name)
    try:
        return numpy_helper.to_array(tensor)
    except Exception as exc:  # protobuf content errors surface here
        raise ModelLoadError(f"{where or tensor.name}: cannot decode tensor: {exc}") from exc


def attribute_value(attr: onnx.AttributeProto, where: str) -> Any:
    """An ONNX attribute as the Python value a kernel receives."""
    t = attr.type
    if t == AttributeProto.INT:
        return int(attr.i)
    if t == AttributeProto.FLOAT:
        return float(attr.f)
    if t == AttributeProto.STRING:
        return attr.s.decode("utf-8", errors="replace")
    if t == AttributeProto.INTS:
        return [int(v) for v in attr.ints]
    if t == AttributeProto.FLOATS:
        return [float(v) for v in attr.floats]
    if t == AttributeProto.STRINGS:
        return [s.decode("utf-8", errors="replace") for s in attr.strings]
    if t == AttributeProto.TENSOR:
        return tensor_to_array(attr.t, f"{where} attribute '{attr.name}'")
    raise ModelLoadError(
        f"{where}: attribute '{attr.name}' of type {AttributeProto.AttributeType.Name(t)} "
        "is not supported (subgraphs and sparse tensors are not)"
    )
