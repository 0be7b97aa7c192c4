"""Storage precision: the dtype every activation is kept in between layers.

After the layers' precisions are assigned, each float activation gets a storage dtype —
``fp32``, ``fp16``, or ``int8`` with a per-tensor scale — as a GPU engine keeps it:

1. **Format groups.** Values that share memory (concat slices, split views, reshapes) or
   that a data-movement layer (reshape, transpose, concat, split, slice, max-pooling,
   nearest-neighbour resize) copies without arithmetic hold the same numbers, so they form
   one group with one storage format (max and nearest selection commute with monotone
   quantization, so int8 pooling and upsampling are exact).
2. **A group's format.** ``int8`` when every layer writing into it is an INT8 layer and every
   layer reading it is an INT8 layer (its input, or a residual it dequantizes), and no
   engine input or output is in it; the scale is the calibrated scale of the group's
   largest tensor (for an eliminated concat: the concat's, which every piece then shares).
   Else ``fp16`` when every writer produces FP16 values (FP16 layers, INT8 layers of an
   ``--int8 --fp16`` build) and no engine input or output is in it. Else ``fp32``.
3. **Reformat layers.** A layer that reads a group in another format than it takes gets an
   explicit ``edge_infer::Reformat`` layer in front of it (one per tensor and target format),
   as TensorRT inserts reformats: an INT8 layer reading a float tensor (quantized with that
   tensor's own calibrated scale), an FP16 or FP32 layer reading a tensor stored in int8, an
   FP32 layer reading an FP16 tensor. The one exception is the engine's float32 input
   (the caller's image batch): the layers reading it convert it as they read it — an FP16
   layer rounds it to float16, an INT8 layer quantizes it with the input's calibrated scale,
   numbers identical to a reformat's — so no second copy of the input is kept.

Values record it in ``value.type`` (float32 / float16 / int8, so the memory plan sizes
buffers by it) and ``value.meta["storage"]`` (``{"dtype": ..., "scale": ...}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_infer.engine.ir import Graph, Node, TensorType, Value
from edge_infer.engine.ops.fused import DOMAIN
from edge_infer.engine.ops.quantize import STORAGE_DTYPES

STORAGE_KEY = "storage"


@dataclass(frozen=True)
class Storage:
    """How a tensor is stored: ``dtype`` ``"fp32"``, ``"fp16"`` or ``"int8"`` (with ``scale``)."""

    dtype: str
    scale: float = 0.0

    @property
    def numpy(self) -> np.dtype:
        return STORAGE_DTYPES[self.dtype]

    def to_meta(self) -> dict[str, Any]:
        return (
            {"dtype": self.dtype, "scale": self.scale}
            if self.dtype == "int8"
            else {"dtype": self.dtype}
        )

    def __str__(self) -> str:
        return f"int8 (scale {self.scale:.6g})" if self.dtype == "int8" else self.dtype


FP32 = Storage("fp32")
FP16 = Storage("fp16")
_NAMES = {np.dtype(np.float32): "fp32", np.dtype(np.float16): "fp16", np.dtype(np.int8): "int8"}


def storage_of(value: Value) -> Storage | None:
    """The storage of an activation (from its metadata, else its dtype); None if not float."""
    meta = value.meta.get(STORAGE_KEY)
    if meta:
        return Storage(str(meta["dtype"]), float(meta.get("scale", 0.0)))
    if value.type is None or value.dtype not in _NAMES or value.dtype == np.int8:
        return None
    return Storage(_NAMES[value.dtype])


def is_data_movement(node: Node) -> bool:
    """A layer that only moves or selects values (exact at any storage precision)."""
    from edge_infer.engine.precision.assign import DATA_MOVEMENT

    if node.meta.get("noop"):
        return True
    if node.domain:
        return False
    if node.op_type == "Resize":
        return node.attrs.get("mode", "nearest") == "nearest"
    return node.op_type in DATA_MOVEMENT


def _float(value: Value | None) -> bool:
    return (
        value is not None
        and value.const is None
        and value.type is not None
        and value.dtype == np.float32
    )


class _Groups:
    """Union-find over value names."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, name: str) -> str:
        self.parent.setdefault(name, name)
        while self.parent[name] != name:
            self.parent[name] = self.parent[self.parent[name]]
            name = self.parent[name]
        return name

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def format_groups(graph: Graph) -> dict[str, list[Value]]:
    """Float activations that must share one storage format, by group (step 1 above)."""
    from edge_infer.engine.memory import find_aliases

    groups = _Groups()
    floats = {v.name: v for v in graph.values.values() if _float(v)}
    for name in floats:
        groups.find(name)
    for name, alias in find_aliases(graph).items():
        if name in floats and alias.parent in floats:
            groups.union(name, alias.parent)
    for node in graph.nodes:
        if not is_data_movement(node):
            continue
        moved = [
            v for v in (node.inputs if node.op_type == "Concat" else node.inputs[:1]) if _float(v)
        ]
        for v in [*moved, *(o for o in node.outputs if _float(o))][1:]:
            groups.union(moved[0].name if moved else v.name, v.name)
    result: dict[str, list[Value]] = {}
    for name, value in floats.items():
        result.setdefault(groups.find(name), []).append(value)
    return result


@dataclass(frozen=True)
class _Want:
    """What a reader takes: a storage, or ``any`` (an INT8 layer's residual)."""

    storage: Storage | None


@dataclass
class StoragePlan:
    """Every float activation's storage, and the reformats readers need."""

    formats: dict[str, Storage] = field(default_factory=dict)
    #: (value name, storage wanted) -> the readers (node name, input index) to reformat for
    reformats: dict[tuple[str, Storage], list[tuple[str, int]]] = field(default_factory=dict)


def _writes(node: Node, layers: Mapping[str, str], float_out: Mapping[str, str]) -> set[str]:
    """The storages a layer can write: an INT8 layer int8 or its float output precision."""
    precision = layers.get(node.name, "fp32")
    if precision == "int8":
        return {"int8", float_out.get(node.name, "fp32")}
    return {precision}


def _reads(
    node: Node, index: int, value: Value, layers: Mapping[str, str], scales: Mapping[str, float]
) -> _Want:
    precision = layers.get(node.name, "fp32")
    if precision == "int8":
        if index == 0:
            return _Want(Storage("int8", float(scales[value.name])))
        return _Want(None)  # the residual: dequantized (or read as float) by the layer
    return _Want(FP16 if precision == "fp16" else FP32)


def plan_storage(
    graph: Graph,
    layers: Mapping[str, str],
    scales: Mapping[str, float],
    float_out: Mapping[str, str],
) -> StoragePlan:
    """Decide every float activation's storage (steps 2 and 3 of the module docstring).

    ``layers``: layer name → assigned precision; ``scales``: calibrated scale per tensor;
    ``float_out``: INT8 layer name → the float precision it writes when it cannot write int8.
    """
    plan = StoragePlan()
    io = {v.name for v in graph.inputs} | {v.name for _, v in graph.outputs}
    for members in format_groups(graph).values():
        names = {v.name for v in members}
        writers: list[set[str]] = []
        readers: list[tuple[Node, int, Value, _Want]] = []
        for value in members:
            node = value.producer
            if node is not None and not is_data_movement(node):
                writers.append(_writes(node, layers, float_out))
            for reader, index in value.uses:
                if not is_data_movement(reader):
                    readers.append(
                        (reader, index, value, _reads(reader, index, value, layers, scales))
                    )
        has_io = bool(names & io)
        wants = [w.storage for *_, w in readers]
        int8_ok = (
            not has_io
            and writers
            and wants
            and all("int8" in w for w in writers)
            and all(s is None or s.dtype == "int8" for s in wants)
            and any(v.name in scales for v in members)
        )
        if int8_ok:
            scored = [v for v in members if v.name in scales]
            best = max(scored, key=lambda v: (v.type.nbytes, scales[v.name]))  # type: ignore[union-attr]
            storage = Storage("int8", float(scales[best.name]))
        elif not has_io and writers and all(w - {"int8"} == {"fp16"} for w in writers):
            storage = FP16
        else:
            storage = FP32
        for value in members:
            plan.formats[value.name] = storage
        inputs = names & {v.name for v in graph.inputs}
        for reader, index, value, want in readers:
            wanted = want.storage
            if (
                wanted is None
                or wanted == storage
                or (wanted.dtype == "int8" and storage.dtype == "int8")
            ):
                continue  # an INT8 reader of an int8 group reads it at the group's scale
            if inputs and wanted.dtype != "fp32":
                continue  # the engine's float32 input: converted as the first layers read it
            plan.reformats.setdefault((value.name, wanted), []).append((reader.name, index))
    return plan


def apply_storage(graph: Graph, plan: StoragePlan) -> list[Node]:
    """Insert the plan's reformat layers and give every value its storage type and metadata.

    Returns the reformat layers (readers now read their outputs).
    """
    added: list[Node] = []
    for (name, want), readers in plan.reformats.items():
        src = graph.value(name)
        have = plan.formats[name]
        attrs: dict[str, Any] = {"to": want.dtype}
        if have.dtype == "int8":
            attrs["x_scale"] = have.scale
        if want.dtype == "int8":
            attrs["y_scale"] = want.scale
        out = graph.add_value(f"{name}/{want.dtype}", TensorType(src.shape, want.numpy))  # type: ignore[union-attr]
        out.meta[STORAGE_KEY] = want.to_meta()
        node = graph.add_node(
            "Reformat",
            [src],
            [out],
            attrs,
            name=f"reformat {name} {have.dtype}->{want.dtype}",
            domain=DOMAIN,
        )
        node.meta["precision"] = want.dtype
        node.meta["reformat"] = f"{have} -> {want}"
        for reader, index in readers:
            graph.node(reader).set_input(index, out)
        added.append(node)
    for name, storage in plan.formats.items():
        value = graph.value(name)
        value.type = TensorType(value.shape, storage.numpy)
        value.meta[STORAGE_KEY] = storage.to_meta()
    return added
