"""Optimization passes. ``default_passes`` reads as the list of optimizations the builder does.

Each entry: the pass, and why it is there. The manager runs the list to a fixpoint, so a
fusion that enables another (a residual Add, then the activation after it) is found on the
next round.
"""

from __future__ import annotations

from edge_infer.engine.passes.base import Pass, PassResult
from edge_infer.engine.passes.eliminate_concat import EliminateConcat
from edge_infer.engine.passes.eliminate_dead import EliminateDeadNodes
from edge_infer.engine.passes.fold_batchnorm import FoldBatchNorm
from edge_infer.engine.passes.fold_constants import FoldConstants
from edge_infer.engine.passes.fuse_conv_act import FuseConvActivation
from edge_infer.engine.passes.fuse_conv_add import FuseConvAdd
from edge_infer.engine.passes.fuse_horizontal import FuseHorizontal
from edge_infer.engine.passes.fuse_pointwise import FusePointwise
from edge_infer.engine.passes.manager import PassManager
from edge_infer.engine.passes.remove_identity import RemoveIdentities
from edge_infer.engine.passes.split_detect_head import SplitDetectHead


def default_passes() -> list[Pass]:
    """The builder's optimization pipeline, in order."""
    return [
        FoldConstants(),  # shape subgraphs and weight preprocessing become data
        RemoveIdentities(),  # no-op nodes would hide the patterns the fusions look for
        FoldBatchNorm(),  # BN (and constant scale/shift) cost nothing once in the weights
        FuseConvActivation(),  # Conv+bias+act in one kernel: no round trip through memory
        FuseConvAdd(),  # the residual Add becomes the conv's epilogue
        FusePointwise(),  # remaining elementwise chains: one pass over memory, not many
        SplitDetectHead(),  # a YOLO head's box decoding per scale: no anchor-wide logits
        FuseHorizontal(),  # sibling convs on one input: one wider GEMM, outputs as views
        EliminateConcat(),  # producers write into the concat output; Split outputs are views
        EliminateDeadNodes(),  # whatever no output depends on is never run
    ]


__all__ = [
    "EliminateConcat",
    "EliminateDeadNodes",
    "FoldBatchNorm",
    "FoldConstants",
    "FuseConvActivation",
    "FuseConvAdd",
    "FuseHorizontal",
    "FusePointwise",
    "Pass",
    "PassManager",
    "PassResult",
    "RemoveIdentities",
    "SplitDetectHead",
    "default_passes",
]
