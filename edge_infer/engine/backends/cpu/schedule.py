"""Branch parallelism: independent layers (the inception module's four paths) run at once.

Layers are grouped into *stages* by dependency depth; the layers of a stage do not depend on
each other. A stage with several layers is split into lanes balanced by measured time; each
lane runs on its own worker with BLAS limited to one thread, so the workers never
oversubscribe the cores. The memory plan uses stage numbers as time, so layers of one stage
never share memory.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from edge_infer.engine.ir import Graph, Node

Run = Callable[[], None]


def stage_of(graph: Graph) -> dict[str, int]:
    """Node name → stage (0-based dependency depth; no-op and alias nodes pass through)."""
    depth: dict[str, int] = {}
    for node in graph.nodes:
        level = 0
        for value in node.inputs:
            if value is not None and value.producer is not None:
                level = max(level, depth[value.producer.name] + 1)
        depth[node.name] = level
    return depth


def lanes(layers: list[Node], workers: int) -> list[list[Node]]:
    """Split a stage's layers into ``workers`` lanes, longest first (greedy balance)."""
    bins: list[tuple[float, list[Node]]] = [(0.0, []) for _ in range(workers)]
    for node in sorted(layers, key=lambda n: -float(n.meta.get("time_us") or 1.0)):
        k = min(range(workers), key=lambda i: bins[i][0])
        cost, members = bins[k]
        bins[k] = (cost + float(node.meta.get("time_us") or 1.0), [*members, node])
    return [members for _, members in bins if members]


@functools.cache
def _blas_controller():  # type: ignore[no-untyped-def]
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


class ParallelRunner:
    """Runs a list of stages; stages with several lanes fan out to a thread pool."""

    def __init__(self, stages: list[list[list[Run]]], workers: int) -> None:
        self.stages = stages
        self.pool = ThreadPoolExecutor(workers - 1, thread_name_prefix="edge-infer-branch")

    @staticmethod
    def _lane(runs: list[Run]) -> None:
        for run in runs:
            run()

    def __call__(self) -> None:
        controller = _blas_controller()
        for stage in self.stages:
            if len(stage) == 1:
                self._lane(stage[0])
                continue
            with controller.limit(limits=1, user_api="blas"):
                futures = [self.pool.submit(self._lane, lane) for lane in stage[1:]]
                self._lane(stage[0])
                for future in futures:
                    future.result()

    def close(self) -> None:
        self.pool.shutdown(wait=False)
