"""The CUDA backend behind the engine's backend seam.

Backend options: ``device`` — ``"emu"`` (the emulator) or a GPU index (default: GPU 0, which
needs pycuda and a driver). The device an option names becomes this process's device for the
build (and for engines run afterwards), as ``--device`` does on the command line.

- **compile**: per layer, the library kernel that computes it (``lowering.py``); for each
  convolution the candidate kernels and tile shapes, timed with CUDA events on a GPU (the
  timing cache keyed by GPU name, SM, driver and layer signature), chosen by the documented
  heuristic of ``tactics.py`` on the emulator (nothing is timed there unless a timer is
  injected). Layers no kernel covers run on the host fallback; they are listed at build time,
  all at once, with their node names. The engine file gets the cubins of every source the plan
  launches, compiled for the device's SM by NVRTC now (never when an engine is loaded), and
  the manifest of their resources (registers, shared memory) for ``inspect``.
- **prepare**: the program of one batch size (``program.py``): weights uploaded once per
  device and shared by contexts; every entry point the plan launches is checked to be in the
  stored cubins; on a GPU the cubins are loaded, on the emulator the emulated library runs
  the same entry points by name.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_infer.cuda import devices
from edge_infer.cuda.arena import DeviceArray, WeightStore
from edge_infer.cuda.device import Device
from edge_infer.cuda.lowering import lower
from edge_infer.cuda.lowering.conv import conv_candidates, conv_geometry, qconv_candidates
from edge_infer.cuda.program import CudaProgram, FakeBuffer, lower_node, run_layers, stage_of
from edge_infer.cuda.tactics import Candidate, EventTimer, TuningBench, heuristic, signature
from edge_infer.engine.backends.base import Backend, Program, Timer
from edge_infer.engine.ir import Graph, Node
from edge_infer.engine.memory import plan_memory
from edge_infer.errors import BackendError, EngineCompatibilityError

if TYPE_CHECKING:
    from edge_infer.engine.options import BuildOptions

log = logging.getLogger(__name__)

MANIFEST_BLOB = "cuda/manifest.json"
CUBIN_PREFIX = "cuda/cubin/"
HOST = "host"  # the kernel entry recorded for a layer on the host fallback


class CudaBackend(Backend):
    """See the module docstring. ``timer``: time convolution tactics with it even on the
    emulator (tests); by default a GPU times with CUDA events and the emulator does not
    time."""

    name = "cuda"
    binds_device_buffers = True

    def __init__(self, timer: Timer | None = None) -> None:
        self._device_spec: str | None = None
        self._timer = timer
        self._weights: dict[int, WeightStore] = {}
        self._lock = threading.Lock()

    # -- the device ----------------------------------------------------------------------------

    def select_device(self, spec: Any) -> None:
        """Use device ``spec`` ("emu" or a GPU index) for builds and runs in this process."""
        self._device_spec = devices.parse_device(spec)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        import importlib.util

        if importlib.util.find_spec("pycuda") is None:  # probed only: pycuda_device imports it
            return (
                "no GPU here: pycuda is not installed — pip install 'edge-infer[cuda]' on a "
                "machine with an NVIDIA GPU, or pass --device emu for the emulator"
            )
        return None

    @property
    def device(self) -> Device:
        """The selected device (GPU 0 unless one was selected)."""
        spec = self._device_spec
        if spec is None:
            reason = self.unavailable_reason()
            if reason:
                raise BackendError(f"backend 'cuda': {reason}")
            spec = "0"
        return devices.open_device(spec)

    def device_fingerprint(self) -> dict[str, Any]:
        return devices.fingerprint(self.device)

    def describe(self, fingerprint: Mapping[str, Any] | None = None) -> str:
        fp = dict(self.device_fingerprint() if fingerprint is None else fingerprint)
        if not fp:
            return "an unknown CUDA device"
        text = f"{fp.get('gpu')} ({fp.get('sm')}"
        if fp.get("driver"):
            text += f", driver {fp['driver']}, runtime {fp.get('runtime')}"
        if fp.get("l4t"):
            text += f", L4T {fp['l4t']}"
        return text + ")"

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - {"device"})
        if unknown:
            raise BackendError(
                f"unknown CUDA backend options {unknown}; the CUDA backend takes "
                "'device' ('emu' or a GPU index)"
            )
        if "device" not in options or options["device"] is None:
            return {}
        spec = devices.parse_device(options["device"])
        self._device_spec = spec  # the device a build names is the process's device
        return {"device": spec}

    def rebuild_flags(self, options: Mapping[str, Any]) -> list[str]:
        spec = self.check_options(options).get("device")
        return [] if spec is None else ["--device", spec]

    def tuned_settings(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def tactic_names(self) -> frozenset[str]:
        """The convolution entry points a plan may name as a layer's tactic."""
        from edge_infer.cuda.params.conv import TACTICS_BY_ENTRY

        return frozenset(TACTICS_BY_ENTRY)

    def timer(self) -> Timer:
        if self._timer is not None:
            return self._timer
        return EventTimer(self.device, self.device.stream("tuning"))

    def _times_tactics(self) -> bool:
        return self._timer is not None or not self.device.properties.emulated

    def weights(self, device: Device) -> WeightStore:
        with self._lock:
            store = self._weights.get(id(device))
            if store is None:
                store = self._weights[id(device)] = WeightStore(device)
            return store

    # -- build ---------------------------------------------------------------------------------

    def compile(
        self,
        graph: Graph,
        *,
        batch: int,
        options: BuildOptions,
        cache: Any = None,
        hints: dict[str, Any] | None = None,
    ) -> dict[str, bytes]:
        self.check_options(options.backend_options)
        device = self.device
        sm = device.properties.sm[0] * 10 + device.properties.sm[1]
        chosen = (hints or {}).get("tactics", {})
        timer = self.timer() if options.tune and self._times_tactics() else None
        rng = np.random.default_rng(0)
        layers = run_layers(graph)
        for node in layers:
            self._choose_conv(node, sm, chosen, timer, cache, rng)
        entries, host = self._plan_kernels(graph, layers)
        if host:
            log.warning(
                "CUDA backend: %d layer(s) have no CUDA kernel and run on the host "
                "fallback (slow: the stream waits for each): %s",
                len(host),
                ", ".join(f"{n.name} ({n.op_type})" for n in host),
            )
        graph.meta["cuda"] = {
            "sm": f"sm_{sm}",
            "host_layers": [n.name for n in host],
            "entries": sorted(entries),
        }
        parallel = _has_branches(layers)
        graph.meta["schedule"] = (hints or {}).get("schedule") or (
            "parallel" if parallel else "sequential"
        )
        stages = stage_of(graph) if graph.meta["schedule"] == "parallel" else None
        graph.meta["arena"] = plan_memory(graph, stages).to_json()
        return self._cubins(sm, entries)

    def _choose_conv(
        self,
        node: Node,
        sm: int,
        chosen: Mapping[str, str],
        timer: Timer | None,
        cache: Any,
        rng: np.random.Generator,
    ) -> None:
        conv = node  # the convolution itself, or the one an Fp16Layer wraps
        candidates = conv_candidates
        if node.op_type == "Fp16Layer" and node.attrs.get("op") in ("FusedConv", "Conv"):
            conv = Node(node.attrs["op"], node.name, "", dict(node.attrs.get("op_attrs", {})))
        elif node.op_type == "QConv":
            candidates = qconv_candidates
        elif node.op_type not in ("FusedConv", "Conv"):
            return
        if len(node.inputs) < 2 or node.inputs[1] is None or node.inputs[1].const is None:
            return
        x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
        x_dtype = x.dtype
        if node.op_type == "Fp16Layer" and 0 in node.attrs.get("round_inputs", ()):
            x_dtype = np.dtype(np.float16)  # reformatted to FP16 before the convolution
        try:
            tactics = candidates(conv, x_dtype, y.dtype, x.shape, w.shape, sm)
        except BackendError:
            return
        if not tactics:
            return
        geom = conv_geometry(conv, x.shape, w.shape)
        names = [t.entry for t in tactics]
        if chosen.get(node.name) in names:
            node.meta["tactic"] = chosen[node.name]
            return
        if timer is None or len(tactics) == 1:
            node.meta["tactic"] = heuristic(geom, tactics, self.device.properties.emulated).entry
            return
        from edge_infer.engine.tactics.autotune import tune_layer

        sig = signature(geom, node.op_type, node.attrs, f"{x.dtype}->{y.dtype}")
        with TuningBench(self.device, node, rng) as bench:
            winner, times = tune_layer(sig, [Candidate(n) for n in names], bench.bind, cache, timer)
        node.meta["tactic"] = winner
        if times:
            node.meta["tactic_times_us"] = times
            node.meta["time_us"] = times[winner]

    def _plan_kernels(self, graph: Graph, layers: list[Node]) -> tuple[set[str], list[Node]]:
        """Lower every layer against a stand-in arena: the entry points each launches (in
        ``node.meta["cuda_kernels"]``), and the layers left to the host fallback."""
        plan = plan_memory(graph)
        fake: Any = FakeBuffer()
        views = {
            n: DeviceArray(fake, a.offset, a.shape, a.dtype, a.strides)
            for n, a in plan.addresses.items()
        }
        opset = int(graph.opsets.get("", 17))

        def stand_in(array: np.ndarray) -> DeviceArray:
            return DeviceArray(fake, 0, array.shape, array.dtype)

        entries: set[str] = set()
        host: list[Node] = []
        for node in layers:
            calls = lower(
                lower_node(
                    node,
                    views,
                    stand_in,
                    opset,
                    stand_in,
                    lambda shape, dtype: DeviceArray(fake, 0, shape, dtype),
                )
            )
            if calls is None:
                node.meta["cuda_kernels"] = [HOST]
                host.append(node)
            else:
                node.meta["cuda_kernels"] = [c.entry for c in calls]
                entries.update(c.entry for c in calls)
        return entries, host

    def _cubins(self, sm: int, entries: set[str]) -> dict[str, bytes]:
        """The cubins of every source the plan launches, for ``sm``, and their manifest."""
        from edge_infer.cuda import compile as nvrtc
        from edge_infer.cuda import library

        sources = sorted({library.get(e).path for e in entries})
        if not sources:
            return {MANIFEST_BLOB: json.dumps({"sm": sm, "kernels": {}}).encode()}
        cubins = nvrtc.compile_library(sm, sources=sources)
        kernels = {}
        for source in sources:
            _, resources = nvrtc.compile_source(source, sm)
            kernels.update(
                {
                    e: {
                        "registers": r.registers,
                        "shared_bytes": r.shared_bytes,
                        "source": source.name,
                    }
                    for e, r in resources.items()
                    if e in entries
                }
            )
        blobs = {f"{CUBIN_PREFIX}{name}": path.read_bytes() for name, path in cubins.items()}
        manifest = {"sm": sm, "compiler": nvrtc.nvrtc_version(), "kernels": kernels}
        blobs[MANIFEST_BLOB] = json.dumps(manifest, sort_keys=True).encode()
        return blobs

    # -- run -----------------------------------------------------------------------------------

    def prepare(self, graph: Graph, blobs: Mapping[str, bytes]) -> Program:
        device = self.device
        functions = self._functions(device, graph, blobs)
        return CudaProgram(graph, device, self.weights(device), functions)

    def _functions(self, device: Device, graph: Graph, blobs: Mapping[str, bytes]) -> Any:
        """``entry -> Function`` for every entry the plan launches, after checking each is in
        the stored cubin of its source for this device's SM."""
        from edge_infer.cuda import library
        from edge_infer.cuda.compile import read_cubin

        sm = device.properties.sm[0] * 10 + device.properties.sm[1]
        wanted = set((graph.meta.get("cuda") or {}).get("entries", []))
        infos, modules = {}, {}
        for key, data in blobs.items():
            if key.startswith(CUBIN_PREFIX):
                infos[key[len(CUBIN_PREFIX) :]] = (read_cubin(bytes(data)), data)
        for entry in sorted(wanted):
            source = library.get(entry).source
            found = infos.get(source)
            if found is None or entry not in found[0].functions:
                raise EngineCompatibilityError(
                    f"the engine's cubins lack kernel {entry} ({source}): the engine file is "
                    "incomplete; rebuild it with edge-infer build --backend cuda"
                )
            if found[0].sm != sm:
                raise EngineCompatibilityError(
                    f"the engine's cubin {source} is for sm_{found[0].sm}, this device is "
                    f"sm_{sm}: rebuild the engine on this device"
                )
        if device.properties.emulated:
            from edge_infer.cuda.emulator import EmuLibrary

            module = device.load_module(EmuLibrary.get(), "kernel library (emulated)")
            return module.function
        for source, (_, data) in infos.items():
            modules[source] = device.load_module(bytes(data), source)

        def function(entry: str) -> Any:
            return modules[library.get(entry).source].function(entry)

        return function

    def device_pipeline(self, context: Any, **settings: Any) -> Any | None:
        from edge_infer.cuda.device_pipeline import CudaDevicePipeline

        return CudaDevicePipeline(self.device, context, **settings)

    def profile_layers(
        self, program: Program, feeds: Mapping[str, np.ndarray], iterations: int = 10
    ) -> list[dict[str, Any]]:
        return []


def _has_branches(layers: list[Node]) -> bool:
    """Some stage holds two or more layers that do work (independent branches)."""
    if not layers:
        return False
    stages = stage_of(layers[0].graph)  # type: ignore[arg-type]
    count: dict[int, int] = {}
    for node in layers:
        count[stages[node.name]] = count.get(stages[node.name], 0) + 1
    return any(c >= 2 for c in count.values())
