"""What a recurrent layer (ONNX LSTM, GRU, RNN) is to the tactic machinery: its spec.

Backend-generic: the attributes, static shapes and constant weights a backend's recurrent
tactic binds to. A layer whose ``sequence_lens`` is computed at run time keeps the
reference kernel (it validates the lengths on every call); exported vision recognizers have
none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_infer.engine.ir import Node
from edge_infer.engine.ops.recurrent_cells import CellSpec, cell_spec

RECURRENT_OPS = ("LSTM", "GRU", "RNN")
_ATTRS = (
    "direction",
    "layout",
    "activations",
    "activation_alpha",
    "activation_beta",
    "clip",
    "input_forget",
    "linear_before_reset",
)


@dataclass(frozen=True)
class RecurrentSpec:
    """A float32 recurrent layer with static shapes."""

    op: str
    cell: CellSpec
    x_shape: tuple[int, int, int]
    #: how many outputs the node has (Y, Y_h and, for LSTM, Y_c)
    outputs: int
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def flops(self) -> int:
        steps_batch = self.x_shape[0] * self.x_shape[1]
        g, h, d = self.cell.gates, self.cell.hidden, self.cell.directions
        return 2 * steps_batch * d * g * h * (self.x_shape[2] + h)

    def signature(self) -> str:
        """What determines a tactic's speed: the timing-cache key of this layer."""
        c = self.cell
        return (
            f"{self.op} x{list(self.x_shape)} h{c.hidden} d{c.directions} "
            f"layout{c.layout} clip={c.clip} "
            f"acts={[a.name for a in c.activations[0]]}"
        )


def recurrent_spec(node: Node) -> RecurrentSpec | None:
    """The spec of a float32 LSTM/GRU/RNN node with static shapes, else None."""
    if node.op_type not in RECURRENT_OPS or node.domain:
        return None
    x = node.inputs[0]
    r = node.inputs[2] if len(node.inputs) > 2 else None
    lens = node.inputs[4] if len(node.inputs) > 4 else None
    if (
        x is None
        or r is None
        or x.type is None
        or r.type is None
        or len(x.shape) != 3
        or x.dtype != np.float32
        or not x.type.is_static
        or (lens is not None and lens.const is None)
    ):
        return None
    attrs = {k: node.attrs[k] for k in _ATTRS if node.attrs.get(k) is not None}
    try:
        cell = cell_spec(
            node.op_type, hidden_size=node.attrs.get("hidden_size"), R_shape=r.shape, **attrs
        )
    except Exception:  # invalid attributes: shape inference reports them, located
        return None
    return RecurrentSpec(
        node.op_type,
        cell,
        tuple(int(d) for d in x.shape),  # type: ignore[arg-type]
        len(node.outputs),
        attrs,
    )
