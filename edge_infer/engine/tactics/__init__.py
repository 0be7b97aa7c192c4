"""Tactics: candidate implementations per (layer kind, backend), chosen by timing.

``TACTICS`` is the explicit registry. The builder times every applicable candidate of each
layer on this device, at each batch size, and records the winner in ``node.meta['tactic']``;
the runtime binds exactly that tactic.
"""

from __future__ import annotations

import logging
from typing import Any

from edge_infer.engine.ir import Node
from edge_infer.engine.tactics.base import ConvSpec, Tactic, conv_spec
from edge_infer.engine.tactics.cpu_conv import CONV_TACTICS
from edge_infer.engine.tactics.cpu_direct import DepthwiseNative, DirectNative, OcVecNative
from edge_infer.engine.tactics.cpu_winograd import WinogradNative

#: (layer kind, backend) → candidates, in the order tried (the first applicable is the default)
log = logging.getLogger(__name__)

TACTICS: dict[tuple[str, str], tuple[type[Tactic], ...]] = {
    ("conv", "cpu"): (*CONV_TACTICS, DirectNative, OcVecNative, DepthwiseNative,
                       WinogradNative),
}


def layer_kind(node: Node) -> tuple[str, Any] | None:
    """(kind, spec) of a tunable layer, or None."""
    spec = conv_spec(node)
    if spec is not None:
        return "conv", spec
    return None


def candidates(node: Node, backend: str) -> tuple[list[type[Tactic]], Any]:
    """The applicable tactics for ``node`` and its spec (empty when not tunable)."""
    kind = layer_kind(node)
    if kind is None:
        return [], None
    name, spec = kind
    return [t for t in TACTICS.get((name, backend), ()) if t.applicable(spec)], spec


def select_tactic(node: Node, backend: str, name: str | None) -> Tactic | None:
    """An instance of the tactic called ``name`` (or the default) for ``node``."""
    options, spec = candidates(node, backend)
    if not options:
        return None
    for tactic in options:
        if tactic.name == name:
            return tactic(spec)  # type: ignore[call-arg]
    if name is not None:  # e.g. native kernels chosen at build, no compiler here now
        log.warning("layer %s: tactic %s is not available here; running %s instead "
                    "(correct, maybe slower)", node.name, name, options[0].name)
    return options[0](spec)  # type: ignore[call-arg]


__all__ = ["TACTICS", "ConvSpec", "Tactic", "candidates", "select_tactic"]
