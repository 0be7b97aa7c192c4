"""The runtime: :class:`Engine` (immutable, shareable) and :class:`ExecutionContext`.

An engine holds one compiled plan per batch size of its profile; a context holds the mutable
state (activation arena, stream) of one concurrent worker. Every call validates input names,
dtypes and shapes against the engine's bindings.
"""

from __future__ import annotations

import json
import os
import threading
import zlib
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_infer._version import __version__
from edge_infer.engine.backends import get_backend
from edge_infer.engine.backends.base import Program, Stream
from edge_infer.engine.bindings import Bindings
from edge_infer.engine.plan import plan_to_graph
from edge_infer.engine.plan_check import check_header, check_plan, check_plans
from edge_infer.engine.profiles import Profile
from edge_infer.engine.serialize import read_engine, write_engine
from edge_infer.errors import (
    BackendError,
    BindingError,
    EngineCompatibilityError,
    EngineFileError,
)


@dataclass(frozen=True)
class Binding:
    """An engine input or output: name, dtype, and shape (-1 where the batch varies)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    batched: bool

    def __str__(self) -> str:
        dims = "x".join("N" if d < 0 else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype.name}[{dims}]"


class Engine:
    """A built engine: plans per batch size, weights, bindings and its build record."""

    def __init__(
        self,
        header: Mapping[str, Any],
        tensors: Mapping[str, np.ndarray],
        blobs: Mapping[str, bytes] | None = None,
        *,
        path: str | None = None,
    ) -> None:
        check_header(header)  # every field read below has its type and range
        try:
            self.header = dict(header)
            self.build_record: dict[str, Any] = dict(header["build"])
            self.profile = Profile.from_json(header["profile"])
            b = header["bindings"]
            self.inputs = [_binding(e) for e in b["inputs"]]
            self.outputs = [_binding(e) for e in b["outputs"]]
            self._plans: dict[int, Any] = _read_plans(header["plans"], blobs or {})
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineFileError(
                f"engine header is incomplete: {type(exc).__name__}: {exc}"
            ) from exc
        self.tensors = tensors
        self.blobs = dict(blobs or {})
        self.path = path
        self.backend_name: str = self.build_record.get("backend", "cpu")
        check_plans(self._plans, self.profile)
        self._programs: dict[int, Program] = {}
        self._lock = threading.Lock()
        self._validated = False

    # -- loading and saving -----------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, *, check_device: bool = True) -> Engine:
        """Read an engine file; refuse files built for another device or version."""
        f = read_engine(path)
        engine = cls(f.header, f.tensors, f.blobs, path=os.fspath(path))
        engine.check_compatible(check_device=check_device)
        engine.validate()  # after the version check: another version's plans get its message
        return engine

    def validate(self) -> None:
        """Check every plan (ops, attributes, shapes, tactics) before anything compiles it;
        raise :class:`EngineFileError` naming the fault. Runs once, at load or first use."""
        if self._validated:
            return
        try:
            names = get_backend(self.backend_name).tactic_names()
        except BackendError:
            names = None  # the backend is not here (inspect): its tactics are not checked
        bindings = {"inputs": self.inputs, "outputs": self.outputs}
        for batch, plan in sorted(self._plans.items()):
            check_plan(plan, self.tensors, batch, bindings, names)
        self._validated = True

    def save(self, path: str | os.PathLike) -> int:
        """Write the engine atomically; returns bytes written."""
        return write_engine(path, self.header, self.tensors, self.blobs)

    def random_feeds(self, batch: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
        """Random inputs matching the bindings (batch: the profile's opt by default):
        standard normal floats, booleans, small integers."""
        rng = np.random.default_rng(seed)
        batch = batch or self.profile.opt_batch
        feeds = {}
        for b in self.inputs:
            shape = [batch if d < 0 or (b.batched and i == 0) else d for i, d in enumerate(b.shape)]
            if b.dtype.kind == "f":
                feeds[b.name] = rng.standard_normal(shape).astype(b.dtype)
            elif b.dtype.kind == "b":
                feeds[b.name] = rng.integers(0, 2, shape).astype(bool)
            else:
                feeds[b.name] = rng.integers(0, 10, shape).astype(b.dtype)
        return feeds

    def check_compatible(self, *, check_device: bool = True) -> None:
        rec = self.build_record
        where = self.path or "engine"
        command = rec.get("rebuild_command", "edge-infer build MODEL.onnx")
        how = (
            "Engines are tied to the edge_infer version and the device they were built on: "
            f"rebuild it here with `{command}`."
        )
        if rec.get("edge_infer_version") != __version__:
            raise EngineCompatibilityError(
                f"{where} was built with edge_infer {rec.get('edge_infer_version')}; this is "
                f"edge_infer {__version__}. {how}"
            )
        backend = get_backend(self.backend_name)
        if check_device and rec.get("device") != backend.device_fingerprint():
            raise EngineCompatibilityError(
                f"{where} was built for {_describe(backend, rec.get('device'))}; this "
                f"machine is {backend.describe()}. {how}"
            )

    # -- plans ------------------------------------------------------------------------------
    def plan(self, batch: int) -> dict[str, Any]:
        """The JSON plan compiled for ``batch`` (as stored in the engine file)."""
        return self._plans[self.plan_batch_for(batch)]

    @property
    def batch_sizes(self) -> list[int]:
        return sorted(self._plans)

    def plan_batch_for(self, batch: int) -> int:
        """The specialization that serves ``batch`` (the smallest one not below it)."""
        p = self.profile
        if not p.min_batch <= batch <= p.max_batch:
            raise BindingError(
                f"batch {batch} is outside the engine's profile [{p.min_batch}, {p.max_batch}]; "
                "rebuild with --min-shapes/--max-shapes covering it"
            )
        return min(b for b in self._plans if b >= batch)

    def graph(self, batch: int) -> Any:
        """The optimized graph of the plan for ``batch`` (a fresh copy)."""
        return plan_to_graph(self._plans[self.plan_batch_for(batch)], self.tensors)

    def program(self, plan_batch: int) -> Program:
        with self._lock:
            program = self._programs.get(plan_batch)
            if program is None:
                self.validate()
                graph = plan_to_graph(self._plans[plan_batch], self.tensors)
                prefix = f"{plan_batch}/"
                blobs = {k[len(prefix) :]: v for k, v in self.blobs.items() if k.startswith(prefix)}
                program = get_backend(self.backend_name).prepare(graph, blobs)
                self._programs[plan_batch] = program
            return program

    def create_context(self) -> ExecutionContext:
        return ExecutionContext(self)

    @property
    def tuned_settings(self) -> dict[str, Any]:
        """The backend settings the tactics were timed at (the CPU's threads per context)."""
        rec = self.build_record
        settings = dict(rec.get("backend_settings") or {})
        if not settings and rec.get("threads_per_context"):  # engines from before the record
            settings["threads_per_context"] = rec["threads_per_context"]
        return settings

    def tuning_notes(self) -> list[str]:
        """Where this process would run the engine otherwise than its tactics were timed
        (e.g. another thread count): the fastest tactics there may differ; empty if none."""
        now = get_backend(self.backend_name).runtime_settings()
        return [
            f"tactics were timed with {key}={value}, this process runs {key}={now[key]}"
            for key, value in self.tuned_settings.items()
            if key in now and now[key] != value
        ]

    def profile_layers(
        self, feeds: Mapping[str, np.ndarray], *, iterations: int = 10
    ) -> list[dict[str, Any]]:
        """Each layer's time on ``feeds`` (the backend's per-layer profile, slowest first);
        empty where the backend cannot time layers one by one."""
        batch = ExecutionContext.validate_feeds(self, feeds)
        plan_batch = self.plan_batch_for(batch)
        if plan_batch != batch:
            feeds = {
                b.name: _pad_batch(feeds[b.name], plan_batch) if b.batched else feeds[b.name]
                for b in self.inputs
            }
        return get_backend(self.backend_name).profile_layers(
            self.program(plan_batch), feeds, iterations
        )

    def describe(self) -> dict[str, Any]:
        return {
            "inputs": [str(b) for b in self.inputs],
            "outputs": [str(b) for b in self.outputs],
            "profile": self.profile.to_json(),
            "build": self.build_record,
        }


#: bound on the decompressed size of the plans (a zip bomb is refused, not inflated)
MAX_PLANS_BYTES = 256 << 20


def _read_plans(spec: Any, blobs: Mapping[str, bytes]) -> dict[int, Any]:
    """The plans of every batch size: inline JSON, or a zlib-compressed JSON blob."""
    if isinstance(spec, Mapping) and "blob" in spec:
        data = blobs.get(spec["blob"])
        if data is None:
            raise EngineFileError(f"engine plans blob '{spec['blob']}' is missing")
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(bytes(data), MAX_PLANS_BYTES)
        except zlib.error as exc:
            raise EngineFileError(f"engine plans are corrupt: {exc}") from exc
        if inflater.unconsumed_tail:
            raise EngineFileError("engine plans exceed the size limit")
        try:
            spec = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise EngineFileError(f"engine plans are not valid JSON: {exc}") from exc
    if not isinstance(spec, Mapping):
        raise EngineFileError("engine plans are not a JSON object of batch size -> plan")
    return {int(k): v for k, v in spec.items()}


def _describe(backend: Any, device: Any) -> str:
    """A device fingerprint read from a file, in words (the backend's, when it can read it:
    the fingerprint is checked only for equality with this machine's)."""
    try:
        return str(backend.describe(device if isinstance(device, Mapping) else {}))
    except (TypeError, ValueError, AttributeError, KeyError):
        return "a device whose fingerprint this edge_infer cannot read"


def _binding(entry: Mapping[str, Any]) -> Binding:
    return Binding(
        entry["name"],
        np.dtype(entry["dtype"]),
        tuple(entry["shape"]),
        bool(entry.get("batched", False)),
    )


class ExecutionContext:
    """The mutable state of one worker: use one context per concurrent thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._states: dict[int, Any] = {}
        self._busy = threading.Lock()
        self._stream: Stream | None = None
        self._bindings = Bindings(engine)
        # like a TensorRT context, allocate up front (arena, scratch, compiled loops) for the
        # batch size the engine was tuned for; other plans are prepared on first use
        opt = engine.plan_batch_for(engine.profile.opt_batch)
        self._states[opt] = engine.program(opt).new_state()

    def __enter__(self) -> ExecutionContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        for state in self._states.values():
            closer = getattr(state, "close", None)
            if closer is not None:
                closer()
        self._states.clear()

    def validate(self, feeds: Mapping[str, np.ndarray]) -> int:
        """Check names, dtypes and shapes; returns the batch size of the call."""
        return self.validate_feeds(self.engine, feeds)

    @staticmethod
    def validate_feeds(engine: Engine, feeds: Mapping[str, np.ndarray]) -> int:
        """Check ``feeds`` against ``engine``'s inputs; returns the batch size of the call."""
        names = {b.name for b in engine.inputs}
        unknown = sorted(set(feeds) - names)
        missing = sorted(names - set(feeds))
        if unknown or missing:
            raise BindingError(
                f"inputs do not match the engine: unknown {unknown}, missing {missing}; "
                f"expected {[str(b) for b in engine.inputs]}"
            )
        batch: int | None = None
        for b in engine.inputs:
            array = feeds[b.name]
            if not isinstance(array, np.ndarray):
                raise BindingError(
                    f"input '{b.name}' must be a numpy array, got {type(array).__name__}"
                )
            if array.dtype != b.dtype:
                raise BindingError(
                    f"input '{b.name}' must be {b.dtype.name}, got "
                    f"{array.dtype.name}; convert with .astype(np.{b.dtype.name})"
                )
            want = list(b.shape)
            if b.batched:
                want[0] = -1
            ok = len(array.shape) == len(want) and all(
                w < 0 or w == d for w, d in zip(want, array.shape, strict=False)
            )
            if not ok:
                raise BindingError(
                    f"input '{b.name}' must have shape "
                    f"{['N' if w < 0 else w for w in want]}, got {list(array.shape)}"
                )
            if b.batched:
                if batch is not None and array.shape[0] != batch:
                    raise BindingError(
                        f"inputs disagree on the batch size: {batch} and "
                        f"{array.shape[0]} ('{b.name}')"
                    )
                batch = array.shape[0]
        return batch if batch is not None else engine.profile.min_batch

    def execute(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run synchronously; returns every output by name (arrays owned by the caller)."""
        batch = self.validate(feeds)
        return self._execute(feeds, batch)

    def execute_async(self, feeds: Mapping[str, np.ndarray]) -> Future:
        """Queue a run on this context's stream; the future yields the outputs."""
        batch = self.validate(feeds)
        if self._stream is None:
            self._stream = get_backend(self.engine.backend_name).create_stream()
        return self._stream.submit(lambda: self._execute(feeds, batch))

    # -- caller-owned buffers (engine/bindings.py) ------------------------------------------
    def bind(self, name: str, array: np.ndarray) -> None:
        """Bind the caller's ``array`` to input or output ``name``, used in place by the runs
        that follow (no copy into or out of the engine's memory when the engine has a plan for
        its batch size: ``engine.plan_batch_for(n)``). Keep it alive and unchanged while a run
        is in flight. Invalid buffers raise :class:`BindingError`."""
        self._bindings.bind(name, array)

    def unbind(self, name: str) -> None:
        """Forget the buffer bound to ``name``."""
        self._bindings.unbind(name)

    def execute_bound(self) -> dict[str, np.ndarray]:
        """Run on the bound buffers now; returns every output (the bound arrays themselves,
        new arrays for outputs without one)."""
        batch = self._bindings.batch()
        return self._run_bound(dict(self._bindings.inputs), dict(self._bindings.outputs), batch)

    def enqueue(self, stream: Stream | None = None) -> Future:
        """Queue a run on the bound buffers on ``stream`` (default: this context's own);
        the future yields what :meth:`execute_bound` returns."""
        batch = self._bindings.batch()
        inputs, outputs = dict(self._bindings.inputs), dict(self._bindings.outputs)
        if stream is None:
            if self._stream is None:
                self._stream = get_backend(self.engine.backend_name).create_stream()
            stream = self._stream
        return stream.submit(lambda: self._run_bound(inputs, outputs, batch))

    def _run_bound(
        self, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], batch: int
    ) -> dict[str, np.ndarray]:
        plan_batch = self.engine.plan_batch_for(batch)
        if plan_batch != batch and self._bindings.has_device_arrays():
            raise BindingError(
                f"device buffers of batch {batch} need a plan of that batch size; this engine "
                f"has plans for {self.engine.batch_sizes}: bind one of those sizes or "
                "rebuild with a profile that covers it"
            )
        if plan_batch != batch:  # no plan of this size: padded into the arena (copies)
            results = self._execute(inputs, batch)
            for name, array in outputs.items():
                np.copyto(array, results[name])
            return {**results, **outputs}
        program = self.engine.program(plan_batch)
        with self._busy:
            state = self._states.get(plan_batch)
            if state is None:
                state = self._states[plan_batch] = program.new_state()
            return program.run_bound(state, inputs, outputs)

    def _execute(self, feeds: Mapping[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
        plan_batch = self.engine.plan_batch_for(batch)
        program = self.engine.program(plan_batch)
        if plan_batch != batch:
            feeds = {
                b.name: _pad_batch(feeds[b.name], plan_batch) if b.batched else feeds[b.name]
                for b in self.engine.inputs
            }
        with self._busy:
            state = self._states.get(plan_batch)
            if state is None:
                state = self._states[plan_batch] = program.new_state()
            outputs = program.run(state, feeds)
        if plan_batch != batch:
            outputs = {
                b.name: outputs[b.name][:batch] if b.batched else outputs[b.name]
                for b in self.engine.outputs
            }
        return outputs


def _pad_batch(array: np.ndarray, batch: int) -> np.ndarray:
    padded = np.zeros((batch, *array.shape[1:]), dtype=array.dtype)
    padded[: array.shape[0]] = array
    return padded
