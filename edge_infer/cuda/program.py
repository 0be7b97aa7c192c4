"""A compiled graph on a CUDA device: per-context arena, launch list, staging and replay.

``CudaProgram`` (one per batch size, shared by contexts) holds the memory plan, the layers to
run and the engine's uploaded weights. ``new_state`` gives a context its own device arena
(the plan's ``total_bytes``: activations, then the engine's inputs and outputs), its stream,
pinned staging for the inputs and outputs, and its :class:`~edge_infer.cuda.graph_replay.
LaunchGraph`: every layer lowered to kernel launches on the arena's addresses (an alias is
a view at its address record: no copies for concat slices, splits or reshapes), each launch
declaring the byte ranges it reads and writes for the hazard checker.

``run`` = stage the inputs in pinned memory, copy them in, replay the graph, copy the outputs
out, synchronize. Layers the kernel library does not cover run on the **host fallback**: the
stream is synchronized, the layer's inputs copied to pinned memory, the engine's reference op
computes, and the output is copied back — correct, slow, and listed at build time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_infer.cuda.arena import DeviceArray, WeightStore
from edge_infer.cuda.device import Device, DeviceBuffer, HostBuffer, Region, Stream
from edge_infer.cuda.graph_replay import HostStep, LaunchGraph, LaunchStep
from edge_infer.cuda.lowering import Layer, lower
from edge_infer.engine.backends.base import Program
from edge_infer.engine.ir import Graph, Node
from edge_infer.engine.memory import MemoryPlan, plan_memory
from edge_infer.engine.shape_inference import node_attrs, resolve_op
from edge_infer.errors import EdgeInferError


class FakeBuffer:
    """Stands in for the arena when lowering at build time (entries and tiles, no memory)."""

    ptr = 0
    name = "planning"

    def region(self, offset: int = 0, nbytes: int | None = None) -> None:
        return None


@dataclass
class CudaState:
    """One execution context's device memory, stream and launch graph."""

    device: Device
    arena: DeviceBuffer
    stream: Stream
    staging: HostBuffer | None
    views: dict[str, DeviceArray]
    graph: LaunchGraph
    scratch: list[HostBuffer] = field(default_factory=list)
    aux: list[Stream] = field(default_factory=list)
    #: plan buffer → the caller's device array bound in its place (run_bound)
    bound: dict[str, DeviceArray] = field(default_factory=dict)
    #: device memory layers use between two of their launches (a reformatted input)
    device_scratch: list[DeviceBuffer] = field(default_factory=list)

    def close(self) -> None:
        try:
            self.stream.synchronize()
        finally:
            for buffer in (self.arena, self.staging, *self.scratch, *self.device_scratch):
                if buffer is not None and not buffer.freed:
                    buffer.free()
            self.graph.close()
            for stream in self.aux:
                stream.close()
            self.stream.close()


def run_layers(graph: Graph) -> list[Node]:
    """The nodes that do work: not no-ops (eliminated concats) nor reshapes that the memory
    plan turned into views."""
    plan = plan_memory(graph)
    explicit = {v.name for v in graph.values.values() if v.meta.get("alias_of")}
    out = []
    for node in graph.nodes:
        if node.meta.get("noop"):
            continue
        if (
            len(node.outputs) == 1
            and node.outputs[0].name in plan.aliases
            and node.outputs[0].name not in explicit
        ):
            continue
        out.append(node)
    return out


def stage_of(graph: Graph) -> dict[str, int]:
    """Node name → dependency depth: the layers of one stage do not depend on each other (the
    CPU's branch-parallel schedule uses the same stages)."""
    depth: dict[str, int] = {}
    for node in graph.nodes:
        level = 0
        for value in node.inputs:
            if value is not None and value.producer is not None:
                level = max(level, depth[value.producer.name] + 1)
        depth[node.name] = level
    return depth


def assign_lanes(layers: list[Node], stages: dict[str, int], max_lanes: int) -> dict[str, int]:
    """Node name → lane within its stage: a stage's layers dealt out to at most ``max_lanes``
    lanes, longest (measured time, else output size) on the least loaded lane."""
    by_stage: dict[int, list[Node]] = {}
    for node in layers:
        by_stage.setdefault(stages[node.name], []).append(node)
    lane_of: dict[str, int] = {}

    def cost(node: Node) -> float:
        out = node.outputs[0].type if node.outputs else None
        return float(node.meta.get("time_us") or (out.nbytes if out is not None else 1))

    for nodes in by_stage.values():
        load = [0.0] * min(max_lanes, len(nodes))
        for node in sorted(nodes, key=lambda n: -cost(n)):
            k = min(range(len(load)), key=load.__getitem__)
            load[k] += cost(node)
            lane_of[node.name] = k
    return lane_of


#: auxiliary streams a context may use for independent branches (lanes beyond the main one)
MAX_AUX_STREAMS = 3


def lower_node(
    node: Node,
    views: Mapping[str, Any],
    weights: Callable[[np.ndarray], Any],
    opset: int,
    upload: Callable[[np.ndarray], Any],
    scratch: Callable[[tuple[int, ...], Any], Any] | None = None,
) -> Layer:
    """``node`` bound to ``views`` (activations) and ``weights`` (constants on the device);
    ``scratch`` allocates the layer's own device memory."""
    ins = [
        None if v is None else (weights(v.const) if v.const is not None else views[v.name])
        for v in node.inputs
    ]
    consts = [None if v is None else v.const for v in node.inputs]
    outs = [views[v.name] for v in node.outputs]
    return Layer(
        node, ins, consts, outs, opset, upload, node.meta.get("tactic"), scratch_fn=scratch
    )


class CudaProgram(Program):
    """See the module docstring. ``functions(entry)`` gives the loaded kernel of an entry."""

    def __init__(
        self, graph: Graph, device: Device, weights: WeightStore, functions: Callable[[str], Any]
    ) -> None:
        self.graph = graph
        self.device = device
        self.weights = weights
        self.functions = functions
        self.layers = run_layers(graph)
        # branch parallelism: layers of one stage on several streams; the memory plan then
        # uses stages as time, so layers that may run at once never share memory
        self.parallel = graph.meta.get("schedule") == "parallel"
        self.stages = stage_of(graph)
        self.plan: MemoryPlan = plan_memory(graph, self.stages if self.parallel else None)
        self.lane_of: dict[str, int] = {}
        if self.parallel:
            self.lane_of = assign_lanes(self.layers, self.stages, 1 + MAX_AUX_STREAMS)
            order = {n.name: k for k, n in enumerate(self.layers)}
            self.layers.sort(key=lambda n: (self.stages[n.name], order[n.name]))
        self.opset = int(graph.opsets.get("", 17))
        self.input_names = [v.name for v in graph.inputs]
        self.outputs = [(name, v) for name, v in graph.outputs]
        consts = {
            id(v.const): v.const
            for n in self.layers
            for v in n.inputs
            if v is not None and v.const is not None
        }
        with device.stream("weights upload") as stream:
            uploaded = weights.upload(list(consts.values()), stream)
        self._weights = {k: d for k, d in zip(consts, uploaded, strict=True)}

    def _weight(self, array: np.ndarray) -> DeviceArray:
        return self._weights[id(array)]

    def _upload_table(self, array: np.ndarray) -> DeviceArray:
        with self.device.stream("table upload") as stream:
            return self.weights.upload([array], stream)[0]

    # -- contexts ------------------------------------------------------------------------------

    def new_state(self) -> CudaState:
        dev = self.device
        arena = dev.allocate(max(self.plan.total_bytes, 256), "arena")
        stream = dev.stream("context")
        staging = (
            dev.allocate_host(self.plan.io_bytes, "io staging") if self.plan.io_bytes else None
        )
        views = {name: DeviceArray.at(arena, a) for name, a in self.plan.addresses.items()}
        aux = [dev.stream(f"aux{k + 1}") for k in range(max(self.lane_of.values(), default=0))]
        state = CudaState(dev, arena, stream, staging, views, LaunchGraph(dev, aux), aux=aux)
        self._record(state)
        return state

    def _record(self, state: CudaState) -> None:
        """Lower every layer on ``state.views`` into a new launch graph (the old one, if any,
        is released: its host-fallback staging freed)."""
        old = state.graph
        if old.steps:
            state.stream.synchronize()
            for buffer in (*state.scratch, *state.device_scratch):
                buffer.free()
            state.scratch.clear()
            state.device_scratch.clear()
            old.close()
            state.graph = LaunchGraph(self.device, state.aux)
        views = state.views
        for node in self.layers:
            where = (
                (self.stages[node.name], self.lane_of.get(node.name, 0))
                if self.parallel
                else (0, 0)
            )
            layer = lower_node(
                node,
                views,
                self._weight,
                self.opset,
                self._upload_table,
                lambda shape, dtype, n=node.name: self._scratch(state, n, shape, dtype),
            )
            calls = lower(layer)
            reads = [
                r for a in (*layer.ins, *layer.extra_reads) if a is not None for r in a.regions()
            ]
            writes = [r for a in (*layer.outs, *layer.extra_writes) for r in a.regions()]
            if calls is None:
                state.graph.add(self._host_step(state, node, layer), *where)
            else:
                for call in calls:
                    step = LaunchStep(node.name, self.functions(call.entry), call, reads, writes)
                    state.graph.add(step, *where)

    def _scratch(
        self, state: CudaState, layer: str, shape: tuple[int, ...], dtype: Any
    ) -> DeviceArray:
        """Device memory of one layer of one context (freed with the context)."""
        dtype = np.dtype(dtype)
        nbytes = max(int(np.prod(shape)) * dtype.itemsize, 1)
        buffer = self.device.allocate(nbytes, f"scratch {layer}")
        state.device_scratch.append(buffer)
        return DeviceArray(buffer, 0, shape, dtype)

    def _host_step(self, state: CudaState, node: Node, layer: Layer) -> HostStep:
        """The host fallback of ``node``: each device input and output staged in pinned memory
        at its own layout (only the view's own byte runs are copied, so neighbouring values
        in the same buffer are neither read nor written)."""
        op = resolve_op(self.graph, node)
        kernel, attrs = op.kernel, node_attrs(op, node)
        ins = [
            a for a, c in zip(layer.ins, layer.consts, strict=True) if a is not None and c is None
        ]
        values = [*dict.fromkeys(ins), *layer.outs]  # inputs once each, then outputs
        offsets, total = [], 0
        for a in values:
            offsets.append(total)
            total += -(-max(a.extent, 1) // 256) * 256
        pinned = self.device.allocate_host(max(total, 256), f"host fallback {node.name}")
        state.scratch.append(pinned)
        place = {id(a): off for a, off in zip(values, offsets, strict=True)}

        def host_view(a: DeviceArray) -> np.ndarray:
            return np.ndarray(
                a.shape, a.dtype, buffer=pinned.array, offset=place[id(a)], strides=a.strides
            )

        def pairs(a: DeviceArray) -> list[tuple[Region, Region]]:
            return [
                (a.buffer.region(a.offset + s, n), pinned.region(place[id(a)] + s, n))
                for s, n in a.pieces()
            ]

        def compute() -> None:
            args = [
                None
                if a is None
                else (layer.consts[k] if layer.consts[k] is not None else host_view(a))
                for k, a in enumerate(layer.ins)
            ]
            try:
                result = kernel(*args, **attrs)
            except Exception as exc:
                raise EdgeInferError(
                    f"{node.op_type} layer '{node.name}' failed on the host "
                    f"fallback: {type(exc).__name__}: {exc}"
                ) from exc
            results = result if isinstance(result, tuple | list) else (result,)
            for out, value in zip(layer.outs, results, strict=False):
                np.copyto(host_view(out), value, casting="unsafe")

        return HostStep(
            node.name,
            [p for a in dict.fromkeys(ins) for p in pairs(a)],
            [p for a in layer.outs for p in pairs(a)],
            compute,
        )

    # -- running -------------------------------------------------------------------------------

    def _io(self, state: CudaState, name: str) -> tuple[Region, Region, np.ndarray]:
        """(device region, pinned region, pinned view) of engine input/output ``name``."""
        a = self.plan.addresses[name]
        rel = a.offset - self.plan.arena_bytes
        nbytes = max(a.extent, 1)
        staging = state.staging
        if staging is None:
            raise EdgeInferError(f"'{name}' has no I/O staging: the memory plan has no I/O region")
        view = np.ndarray(a.shape, a.dtype, buffer=staging.array, offset=rel, strides=a.strides)
        return state.arena.region(a.offset, nbytes), staging.region(rel, nbytes), view

    def enqueue(self, state: CudaState, feeds: Mapping[str, np.ndarray]) -> None:
        """Stage ``feeds`` and queue the copies in and the whole graph on the context's stream
        (returns before the device finishes, except at host-fallback layers)."""
        if state.bound:  # back to the arena's own input and output buffers
            self._bind(state, {})
        dev, stream = self.device, state.stream
        io = [self._io(state, name) for name in self.input_names]
        dev.host_access("stage inputs", writes=[p for _, p, _ in io])
        for name, (dst, src, view) in zip(self.input_names, io, strict=True):
            np.copyto(view, feeds[name])
            dev.copy_htod(dst, src, stream, label=f"input {name}")
        state.graph.replay(stream)
        for _, value in self.outputs:
            if value.const is None:
                src, dst, _ = self._io(state, value.name)
                dev.copy_dtoh(dst, src, stream, label=f"output {value.name}")

    def collect(self, state: CudaState) -> dict[str, np.ndarray]:
        """Wait for the context's stream; the outputs as new arrays."""
        state.stream.synchronize()
        results = {}
        for public, value in self.outputs:
            if value.const is not None:
                results[public] = np.array(value.const)
                continue
            _, pinned, view = self._io(state, value.name)
            self.device.host_access(f"read output {public}", reads=[pinned])
            results[public] = np.array(view)
        return results

    def run(self, state: CudaState, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.enqueue(state, feeds)
        return self.collect(state)

    def run_bound(
        self, state: CudaState, inputs: Mapping[str, Any], outputs: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Run with caller buffers: a :class:`DeviceArray` (device memory of this device, the
        buffer's shape and dtype, contiguous) is used in place of its plan buffer — no copy —
        and the launch graph is recorded again when the bound memory changes; numpy arrays are
        copied in (inputs) or out into (outputs). Bound outputs come back as themselves."""
        bind: dict[str, DeviceArray] = {}
        for name in self.input_names:
            if isinstance(inputs[name], DeviceArray):
                bind[name] = inputs[name]
        for public, value in self.outputs:
            array = outputs.get(public)
            if isinstance(array, DeviceArray) and value.name in self.plan.offsets:
                bind[value.name] = array
        for name, array in bind.items():
            address = self.plan.addresses[name]
            if (
                array.shape != address.shape
                or array.dtype != address.dtype
                or not (array.contiguous and array.buffer.device is self.device)
            ):
                raise EdgeInferError(
                    f"device buffer bound to '{name}' must be a contiguous {address.dtype} "
                    f"{list(address.shape)} array of this device, got {array!r}"
                )
        if {k: (v.buffer, v.offset) for k, v in bind.items()} != {
            k: (v.buffer, v.offset) for k, v in state.bound.items()
        }:
            self._bind(state, bind)
        feeds = {n: inputs[n] for n in self.input_names if n not in bind}
        dev, stream = self.device, state.stream
        io = [(n, *self._io(state, n)) for n in feeds]
        dev.host_access("stage inputs", writes=[p for _, _, p, _ in io])
        for name, dst, src, view in io:
            np.copyto(view, feeds[name])
            dev.copy_htod(dst, src, stream, label=f"input {name}")
        state.graph.replay(stream)
        copied = [(p, v) for p, v in self.outputs if v.const is None and v.name not in bind]
        for _, value in copied:
            src, dst, _ = self._io(state, value.name)
            dev.copy_dtoh(dst, src, stream, label=f"output {value.name}")
        stream.synchronize()
        results: dict[str, Any] = {}
        for public, value in self.outputs:
            if value.name in bind:
                results[public] = bind[value.name]
            elif value.const is not None:
                results[public] = np.array(value.const)
            else:
                _, pinned, view = self._io(state, value.name)
                dev.host_access(f"read output {public}", reads=[pinned])
                target = outputs.get(public)
                if isinstance(target, np.ndarray):
                    np.copyto(target, view)
                    results[public] = target
                else:
                    results[public] = np.array(view)
        return results

    def _bind(self, state: CudaState, bind: Mapping[str, DeviceArray]) -> None:
        """Point every value living in a bound buffer at the caller's memory (the rest at the
        arena), then record the launch graph again."""
        for name, address in self.plan.addresses.items():
            target = bind.get(address.buffer)
            if target is None:
                state.views[name] = DeviceArray.at(state.arena, address)
            else:
                base = self.plan.offsets[address.buffer]
                state.views[name] = DeviceArray(
                    target.buffer,
                    target.offset + address.offset - base,
                    address.shape,
                    address.dtype,
                    address.strides,
                )
        state.bound = dict(bind)
        self._record(state)

    def describe(self) -> dict[str, Any]:
        return {
            "layers": [
                {
                    "name": n.name,
                    "op": n.op_type,
                    "tactic": n.meta.get("tactic"),
                    "kernels": n.meta.get("cuda_kernels", []),
                }
                for n in self.layers
            ],
            "arena": self.plan.to_json(),
        }
