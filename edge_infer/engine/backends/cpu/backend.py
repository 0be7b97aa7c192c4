"""The CPU backend: numpy/BLAS kernels, the portable default and the numeric reference."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_infer.engine.backends.base import Backend, Program, Timer
from edge_infer.engine.backends.cpu.chains import choose_chains
from edge_infer.engine.backends.cpu.device import cpu_fingerprint, describe
from edge_infer.engine.backends.cpu.parallel import WorkPool, active
from edge_infer.engine.backends.cpu.program import CpuProgram, ScratchPool
from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS
from edge_infer.engine.backends.cpu.threads import (
    per_context_threads,
    set_thread_budget,
    single_threaded_blas,
    thread_budget,
)
from edge_infer.engine.ir import Graph, Node
from edge_infer.engine.tactics import candidates
from edge_infer.engine.tactics.autotune import TimingCache, tune_layer
from edge_infer.engine.tactics.verify import verified
from edge_infer.errors import BackendError

if TYPE_CHECKING:
    from edge_infer.engine.options import BuildOptions

log = logging.getLogger(__name__)


class CpuBackend(Backend):
    """Backend options: ``threads`` — the threads per execution context tactics are timed
    with (default: the thread budget's share, :mod:`.threads`)."""

    name = "cpu"

    def device_fingerprint(self) -> dict[str, Any]:
        return dict(cpu_fingerprint())

    def kernels_identity(self) -> str:
        from edge_infer.engine.backends.cpu import native

        return native.library_id()

    def describe(self, fingerprint: Mapping[str, Any] | None = None) -> str:
        return describe(dict(self.device_fingerprint() if fingerprint is None else fingerprint))

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - {"threads"})
        if unknown:
            raise BackendError(f"unknown CPU backend options {unknown}; the CPU takes 'threads'")
        threads = options.get("threads")
        if threads is None:
            return {}
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise BackendError(
                f"CPU backend option threads must be an integer ≥ 1, got {threads!r}"
            )
        return {"threads": threads}

    def configure(self, *, contexts: int = 1, cores: int | None = None) -> dict[str, Any]:
        budget = set_thread_budget(cores, contexts)
        return {"threads": budget.per_context}

    def tuned_settings(self, options: Mapping[str, Any]) -> dict[str, Any]:
        threads = self.check_options(options).get("threads")
        return {"threads_per_context": threads or thread_budget().per_context}

    def runtime_settings(self) -> dict[str, Any]:
        return {"threads_per_context": thread_budget().per_context}

    def rebuild_flags(self, options: Mapping[str, Any]) -> list[str]:
        threads = self.check_options(options).get("threads")
        return [] if threads is None else ["--threads", str(threads)]

    def tactic_names(self) -> frozenset[str]:
        return frozenset(t.name for table in CPU_TACTICS.values() for t in table)

    def precision_note(self, precision: str) -> str | None:
        if precision == "fp32":
            return None
        if precision == "fp16":
            return _fp16_note()
        return _int8_note(precision)

    def compile(
        self,
        graph: Graph,
        *,
        batch: int,
        options: BuildOptions,
        cache: TimingCache | None = None,
        hints: dict[str, Any] | None = None,
    ) -> dict[str, bytes]:
        """Choose a tactic per layer by timing (unless ``options.tune`` is off) and record the
        winner, its measured time and the memory plan in the graph's metadata. ``hints``
        (choices made at another batch size) replace the timing. Tactics are timed with
        ``backend_options["threads"]`` threads per context when given, else with the thread
        budget's share. The CPU has no compiled artifacts to store."""
        with self.timing_scope(options.backend_options):
            return self._compile(graph, options.tune, cache, hints, options.verify_tactics)

    def timing_scope(self, options: Mapping[str, Any]) -> AbstractContextManager[Any]:
        """Contexts of ``threads`` threads (the option's; else the budget's share)."""
        return per_context_threads(self.check_options(options).get("threads"))

    def _compile(
        self,
        graph: Graph,
        tune: bool,
        cache: TimingCache | None,
        hints: dict[str, Any] | None,
        verify: bool = True,
    ) -> dict[str, bytes]:
        rng = np.random.default_rng(0)
        chosen = (hints or {}).get("tactics", {})
        width = thread_budget().per_context
        pool = WorkPool(width) if width > 1 else None  # time tactics as they will run
        if pool is not None:
            single_threaded_blas()
        try:
            self._choose_tactics(graph, tune, chosen, rng, cache, pool, verify)
            choose_chains(
                graph,
                tune=tune,
                hints=hints,
                rng=rng,
                cache=cache,
                timer=self.timer(),
                scratch=lambda: ScratchPool(pool),
                verify=verify,
                width=_pool_width(pool),
            )
        finally:
            if pool is not None:
                pool.close()
        graph.meta["schedule"] = (hints or {}).get("schedule", "sequential")
        if tune and hints is None and width > 1 and _has_parallel_branches(graph):
            graph.meta["schedule"] = _pick_schedule(graph, rng, cache, self.timer())
        graph.meta["arena"] = CpuProgram(graph).plan.to_json()
        return {}

    def _choose_tactics(
        self,
        graph: Graph,
        tune: bool,
        chosen: dict[str, str],
        rng: np.random.Generator,
        cache: TimingCache | None,
        pool: WorkPool | None,
        verify: bool = True,
    ) -> None:
        for node in graph.nodes:
            tactics, spec = candidates(node, CPU_TACTICS)
            if not tactics:
                continue
            instances = [t(spec) for t in tactics]  # type: ignore[call-arg]
            names = [t.name for t in instances]
            if chosen.get(node.name) in names:
                winner, times = chosen[node.name], {}
            elif tune:
                bound: dict[str, Any] = {}  # runs the self-check bound, timed as they are
                with active(pool):  # the helpers spin as they will in an inference
                    winner, times = tune_layer(
                        f"cpu {spec.signature()} w{_pool_width(pool)}",
                        instances,
                        lambda t, n=node, b=bound: (
                            b.pop(t.name, None) or _bind_random(t, n, rng, pool)
                        ),
                        cache,
                        self.timer(),
                        _self_check(node, pool, bound) if verify else None,
                    )
            else:
                winner, times = instances[0].name, {}
            node.meta["tactic"] = winner
            if times:
                node.meta["tactic_times_us"] = times
                node.meta["time_us"] = times[winner]

    def prepare(self, graph: Graph, blobs: Mapping[str, bytes]) -> Program:
        return CpuProgram(graph)

    def profile_layers(
        self, program: Program, feeds: Mapping[str, np.ndarray], iterations: int = 10
    ) -> list[dict[str, Any]]:
        """Median host-clock time of each layer, run in order on a fresh context state."""
        if not isinstance(program, CpuProgram):
            return []
        state = program.new_state()
        try:
            times = program.profile(state, feeds, iterations=iterations)
        finally:
            state.close()
        layers = [
            {
                "name": layer.node.name,
                "op": "Chain" if layer.chain else layer.node.op_type,
                "members": layer.members,
                "tactic": layer.tactic,
                "time_us": times[layer.node.name],
            }
            for layer in program.layers
        ]
        return sorted(layers, key=lambda entry: -entry["time_us"])


def _fp16_note() -> str | None:
    """FP16 runs the FP32 kernels on float16 storage (tactics/cpu_fp16.py): nothing to say
    where the native float16 conversions are here; without them numpy converts, slowly."""
    from edge_infer.engine.backends.cpu import native

    if native.available():
        return None
    return (
        "FP16 on the CPU backend without native kernels (no C compiler) converts its float16 "
        "storage with numpy: slower than FP32 here. Build FP32 for speed on this CPU, or "
        "install a C compiler (EDGE_INFER_CC)"
    )


def _int8_note(precision: str) -> str | None:
    """INT8 layers run native integer kernels (tactics/cpu_qconv.py, cpu_qdepthwise.py:
    VNNI / AVX2 / sdot dot products): nothing to say where they are here; without a C
    compiler every INT8 layer runs the reference op."""
    from edge_infer.engine.backends.cpu import native

    if native.available():
        return None
    return (
        f"{precision.upper()} on the CPU backend without native kernels (no C compiler) runs "
        "validation kernels: the numbers a GPU engine of this precision must match, several "
        "times slower than FP32 here. Build FP32 for speed on this CPU, or install a C "
        "compiler (EDGE_INFER_CC)"
    )


def _self_check(node: Node, pool: WorkPool | None, bound: dict[str, Any]) -> Any:
    """The tactic self-check of ``node`` (tactics/verify.py), run on this context's pool;
    its rejections go to ``node.meta["rejected_tactics"]`` (the build record), the runs of
    the candidates that pass to ``bound``."""

    def check(tactics: list[Any]) -> list[Any]:
        kept, rejected = verified(
            node, tactics, lambda t, ins, outs: t.bind(ins, outs, ScratchPool(pool)), bound=bound
        )
        for r in rejected:
            node.meta.setdefault("rejected_tactics", {})[r.tactic] = r.error
        return kept

    return check


def _random(shape: Any, dtype: Any, rng: np.random.Generator) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    return np.zeros(shape, dtype)


def _pool_width(pool: WorkPool | None) -> int:
    return pool.workers if pool is not None else 1


def _bind_random(
    tactic: Any, node: Node, rng: np.random.Generator, pool: WorkPool | None = None
) -> Any:
    ins = [
        None if v is None else (v.const if v.const is not None else _random(v.shape, v.dtype, rng))
        for v in node.inputs
    ]
    outs = [np.zeros(v.shape, v.dtype) for v in node.outputs]
    return tactic.bind(ins, outs, ScratchPool(pool))


def _has_parallel_branches(graph: Graph) -> bool:
    """True when some stage holds two or more layers that each take real time."""
    from edge_infer.engine.backends.cpu.schedule import stage_of

    stages = stage_of(graph)
    heavy: dict[int, int] = {}
    for node in graph.nodes:
        if node.meta.get("time_us", 0) >= 50 and not node.meta.get("noop"):
            heavy[stages[node.name]] = heavy.get(stages[node.name], 0) + 1
    return any(count >= 2 for count in heavy.values())


def _schedule_signature(graph: Graph) -> str:
    """What the schedule choice depends on: every layer's kind, shapes and tactic, in order
    (and the rule choosing, "v2": paired rounds and PARALLEL_GAIN)."""
    import hashlib

    digest = hashlib.sha256()
    for node in graph.nodes:
        shapes = [None if v is None or v.type is None else list(v.shape) for v in node.inputs]
        digest.update(
            f"{node.op_type}{shapes}{node.meta.get('tactic')}{node.meta.get('noop')};".encode()
        )
    return "cpu schedule v2 " + digest.hexdigest()[:32]


#: branch lanes are chosen only when they take at most this fraction of the sequential
#: schedule's time (the median of paired rounds): a narrower win is within what a loaded
#: host moves one schedule against the other, and the sequential schedule is the one whose
#: every layer was tuned at this width
PARALLEL_GAIN = 0.9


def _pick_schedule(
    graph: Graph, rng: np.random.Generator, cache: TimingCache | None, timer: Timer
) -> str:
    """Time the whole program sequentially and with branch parallelism in paired rounds
    (back to back, the order alternating: both see the same load); keep branch lanes only
    when their median ratio to the sequential schedule is at most :data:`PARALLEL_GAIN`.

    Each schedule timed apart (its fastest of 5 runs) let a busy host decide: YOLOv8n-320
    INT8, built at 2 threads beside three busy processes, timed the sequential schedule at
    31.2 ms and branch lanes at 17.1 and kept lanes, which on a quiet host run most of the
    network on one thread (its head's two branches are the only wide stages)."""
    from edge_infer.engine.tactics.autotune import paired_ratio, paired_times, time_paired

    key = _schedule_signature(graph)
    hit = cache.get(key, ["sequential", "parallel"]) if cache is not None else None
    if hit is not None:
        graph.meta["schedule_times_us"] = dict(hit.get("times_us", {}))
        return str(hit["tactic"])
    feeds = {v.name: _random(v.shape, v.dtype, rng) for v in graph.inputs}
    programs = {s: CpuProgram(graph, s) for s in ("sequential", "parallel")}
    states = {s: p.new_state() for s, p in programs.items()}
    try:
        runs = {s: functools.partial(p.run, states[s], feeds) for s, p in programs.items()}
        samples = time_paired(
            runs,
            budget_s=2.0,
            give_up=1.0 / PARALLEL_GAIN,
            timer=timer,
        )
    finally:
        for state in states.values():
            state.close()
    graph.meta["schedule_times_us"] = paired_times(samples)
    ratio = paired_ratio(samples["parallel"], samples["sequential"])
    winner = "parallel" if ratio <= PARALLEL_GAIN else "sequential"
    if cache is not None:
        cache.put(key, winner, graph.meta["schedule_times_us"])
    return winner
