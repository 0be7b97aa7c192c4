"""Fold every node whose inputs are all constants (and Shape/Size of static tensors)."""

from __future__ import annotations

from edge_infer.engine.ir import Graph
from edge_infer.engine.passes.base import Pass, PassResult
from edge_infer.engine.shape_inference import node_attrs, resolve_op, try_fold


class FoldConstants(Pass):
    name = "fold_constants"

    def run(self, graph: Graph) -> PassResult:
        modified = False
        for node in graph.iter_nodes():
            op = resolve_op(graph, node)
            if op.foldable and try_fold(graph, node, op, node_attrs(op, node)):
                modified = True
        return PassResult(graph, modified)
