"""The CPU program: a static memory plan plus one bound, allocation-free step per layer.

``CpuProgram`` (shared by contexts) holds the memory plan and each layer's implementation —
the tactic chosen at build time for convolutions, an in-place step for common ops, the
reference kernel otherwise. ``new_state`` gives a context its own arena and binds every step
to views into it; ``run`` copies the inputs in, calls the steps, and copies the outputs out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_infer.engine.backends.base import Program
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.schedule import ParallelRunner, lanes, stage_of
from edge_infer.engine.backends.cpu.steps import STEPS
from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS
from edge_infer.engine.backends.cpu.threads import single_threaded_blas, thread_budget
from edge_infer.engine.ir import Graph, Node
from edge_infer.engine.memory import MemoryPlan, make_views, plan_memory
from edge_infer.engine.shape_inference import node_attrs, resolve_op
from edge_infer.engine.tactics import select_tactic
from edge_infer.errors import EdgeInferError

Run = Callable[[], None]


class ScratchPool:
    """Per-context resources for layers: scratch buffers (private ones, and shared ones keyed
    by role) and the work pool that splits a layer's chunks between threads."""

    def __init__(self, pool: WorkPool | None = None) -> None:
        self._shared: dict[tuple[str, tuple[int, ...], str], np.ndarray] = {}
        self.private_bytes = 0
        self.pool = pool
        self.workers = pool.workers if pool is not None else 1

    def __call__(self, shape: tuple[int, ...], dtype: Any, role: str | None) -> np.ndarray:
        dtype = np.dtype(dtype)
        shape = tuple(int(d) for d in shape)
        if role is None:
            array = _touched(shape, dtype)
            self.private_bytes += array.nbytes
            return array
        key = (role, shape, dtype.str)
        array = self._shared.get(key)
        if array is None:
            array = self._shared[key] = _touched(shape, dtype)
        return array

    @property
    def shared_bytes(self) -> int:
        return sum(a.nbytes for a in self._shared.values())


def _touched(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Zeroed memory whose pages are already mapped (writing them now, not in inference)."""
    array = np.empty(shape, dtype)
    array.fill(0)
    return array


@dataclass
class _Layer:
    node: Node
    make: Callable[[list[Any], list[np.ndarray], ScratchPool], Run]


@dataclass
class CpuState:
    arena: np.ndarray
    views: dict[str, np.ndarray]
    runs: list[Run]
    names: list[str]
    scratch: ScratchPool
    runner: ParallelRunner | None = None

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
        if self.scratch.pool is not None:
            self.scratch.pool.close()


def _reference_layer(graph: Graph, node: Node) -> Callable[..., Run]:
    op = resolve_op(graph, node)
    kernel, attrs = op.kernel, node_attrs(op, node)
    name, op_type = node.name, node.op_type

    def make(ins: list[Any], outs: list[np.ndarray], scratch: ScratchPool) -> Run:
        def run() -> None:
            try:
                result = kernel(*ins, **attrs)
            except Exception as exc:
                raise EdgeInferError(f"{op_type} layer '{name}' failed at run time: "
                                     f"{type(exc).__name__}: {exc}") from exc
            results = result if isinstance(result, tuple | list) else (result,)
            for out, value in zip(outs, results, strict=False):
                np.copyto(out, value, casting="unsafe")

        return run

    return make


class CpuProgram(Program):
    """A compiled graph for one batch size (see the module docstring)."""

    def __init__(self, graph: Graph, schedule: str | None = None) -> None:
        self.graph = graph
        self.schedule = schedule or graph.meta.get("schedule", "sequential")
        self.workers = int(graph.meta.get("branch_workers", 2))
        self.stages = stage_of(graph)
        times = self.stages if self.schedule == "parallel" else None
        self.plan: MemoryPlan = plan_memory(graph, times)
        self.layers: list[_Layer] = []
        explicit = _explicit_aliases(graph)
        for node in graph.nodes:
            if node.meta.get("noop"):
                continue
            if (len(node.outputs) == 1 and node.outputs[0].name in self.plan.aliases
                    and node.outputs[0].name not in explicit):
                continue  # a reshape the memory plan turned into a view: nothing to run
            self.layers.append(_Layer(node, self._layer_factory(node)))
        self.input_names = [v.name for v in graph.inputs]
        self.outputs = [(name, v) for name, v in graph.outputs]

    def _layer_factory(self, node: Node) -> Callable[..., Run]:
        tactic = select_tactic(node, CPU_TACTICS, node.meta.get("tactic"))
        if tactic is not None:
            return lambda ins, outs, scratch: tactic.bind(ins, outs, scratch)
        factory = STEPS.get(node.op_type) if not node.domain else None
        reference = _reference_layer(self.graph, node)
        if factory is None:
            return reference

        def make(ins: list[Any], outs: list[np.ndarray], scratch: ScratchPool) -> Run:
            run = factory(node, ins, outs, scratch)
            return run if run is not None else reference(ins, outs, scratch)

        return make

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def new_state(self) -> CpuState:
        from edge_infer.engine.backends.cpu import activations, jit

        activations.warm_up()  # compiled loops load here, not in the first inference
        jit.warm_up()
        arena = _touched((max(self.plan.arena_bytes, 64),), np.dtype(np.uint8))
        views = make_views(self.graph, self.plan, arena)
        width = thread_budget().per_context
        # branch lanes need threads of their own: with one core for this context a
        # "parallel" plan runs its layers in order (its memory plan is safe either way)
        lanes_on = self.schedule == "parallel" and width > 1
        work = WorkPool(width) if width > 1 and not lanes_on else None
        if width > 1:
            single_threaded_blas()
        pools = [ScratchPool(work) for _ in range(self.workers)]
        lane_of: dict[str, int] = {}
        if lanes_on:
            by_stage: dict[int, list[Node]] = {}
            for layer in self.layers:
                by_stage.setdefault(self.stages[layer.node.name], []).append(layer.node)
            for nodes in by_stage.values():
                for k, lane in enumerate(lanes(nodes, self.workers)):
                    lane_of.update({node.name: k for node in lane})
        runs, names = [], []
        for layer in self.layers:
            ins = [None if v is None else (v.const if v.const is not None else views[v.name])
                   for v in layer.node.inputs]
            outs = [views[v.name] for v in layer.node.outputs if v.name in views]
            runs.append(layer.make(ins, outs, pools[lane_of.get(layer.node.name, 0)]))
            names.append(layer.node.name)
        if self.schedule == "parallel" and not lanes_on:
            # the plan's buffers are live per stage: run stage by stage, in order
            order = sorted(range(len(runs)), key=lambda k: self.stages[self.layers[k].node.name])
            runs, names = [runs[k] for k in order], [names[k] for k in order]
        state = CpuState(arena, views, runs, names, pools[0])
        if lanes_on:
            grouped: dict[int, list[list[Run]]] = {}
            for layer, run in zip(self.layers, runs, strict=True):
                stage = grouped.setdefault(self.stages[layer.node.name],
                                           [[] for _ in range(self.workers)])
                stage[lane_of[layer.node.name]].append(run)
            ordered = [[lane for lane in grouped[k] if lane] for k in sorted(grouped)]
            state.runner = ParallelRunner(ordered, self.workers)
        return state

    def run(self, state: CpuState, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        views = state.views
        for name in self.input_names:
            np.copyto(views[name], feeds[name])
        if state.runner is not None:
            state.runner()
        else:
            for run in state.runs:
                run()
        return {
            name: np.array(value.const if value.const is not None else views[value.name])
            for name, value in self.outputs
        }

    def profile(self, state: CpuState, feeds: Mapping[str, np.ndarray],
                iterations: int = 5) -> dict[str, float]:
        """Median microseconds per layer over ``iterations`` runs (after one warm-up)."""
        import time

        views = state.views
        samples: dict[str, list[float]] = {n: [] for n in state.names}
        for k in range(iterations + 1):
            for name in self.input_names:
                np.copyto(views[name], feeds[name])
            for name, run in zip(state.names, state.runs, strict=True):
                t0 = time.perf_counter()
                run()
                if k:
                    samples[name].append((time.perf_counter() - t0) * 1e6)
        return {n: float(np.median(v)) for n, v in samples.items()}

    def describe(self) -> dict[str, Any]:
        return {
            "layers": [{"name": layer.node.name, "op": layer.node.op_type,
                        "tactic": layer.node.meta.get("tactic")} for layer in self.layers],
            "arena": self.plan.to_json(),
            "schedule": self.schedule,
        }


def _explicit_aliases(graph: Graph) -> set[str]:
    return {v.name for v in graph.values.values() if v.meta.get("alias_of")}
