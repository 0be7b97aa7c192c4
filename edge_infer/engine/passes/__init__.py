"""Optimization passes. ``default_passes`` reads as the list of optimizations the builder does.

Each entry: the pass, and why it is there.
"""

from __future__ import annotations

from edge_infer.engine.passes.base import Pass, PassResult
from edge_infer.engine.passes.eliminate_dead import EliminateDeadNodes
from edge_infer.engine.passes.fold_constants import FoldConstants
from edge_infer.engine.passes.manager import PassManager


def default_passes() -> list[Pass]:
    """The builder's optimization pipeline, in order."""
    return [
        FoldConstants(),  # shape subgraphs and weight preprocessing become data
        EliminateDeadNodes(),  # whatever no output depends on is never run
    ]


__all__ = ["Pass", "PassManager", "PassResult", "default_passes"]
