"""Runs a named list of passes to a fixpoint, verifying the graph after each pass."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from edge_infer.engine.ir import Graph
from edge_infer.engine.passes.base import Pass
from edge_infer.errors import EdgeInferError, GraphError, PassError

log = logging.getLogger(__name__)


class PassManager:
    """Apply ``passes`` in order, repeatedly, until none modifies the graph."""

    def __init__(self, passes: Sequence[Pass], *, max_iterations: int = 10) -> None:
        self.passes = list(passes)
        self.max_iterations = max_iterations
        #: (pass name, times it modified the graph), for inspect and logs
        self.history: dict[str, int] = {p.name: 0 for p in self.passes}

    def run(self, graph: Graph) -> Graph:
        applied: list[str] = []
        for iteration in range(self.max_iterations):
            changed = False
            for p in self.passes:
                try:
                    result = p(graph)
                    result.graph.verify()
                except PassError:
                    raise
                except (GraphError, EdgeInferError) as exc:
                    before = ", ".join(applied[-8:]) or "none"
                    raise PassError(
                        f"pass '{p.name}' (iteration {iteration + 1}) left the graph invalid: "
                        f"{exc}. Passes that ran before it: {before}"
                    ) from exc
                graph = result.graph
                applied.append(p.name)
                if result.modified:
                    self.history[p.name] += 1
                    changed = True
            if not changed:
                return graph
        log.warning("passes did not reach a fixpoint in %d iterations", self.max_iterations)
        return graph
