"""Remove nodes whose outputs nothing reads (and values nothing uses)."""

from __future__ import annotations

from edge_infer.engine.ir import Graph
from edge_infer.engine.passes.base import Pass, PassResult


class EliminateDeadNodes(Pass):
    name = "eliminate_dead_nodes"

    def run(self, graph: Graph) -> PassResult:
        modified = False
        for node in reversed(graph.nodes):
            if node.graph is None:
                continue
            if all(not out.uses and not graph.is_graph_output(out) for out in node.outputs):
                graph.remove_node(node)
                modified = True
        if graph.remove_unused_values():
            modified = True
        return PassResult(graph, modified)
