"""Tactics: candidate implementations per (layer kind, backend), chosen by timing.

Each backend owns its table of candidates (``{layer kind: tactics, in the order tried}``,
e.g. ``edge_infer.engine.backends.cpu.tactics.CPU_TACTICS``); this module only knows what a
tunable layer is and how a table answers for one. The builder times every applicable
candidate of each layer on this device, at each batch size, and records the winner in
``node.meta['tactic']``; the runtime binds exactly that tactic.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from edge_infer.engine.ir import Node
from edge_infer.engine.tactics.base import ConvSpec, Tactic, conv_spec
from edge_infer.engine.tactics.fp16 import fp16_spec
from edge_infer.engine.tactics.quantized import QConvSpec, qconv_spec
from edge_infer.engine.tactics.recurrent import recurrent_spec

log = logging.getLogger(__name__)

#: layer kind → candidates in the order tried (the first applicable one is the default)
TacticTable = Mapping[str, tuple[type[Tactic], ...]]


def layer_kind(node: Node) -> tuple[str, Any] | None:
    """(kind, spec) of a tunable layer, or None."""
    spec = conv_spec(node)
    if spec is not None:
        return "conv", spec
    recurrent = recurrent_spec(node)
    if recurrent is not None:
        return "recurrent", recurrent
    qspec = qconv_spec(node)
    if qspec is not None:
        return "qconv", qspec
    fp16 = fp16_spec(node)
    if fp16 is not None:
        return "fp16", fp16
    return None


def candidates(node: Node, table: TacticTable) -> tuple[list[type[Tactic]], Any]:
    """The applicable tactics of ``table`` for ``node``, and its spec (empty when not
    tunable)."""
    kind = layer_kind(node)
    if kind is None:
        return [], None
    name, spec = kind
    return [t for t in table.get(name, ()) if t.applicable(spec)], spec


def select_tactic(node: Node, table: TacticTable, name: str | None) -> Tactic | None:
    """An instance of the tactic called ``name`` (or the default) for ``node``."""
    options, spec = candidates(node, table)
    if not options:
        return None
    for tactic in options:
        if tactic.name == name:
            return tactic(spec)  # type: ignore[call-arg]
    if name is not None:  # e.g. native kernels chosen at build, no compiler here now
        log.warning(
            "layer %s: tactic %s is not available here; running %s instead (correct, maybe slower)",
            node.name,
            name,
            options[0].name,
        )
    return options[0](spec)  # type: ignore[call-arg]


__all__ = [
    "ConvSpec",
    "QConvSpec",
    "Tactic",
    "TacticTable",
    "candidates",
    "layer_kind",
    "select_tactic",
]
