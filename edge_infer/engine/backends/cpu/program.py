"""The CPU program: a static memory plan plus one bound, allocation-free step per layer.

``CpuProgram`` (shared by contexts) holds the memory plan and each layer's implementation —
the tactic chosen at build time for convolutions, an in-place step for common ops, the
reference kernel otherwise. ``new_state`` gives a context its own arena and binds every step
to views into it; ``run`` copies the inputs in, calls the steps, and copies the outputs out.
``run_bound`` uses the caller's arrays in place of the input (and output) buffers: the views
of a bound buffer are built from the memory plan's address records relative to the caller's
array, and the layers that touch it are bound again — once per new memory, not per call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_infer.engine.backends.base import Program
from edge_infer.engine.backends.cpu import hugemem
from edge_infer.engine.backends.cpu.chains import plan_steps, recorded_chains
from edge_infer.engine.backends.cpu.parallel import WorkPool, active, fuse
from edge_infer.engine.backends.cpu.schedule import ParallelRunner, lanes, stage_of
from edge_infer.engine.backends.cpu.steps import STEPS
from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS
from edge_infer.engine.backends.cpu.threads import single_threaded_blas, thread_budget
from edge_infer.engine.ir import Graph, Node, Value
from edge_infer.engine.memory import MemoryPlan, make_views, plan_memory, view_of
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


#: bytes the arena and scratch arrays start on: numpy's allocations start 16 or 32 bytes past
#: a 64-byte boundary, by process and allocation, and kernels reading rows in place ran up
#: to 1.18x as long off 32 bytes (bench/pw_arena_ab.py); the memory plan's offsets are
#: multiples of 64 (memory.ALIGNMENT), so every planned buffer starts on a cache line
ALIGN_BYTES = hugemem.ALIGN


def _touched(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Zeroed memory on an ALIGN_BYTES boundary whose pages are already mapped (writing them
    now, not in inference); on huge pages within a state's binding (hugemem.region)."""
    return hugemem.zeros(shape, dtype, state=True)


@dataclass
class _Layer:
    """One run of the program: a node, or a chain of nodes (``members``) at its first one's
    place, reading ``inputs`` and writing ``outputs``."""

    node: Node
    make: Callable[[list[Any], list[np.ndarray], ScratchPool], Run]
    inputs: list[Value | None] = field(default_factory=list)
    outputs: list[Value] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    tactic: str | None = None
    chain: bool = False

    def __post_init__(self) -> None:
        if not self.members:
            self.inputs = list(self.node.inputs)
            self.outputs = list(self.node.outputs)
            self.members = self.node.meta.get("members", [self.node.name])
            self.tactic = self.node.meta.get("tactic")


@dataclass
class CpuState:
    arena: np.ndarray
    views: dict[str, np.ndarray]  # the views the layers are bound to now
    runs: list[Run]
    names: list[str]
    scratch: ScratchPool
    runner: ParallelRunner | None = None
    arena_views: dict[str, np.ndarray] = field(default_factory=dict)  # every value in the arena
    pools: list[ScratchPool] = field(default_factory=list)
    lane_of: dict[str, int] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)  # layer index of each run
    bound: dict[str, np.ndarray] = field(default_factory=dict)  # buffer → caller's array
    fused: list[Run] | None = None  # runs with native stretches as one call (parallel.fuse)

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
                raise EdgeInferError(
                    f"{op_type} layer '{name}' failed at run time: {type(exc).__name__}: {exc}"
                ) from exc
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
        # chains run at their first member's place; a parallel plan runs layers one by one
        chains = recorded_chains(graph) if self.schedule != "parallel" else []
        self.chains = [chain for chain, _ in chains]
        times = self.stages if self.schedule == "parallel" else plan_steps(graph, self.chains)
        self.plan: MemoryPlan = plan_memory(graph, times)
        self.layers: list[_Layer] = []
        explicit = _explicit_aliases(graph)
        starts = {chain.members[0].name: (chain, tactic) for chain, tactic in chains}
        inside = {m.name for chain in self.chains for m in chain.members[1:]}
        for node in graph.nodes:
            if node.meta.get("noop") or node.name in inside:
                continue
            if node.name in starts:
                chain, tactic = starts[node.name]
                self.layers.append(
                    _Layer(
                        node,
                        lambda ins, outs, scratch, t=tactic: t.bind(ins, outs, scratch),
                        inputs=list(chain.inputs),
                        outputs=list(chain.outputs),
                        members=chain.names,
                        tactic=tactic.name,
                        chain=True,
                    )
                )
                continue
            if (
                len(node.outputs) == 1
                and node.outputs[0].name in self.plan.aliases
                and node.outputs[0].name not in explicit
            ):
                continue  # a reshape the memory plan turned into a view: nothing to run
            self.layers.append(_Layer(node, self._layer_factory(node)))
        self.input_names = [v.name for v in graph.inputs]
        self.outputs = [(name, v) for name, v in graph.outputs]

    def _layer_factory(self, node: Node) -> Callable[..., Run]:
        tactic = select_tactic(node, CPU_TACTICS, node.meta.get("tactic"))
        if tactic is not None:
            return lambda ins, outs, scratch: tactic.bind(ins, outs, scratch)
        factory = STEPS.get(f"{node.domain}::{node.op_type}" if node.domain else node.op_type)
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
        # the arena, the scratch and the tactics' constants first prepared here on huge
        # pages of the state's own (hugemem)
        with hugemem.region():
            return self._new_state()

    def _new_state(self) -> CpuState:
        arena = _touched((max(self.plan.total_bytes, 64),), np.dtype(np.uint8))
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
        order = list(range(len(self.layers)))
        if self.schedule == "parallel" and not lanes_on:
            # the plan's buffers are live per stage: run stage by stage, in order
            order.sort(key=lambda k: self.stages[self.layers[k].node.name])
        state = CpuState(
            arena,
            dict(views),
            [],
            [self.layers[k].node.name for k in order],
            pools[0],
            arena_views=views,
            pools=pools,
            lane_of=lane_of,
            order=order,
        )
        state.runs = [self._bind_layer(state, k) for k in order]
        if lanes_on:
            state.runner = ParallelRunner(self._lanes(state), self.workers)
        return state

    def _bind_layer(self, state: CpuState, k: int) -> Run:
        layer, views = self.layers[k], state.views
        ins = [
            None if v is None else (v.const if v.const is not None else views[v.name])
            for v in layer.inputs
        ]
        outs = [views[v.name] for v in layer.outputs if v.name in views]
        return layer.make(ins, outs, state.pools[state.lane_of.get(layer.node.name, 0)])

    def _lanes(self, state: CpuState) -> list[list[list[Run]]]:
        grouped: dict[int, list[list[Run]]] = {}
        for k, run in zip(state.order, state.runs, strict=True):
            name = self.layers[k].node.name
            stage = grouped.setdefault(self.stages[name], [[] for _ in range(self.workers)])
            stage[state.lane_of[name]].append(run)
        return [[lane for lane in grouped[s] if lane] for s in sorted(grouped)]

    def bind_buffer(self, state: CpuState, name: str, array: np.ndarray | None) -> bool:
        """Use ``array`` as the memory of the plan's buffer ``name`` (``None``: the arena's).

        Every value living in that buffer (its concat slices, views, reshapes) gets a view of
        ``array`` at its address, and the layers touching them are bound again — only when the
        memory changes. Returns False when ``name`` owns no buffer (an alias or a constant):
        the caller copies instead. ``array`` must be C-contiguous with the buffer's shape and
        dtype (the runtime validates it).
        """
        if name not in self.plan.offsets:
            return False
        target = state.arena_views[name] if array is None else array
        if _same_memory(state.views[name], target):
            return True
        base = self.plan.offsets[name]
        changed = set()
        for value, address in self.plan.addresses.items():
            if address.buffer == name:
                state.views[value] = (
                    state.arena_views[value] if array is None else view_of(array, address, base)
                )
                changed.add(value)
        for pos, k in enumerate(state.order):
            layer = self.layers[k]
            if any(v is not None and v.name in changed for v in (*layer.inputs, *layer.outputs)):
                state.runs[pos] = self._bind_layer(state, k)
                state.fused = None
        if state.runner is not None:
            state.runner.stages = self._lanes(state)
        if array is None:
            state.bound.pop(name, None)
        else:
            state.bound[name] = array
        return True

    def _release(self, state: CpuState, keep: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        """Bind every caller buffer not in ``keep`` back to the arena."""
        for name in [n for n in state.bound if n not in keep]:
            self.bind_buffer(state, name, None)

    def _copy_inputs(self, state: CpuState, feeds: Mapping[str, np.ndarray]) -> None:
        """The one copy of each input into engine memory on the ``run`` path."""
        for name in self.input_names:
            np.copyto(state.views[name], feeds[name])

    def _call(self, state: CpuState) -> None:
        if state.runner is not None:
            state.runner()
            return
        if state.fused is None:
            state.fused = fuse(state.runs, state.scratch.pool)
        for run in state.fused:
            run()

    def run(self, state: CpuState, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if state.bound:
            self._release(state)
        views = state.views
        with active(state.scratch.pool):
            self._copy_inputs(state, feeds)
            self._call(state)
        return {
            name: np.array(value.const if value.const is not None else views[value.name])
            for name, value in self.outputs
        }

    def run_bound(
        self, state: CpuState, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Run with the caller's input arrays in place (no copy in) and the given output arrays
        as the output buffers (an output that is not a whole buffer of the plan is copied into
        its array after the run); outputs without an array come back as new arrays."""
        with active(state.scratch.pool):
            keep = set(self.input_names)
            copies: dict[str, tuple[np.ndarray, str]] = {}
            for public, value in self.outputs:
                array = outputs.get(public)
                if array is None:
                    continue
                if (
                    value.const is None
                    and value.name not in keep
                    and value.name not in self.input_names
                    and self.bind_buffer(state, value.name, array)
                ):
                    keep.add(value.name)
                else:
                    copies[public] = (array, value.name)
            self._release(state, keep)
            for name in self.input_names:
                self.bind_buffer(state, name, inputs[name])
            self._call(state)
        views, results = state.views, {}
        for public, value in self.outputs:
            src = value.const if value.const is not None else views[value.name]
            if public in copies:
                np.copyto(copies[public][0], src)
                results[public] = copies[public][0]
            else:
                results[public] = outputs[public] if public in outputs else np.array(src)
        return results

    def profile(
        self, state: CpuState, feeds: Mapping[str, np.ndarray], iterations: int = 5
    ) -> dict[str, float]:
        """Median microseconds per layer over ``iterations`` runs (after one warm-up)."""
        import time

        self._release(state)
        samples: dict[str, list[float]] = {n: [] for n in state.names}
        for k in range(iterations + 1):
            self._copy_inputs(state, feeds)
            for name, run in zip(state.names, state.runs, strict=True):
                t0 = time.perf_counter()
                run()
                if k:
                    samples[name].append((time.perf_counter() - t0) * 1e6)
        return {n: float(np.median(v)) for n, v in samples.items()}

    def describe(self) -> dict[str, Any]:
        return {
            "layers": [
                {
                    "name": layer.node.name,
                    "op": "Chain" if layer.chain else layer.node.op_type,
                    "tactic": layer.tactic,
                    **({"members": layer.members} if layer.chain else {}),
                }
                for layer in self.layers
            ],
            "arena": self.plan.to_json(),
            "schedule": self.schedule,
        }


def _same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.shape == b.shape
        and a.strides == b.strides
        and a.dtype == b.dtype
    )


def _explicit_aliases(graph: Graph) -> set[str]:
    return {v.name for v in graph.values.values() if v.meta.get("alias_of")}
