"""The one pass contract: ``Pass(graph) -> PassResult(graph, modified)``."""

from __future__ import annotations

import abc
from dataclasses import dataclass

from edge_infer.engine.ir import Graph


@dataclass(frozen=True)
class PassResult:
    graph: Graph
    modified: bool


class Pass(abc.ABC):
    """A graph transformation. ``name`` is what logs, errors and ``inspect`` call it."""

    name: str = "pass"

    def __call__(self, graph: Graph) -> PassResult:
        return self.run(graph)

    @abc.abstractmethod
    def run(self, graph: Graph) -> PassResult: ...
