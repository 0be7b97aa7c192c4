"""What a tactic is: one implementation of a layer, chosen per layer by timing on this device."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from edge_infer.engine.ir import Node

Run = Callable[[], None]
Scratch = Callable[[tuple[int, ...], Any, "str | None"], np.ndarray]


class ConvGeometry:
    """What every convolution spec derives from its shapes and weight (FP32 ``ConvSpec``,
    INT8 ``QConvSpec``): the fields below are the dataclasses'."""

    x_shape: tuple[int, int, int, int]
    out_shape: tuple[int, int, int, int]
    weight: np.ndarray  # (Cout, Cin/group, kh, kw)
    group: int

    @property
    def kernel(self) -> tuple[int, int]:
        return self.weight.shape[2], self.weight.shape[3]

    @property
    def cin(self) -> int:
        return self.x_shape[1]

    @property
    def cout(self) -> int:
        return self.weight.shape[0]

    @property
    def flops(self) -> int:
        n, _, ho, wo = self.out_shape
        kh, kw = self.kernel
        return 2 * n * self.cout * ho * wo * (self.cin // self.group) * kh * kw


@dataclass(frozen=True)
class ConvSpec(ConvGeometry):
    """A (fused) 2-D convolution, read off a Conv or FusedConv node with static shapes."""

    x_shape: tuple[int, int, int, int]
    out_shape: tuple[int, int, int, int]
    weight: np.ndarray  # (Cout, Cin/group, kh, kw)
    bias: np.ndarray | None
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    dilations: tuple[int, int]
    group: int
    activation: str = ""
    activation_params: tuple[float, ...] = ()
    residual: str = "none"  # none | pre (act(conv + z)) | post (act(conv) + z)

    def signature(self) -> str:
        """What determines a tactic's speed: the timing-cache key of this layer."""
        return (
            f"conv x{list(self.x_shape)} w{list(self.weight.shape)} s{list(self.strides)} "
            f"p{list(self.pads)} d{list(self.dilations)} g{self.group} "
            f"{self.weight.dtype.name} act={self.activation or '-'} res={self.residual}"
        )


def conv_spec(node: Node) -> ConvSpec | None:
    """The ConvSpec of a float32 2-D Conv/FusedConv node with constant weights, else None."""
    if node.op_type not in ("Conv", "FusedConv"):
        return None
    x, w = node.inputs[0], node.inputs[1]
    b = node.inputs[2] if len(node.inputs) > 2 else None
    if (
        x is None
        or w is None
        or w.const is None
        or x.type is None
        or len(x.shape) != 4
        or x.dtype != np.float32
        or w.const.dtype != np.float32
        or (b is not None and b.const is None)
    ):
        return None
    attrs = node.attrs
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") and node.op_type == "Conv":
        return None  # the passes resolve auto_pad; an unresolved one keeps the reference
    # absent and empty lists both mean the default, as the Conv shape function reads them
    pads = list(attrs.get("pads") or [0, 0, 0, 0])
    out = node.outputs[0]
    return ConvSpec(
        x_shape=tuple(x.shape),  # type: ignore[arg-type]
        out_shape=tuple(out.shape),  # type: ignore[arg-type]
        weight=w.const,
        bias=None if b is None else b.const,
        strides=tuple(attrs.get("strides") or [1, 1]),  # type: ignore[arg-type]
        pads=(pads[0], pads[1], pads[2], pads[3]),
        dilations=tuple(attrs.get("dilations") or [1, 1]),  # type: ignore[arg-type]
        group=int(attrs.get("group", 1)),
        activation=attrs.get("activation", ""),
        activation_params=tuple(attrs.get("activation_params", [])),
        residual=attrs.get("residual", "none"),
    )


class Tactic(abc.ABC):
    """One implementation of a layer kind; ``applicable`` filters, ``bind`` prepares a run."""

    name: ClassVar[str]

    @classmethod
    @abc.abstractmethod
    def applicable(cls, spec: Any) -> bool: ...

    @abc.abstractmethod
    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        """A closure computing ``outputs`` from ``inputs`` (arena views), allocation-free."""
