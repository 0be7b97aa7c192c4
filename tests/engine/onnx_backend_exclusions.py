"""Which ONNX backend test cases edge_infer does not run, and why.

Three kinds of exclusion, checked in this order by :func:`auto_exclusion`,
:func:`rule_exclusion`, :func:`explicit_exclusion` and :func:`known_bug`:

1. **Automatic, by design** — derived from the model, so they follow the code when it grows:
   an op that is not in the registry and not in :data:`CORE_OPS` (training ops, sequences,
   strings, control flow, ...); inputs/outputs that are not tensors; element types
   edge_infer has no dtype for; a model opset outside the importer's range that
   ``onnx.version_converter`` cannot convert into it (:func:`convert_opset`; cases it does
   convert run converted, as the importer tells users to do). An op that *is*
   in :data:`CORE_OPS` but missing from the registry is never excluded: its cases fail.
   Zero-size inputs (:func:`rule_exclusion`) are found in the model too, but the engine
   rejects them only at build time, so those cases are run like the explicit ones.
2. **Explicit, by design** — :data:`EXCLUSIONS`: ``regex (re.fullmatch on the case name) →
   reason`` for cases that use supported ops in a way the engine deliberately does not support.
3. **Known bugs** — :data:`KNOWN_BUGS` (by name): reported to the owner, run as strict
   expected failures, so the suite goes red the moment one is fixed and the entry must be
   removed. Empty now: the 0-d input and Dropout-mask bugs it listed are fixed.

Explicit and known-bug cases are still run: a case listed here that passes fails the suite
(a stale exclusion), and every pattern must match at least one case that is not already
excluded automatically.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection

import onnx

#: The engine-core op list of issue 6 ("ONNX import ... covering what CNN classifiers,
#: detectors and OCR models use"), with issue 16's recurrent layers and integer ops (CRNN
#: recognizers, onnxruntime-quantized models). Ops outside it are out of scope by design.
_CORE_OPS_TEXT = """
    Conv ConvTranspose BatchNormalization InstanceNormalization LayerNormalization Relu
    LeakyRelu PRelu Elu Selu Sigmoid HardSigmoid HardSwish Tanh Softplus Mish Gelu Erf Clip
    Exp Log Sqrt Pow Reciprocal Neg Abs Floor Ceil Round Add Sub Mul Div Max Min Sum Mean
    MatMul Gemm MaxPool AveragePool GlobalAveragePool GlobalMaxPool Concat Split Slice
    Reshape Flatten Transpose Squeeze Unsqueeze Resize Upsample Pad Softmax LogSoftmax ArgMax
    TopK ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL2 Shape Size Gather
    GatherElements Cast Constant ConstantOfShape Range Expand Tile Where Equal Less Greater
    Not And Or Identity Dropout DepthToSpace SpaceToDepth LRN Einsum
    LSTM GRU RNN DynamicQuantizeLinear MatMulInteger ConvInteger QLinearMatMul QLinearConv
"""
CORE_OPS: frozenset[str] = frozenset(_CORE_OPS_TEXT.split())

_ILL_CONDITIONED_SOFTMAX = (
    "ill-conditioned reference: the final Softmax sees logits of ~9.5e9 that are all equal "
    "in exact arithmetic; float32 rounding of the Conv sums (relative ~1e-7, summation order) "
    "leaves only some channels at the max (exp(-1024) = 0 for the rest), so Softmax gives "
    "1/k (k = 304 or 512 measured, by tactic) instead of 1/1000. The logits match "
    "onnxruntime (test_light_model_logits_match_onnxruntime)"
)

ZERO_SIZE = "zero-size tensors not supported: the builder requires every input dim ≥ 1"
#: regex (fullmatch on the case name) → why edge_infer does not support that case.
EXCLUSIONS: dict[str, str] = {
    # -- training-mode behaviour of an inference engine -----------------------------------
    r"test_batchnorm_(epsilon|example)_training_mode": (
        "BatchNormalization training_mode=1 not supported (inference engine: running stats only)"
    ),
    r"test_training_dropout(_default|_zero_ratio)?(_mask)?": (
        "Dropout training_mode=1 not supported (inference engine: Dropout is the identity)"
    ),
    # -- quantization forms outside the INT8 path -------------------------------------------
    r"test_(de)?quantizelinear_blocked(_asymmetric|_symmetric)?": (
        "blocked quantization (QuantizeLinear/DequantizeLinear block_size) not supported; "
        "edge_infer quantizes per tensor or per channel"
    ),
    # -- real models ---------------------------------------------------------------------------
    r"test_squeezenet": _ILL_CONDITIONED_SOFTMAX,
}

#: Listed cases whose outcome hangs on float32 summation order (the tactic chosen, the BLAS
#: kernel): run, and counted as excluded whether they pass or fail, never as stale.
ORDER_SENSITIVE: frozenset[str] = frozenset({"test_squeezenet"})

#: regex → bug report. Run as strict expected failures; remove the entry once fixed.
KNOWN_BUGS: dict[str, str] = {}


def _first_match(table: dict[str, str], name: str) -> tuple[str, str] | None:
    for pattern, reason in table.items():
        if re.fullmatch(pattern, name):
            return pattern, reason
    return None


def explicit_exclusion(name: str) -> tuple[str, str] | None:
    """``(pattern, reason)`` of the :data:`EXCLUSIONS` entry matching ``name``, if any."""
    return _first_match(EXCLUSIONS, name)


def known_bug(name: str) -> tuple[str, str] | None:
    """``(pattern, report)`` of the :data:`KNOWN_BUGS` entry matching ``name``, if any."""
    return _first_match(KNOWN_BUGS, name)


def _model_opset(model: onnx.ModelProto) -> int | None:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return None


def _value_infos(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    return [*model.graph.input, *model.graph.output]


def auto_exclusion(
    model: onnx.ModelProto,
    registry: object,
    supported_dtypes: frozenset[int],
    opset_range: tuple[int, int],
) -> str | None:
    """The by-design reason ``model`` is not run, or ``None`` when it must run.

    ``registry`` is an :class:`~edge_infer.engine.ops.OpRegistry`; ``supported_dtypes`` the
    ONNX element types edge_infer maps to numpy; ``opset_range`` the importer's opsets.
    """
    opset = _model_opset(model)
    lookup_opset = opset if opset is not None else opset_range[1]
    missing: list[str] = []
    for node in model.graph.node:
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        resolved = registry.resolve(domain, node.op_type, lookup_opset)  # type: ignore[attr-defined]
        if resolved is None and not (domain == "" and node.op_type in CORE_OPS):
            label = node.op_type if not domain else f"{domain}::{node.op_type}"
            if label not in missing:
                missing.append(label)
    if missing:
        plural = "s" if len(missing) > 1 else ""
        return f"op{plural} {', '.join(missing)} not supported (not in the engine-core op list)"
    for info in _value_infos(model):
        kind = info.type.WhichOneof("value")
        if kind != "tensor_type":
            return f"{kind.replace('_type', '')} inputs/outputs not supported (tensors only)"
    elem_types = {info.type.tensor_type.elem_type for info in _value_infos(model)}
    elem_types |= {t.data_type for t in model.graph.initializer}
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.name == "to" and attr.type == onnx.AttributeProto.INT:
                elem_types.add(attr.i)
            if attr.type == onnx.AttributeProto.TENSOR:
                elem_types.add(attr.t.data_type)
    unsupported = sorted(
        onnx.TensorProto.DataType.Name(t) for t in elem_types if t not in supported_dtypes
    )
    if unsupported:
        return f"element type {', '.join(unsupported)} not supported (no numpy dtype in edge_infer)"
    low, high = opset_range
    if opset is None or not low <= opset <= high:
        return convert_opset(model, opset_range)[1]
    return None


@functools.cache
def _convert(data: bytes, target: int) -> tuple[bytes | None, str | None]:
    import onnx.version_converter

    try:
        converted = onnx.version_converter.convert_version(onnx.load_from_string(data), target)
    except Exception as exc:  # the converter raises RuntimeError/ValueError/assertion text
        return None, str(exc).strip().splitlines()[0][:160]
    return converted.SerializeToString(), None


def convert_opset(
    model: onnx.ModelProto, opset_range: tuple[int, int]
) -> tuple[onnx.ModelProto | None, str | None]:
    """``model`` at an opset the importer accepts: as is when it is in range, else converted
    with ``onnx.version_converter`` to the nearest end of the range — the conversion the
    importer's error message tells users to make. ``(None, reason)`` when that fails."""
    opset = _model_opset(model)
    low, high = opset_range
    if opset is not None and low <= opset <= high:
        return model, None
    target = high if opset is None or opset > high else low
    data, error = _convert(model.SerializeToString(), target)
    if data is None:
        return None, (
            f"model opset {opset} outside the importer's supported range {low}–{high}, and "
            f"onnx.version_converter cannot convert it to opset {target}: {error}"
        )
    return onnx.load_from_string(data), None


def rule_exclusion(model: onnx.ModelProto, bound: Collection[str] = ()) -> tuple[str, str] | None:
    """``(kind, reason)`` found from the model for something the engine reports only when
    building it; kind is ``excluded`` (by design) or ``known_bug``. Such cases are still run
    and must still fail (see the module docstring). ``bound``: inputs that become
    initializers before the build."""
    initializers = {t.name for t in model.graph.initializer}
    fed = [i for i in model.graph.input if i.name not in initializers and i.name not in bound]
    for info in fed:
        dims = info.type.tensor_type.shape.dim
        if any(d.HasField("dim_value") and d.dim_value == 0 for d in dims):
            return "excluded", ZERO_SIZE
    return None


def reason_category(reason: str) -> str:
    """A short category for summaries: the reason with case-specific details removed."""
    if reason.startswith("op"):
        return "op not supported (not in the engine-core op list)"
    if reason.startswith("element type"):
        return "element type not supported"
    if reason.startswith("model opset"):
        return "model opset outside the importer's supported range"
    if reason.startswith("dynamic output shape"):
        return "dynamic output shape (data-dependent)"
    return reason.split(":")[0].split("(")[0].strip()
