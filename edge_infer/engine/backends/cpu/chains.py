"""Conv chains: inverted-residual blocks run in one pass, where timing says it wins.

After every layer has its tactic, the build looks for ``[1x1 expand →] depthwise → 1x1
project`` runs of FP32 convolutions whose intermediate tensors feed nothing else
(:func:`find_chains`), and times each as a chain tactic (``CPU_TACTICS["chain"]``, e.g.
``chain_native``) against its members run one after another with their own chosen tactics
on the same buffers. A chain tactic must first agree with the members' reference ops (the
self-check of :mod:`edge_infer.engine.tactics.verify`); a chain is kept only where it is
faster. Kept chains are recorded in ``graph.meta["chains"]`` (members by name, the tactic,
the times); each member keeps its own tactic, so an engine loaded where the chain tactic is
unavailable runs the members one by one.

The program runs a chain at its first member's place: the block's input is read and its
output written there. :func:`plan_steps` gives the memory plan the same view — every member
of a chain at one time step — so the output never shares memory with the input, and the
residual must already exist when the chain starts (it is checked here).
"""

from __future__ import annotations

import itertools
import logging
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_infer.engine.backends.base import Timer
from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS
from edge_infer.engine.backends.cpu.tactics.chain_spec import ChainSpec, is_depthwise, is_pointwise
from edge_infer.engine.ir import Graph, Node, Value
from edge_infer.engine.passes.patterns import only_use
from edge_infer.engine.tactics import select_tactic
from edge_infer.engine.tactics.autotune import (
    paired_ratio,
    paired_times,
    time_paired,
    tune_layer,
)
from edge_infer.engine.tactics.base import Tactic, conv_spec
from edge_infer.engine.tactics.timing_cache import TimingCache
from edge_infer.engine.tactics.verify import disagreement, reference_outputs
from edge_infer.errors import GraphError

log = logging.getLogger(__name__)

#: the name the members run one by one go by in the timings
SPLIT = "split"
#: a chain is kept only when its build-time timing is at most this fraction of the members':
#: the build times candidates on random buffers, where both sides may run otherwise than in
#: the engine, and a few percent decide nothing (measured with the first chain kernel,
#: MobileNetV2 batch 1: chains timed 1-3 % faster at build ran 20-40 % slower in the engine;
#: at batch 8 the winners won by 10-35 %)
KEEP_BELOW = 0.9
#: rounds of a chain's timing against its members (:func:`tune_chain`): each round runs both,
#: in alternating order; at least CHAIN_MIN_ROUNDS, then until CHAIN_BUDGET_S seconds
CHAIN_ROUNDS, CHAIN_MIN_ROUNDS, CHAIN_BUDGET_S = 15, 6, 2.0
#: a chain slower than its members by this much after CHAIN_MIN_ROUNDS is timed no further
CHAIN_GIVE_UP = 1.3
#: per-round chain / members ratios a timing can show: the chain does its members' arithmetic
#: in one pass, undisturbed 0.64-1.25 on MobileNetV2's blocks (bench/chain_ab.py); a round
#: outside these bounds, or with a sample above DISTURBED times its side's median, had one
#: side disturbed (a preempted pool thread) and decides nothing (:func:`plausible_times`).
#: MobileNetV2 b1 built at load 7, 2 threads: 9 of 13 chains' timings had rounds at 0.06-0.13
#: or 4.1-19 among rounds at 0.7-1.2
PLAUSIBLE_RATIO = (0.25, 4.0)
DISTURBED = 3.0
#: a timing left with fewer than CHAIN_MIN_ROUNDS plausible rounds is repeated (its rounds
#: added) at most this many times; then the chain is not kept: disturbed timings keep no chain
CHAIN_RETRIES = 2


@dataclass(frozen=True)
class Chain:
    """Member nodes in graph order (``[expand,] depthwise, project``) and their spec."""

    members: tuple[Node, ...]
    spec: ChainSpec

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.members]

    @property
    def residual(self) -> Value | None:
        """The project layer's residual input, if it takes one."""
        last = self.members[-1]
        if self.spec.residual == "none" or len(last.inputs) < 4:
            return None
        return last.inputs[3]

    @property
    def inputs(self) -> list[Value]:
        """What a chain tactic's ``bind`` reads: the first member's input, the residual."""
        z = self.residual
        return [self.members[0].inputs[0], *([z] if z is not None else [])]  # type: ignore[list-item]

    @property
    def outputs(self) -> list[Value]:
        return [self.members[-1].outputs[0]]


def _chain(graph: Graph, members: Sequence[Node], order: dict[str, int]) -> Chain | None:
    """The chain of ``members`` (``[expand,] depthwise, project``), or None where they do not
    form one this backend may run at the first member's place."""
    if not 2 <= len(members) <= 3 or any(m.meta.get("noop") for m in members):
        return None
    specs = [conv_spec(m) for m in members]
    if any(s is None for s in specs):
        return None
    for a, b in itertools.pairwise(members):
        if b.inputs[0] is not a.outputs[0] or only_use(graph, a.outputs[0]) is not b:
            return None  # an intermediate tensor read by anything else stays a tensor
    try:
        spec = ChainSpec(*([None] * (3 - len(specs)) + specs))  # type: ignore[arg-type]
    except ValueError:
        return None
    chain = Chain(tuple(members), spec)
    z = chain.residual
    if z is None and spec.residual != "none":
        return None
    made = None if z is None or z.producer is None else order[z.producer.name]
    if made is not None and made >= order[members[0].name]:
        return None  # the residual is computed after the chain would run
    return chain


def find_chains(graph: Graph) -> list[Chain]:
    """Every ``[expand →] depthwise → project`` run of FP32 convs fusable in ``graph``."""
    order = {n.name: k for k, n in enumerate(graph.nodes)}
    chains: list[Chain] = []
    for node in graph.nodes:
        spec = conv_spec(node)
        if spec is None or not is_depthwise(spec):
            continue
        project = only_use(graph, node.outputs[0])
        pspec = None if project is None else conv_spec(project)
        if project is None or pspec is None or not is_pointwise(pspec):
            continue
        expand = node.inputs[0].producer if node.inputs[0] is not None else None
        members: list[Node] = [node, project]
        if expand is not None and only_use(graph, node.inputs[0]) is node:
            espec = conv_spec(expand)
            if espec is not None and is_pointwise(espec) and espec.residual == "none":
                members.insert(0, expand)
        chain = _chain(graph, members, order)
        if chain is None and len(members) == 3:  # e.g. a residual computed after the expand
            chain = _chain(graph, members[1:], order)
        if chain is not None:
            chains.append(chain)
    return chains


def chain_of(graph: Graph, names: Sequence[str]) -> Chain | None:
    """The chain recorded as ``names`` (graph.meta["chains"]), checked again on ``graph``."""
    try:
        members = [graph.node(name) for name in names]
    except GraphError:
        return None
    return _chain(graph, members, {n.name: k for k, n in enumerate(graph.nodes)})


def chain_tactic(chain: Chain, name: str | None = None) -> Tactic | None:
    """The chain tactic called ``name`` (any applicable one when None), if available here."""
    for tactic in CPU_TACTICS.get("chain", ()):
        if (name is None or tactic.name == name) and tactic.applicable(chain.spec):
            return tactic(chain.spec)  # type: ignore[call-arg]
    return None


def recorded_chains(graph: Graph) -> list[tuple[Chain, Tactic]]:
    """The chains of ``graph.meta["chains"]`` whose tactic runs here (the others' members run
    one by one, with a warning)."""
    found: list[tuple[Chain, Tactic]] = []
    for entry in graph.meta.get("chains", []):
        chain = chain_of(graph, entry["members"])
        tactic = None if chain is None else chain_tactic(chain, entry["tactic"])
        if chain is None or tactic is None:
            log.warning(
                "layers %s: chain tactic %s is not available here; running them one by one "
                "(correct, maybe slower)",
                ", ".join(entry["members"]),
                entry["tactic"],
            )
            continue
        found.append((chain, tactic))
    return found


def plan_steps(graph: Graph, chains: Sequence[Chain]) -> dict[str, int] | None:
    """Time steps for the memory plan: each node its own, a chain's members its first's."""
    if not chains:
        return None
    steps = {n.name: k for k, n in enumerate(graph.nodes)}
    for chain in chains:
        for member in chain.members[1:]:
            steps[member.name] = steps[chain.members[0].name]
    return steps


# --- choosing chains at build time -------------------------------------------------------


class _Split(Tactic):
    """The members one after another with their own tactics: what a chain must beat."""

    name = SPLIT

    def __init__(self, chain: Chain) -> None:
        self.chain = chain

    @classmethod
    def applicable(cls, spec: Any) -> bool:
        return True

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Any) -> Any:
        raise NotImplementedError("bound by _Buffers.split")


class _Buffers:
    """Seeded random inputs and zeroed intermediates/outputs of one chain, for timing and the
    self-check: ``values`` by value name."""

    def __init__(self, chain: Chain, rng: np.random.Generator) -> None:
        self.chain = chain
        self.values: dict[str, np.ndarray] = {}
        for v in chain.inputs:
            if v.name not in self.values:
                self.values[v.name] = rng.standard_normal(v.shape).astype(np.float32)
        for member in chain.members:
            for v in member.outputs:
                self.values[v.name] = np.zeros(v.shape, np.float32)

    def member_io(self, node: Node) -> tuple[list[Any], list[np.ndarray]]:
        ins = [
            None if v is None else v.const if v.const is not None else self.values[v.name]
            for v in node.inputs
        ]
        return ins, [self.values[v.name] for v in node.outputs]

    def split(self, scratch: Any) -> Callable[[], None]:
        runs = []
        for node in self.chain.members:
            tactic = select_tactic(node, CPU_TACTICS, node.meta.get("tactic"))
            if tactic is None:
                raise ValueError(f"layer {node.name}: no tactic")
            ins, outs = self.member_io(node)
            runs.append(tactic.bind(ins, outs, scratch))

        def run() -> None:
            for r in runs:
                r()

        return run

    def fused(self, tactic: Tactic, scratch: Any, out: np.ndarray | None = None) -> Any:
        ins = [self.values[v.name] for v in self.chain.inputs]
        target = self.values[self.chain.outputs[0].name] if out is None else out
        return tactic.bind(ins, [target], scratch)

    def reference(self) -> np.ndarray:
        """The members' reference ops, one after another, on the chain's inputs."""
        values = dict(self.values)
        for node in self.chain.members:
            ins = [
                None if v is None else v.const if v.const is not None else values[v.name]
                for v in node.inputs
            ]
            values[node.outputs[0].name] = reference_outputs(node, ins)[0]
        return values[self.chain.outputs[0].name]


def _bind(buffers: _Buffers, tactic: Tactic, scratch: Any) -> Callable[[], None]:
    return buffers.split(scratch) if isinstance(tactic, _Split) else buffers.fused(tactic, scratch)


def _check(chain: Chain, buffers: _Buffers, scratch: Any) -> Callable[[list[Tactic]], list[Tactic]]:
    """The chain self-check: a chain tactic's output against the members' reference ops
    (rejections recorded on the first member, as the layer self-check does)."""

    def check(tactics: list[Tactic]) -> list[Tactic]:
        want = buffers.reference()
        kept: list[Tactic] = []
        for tactic in tactics:
            if isinstance(tactic, _Split):
                kept.append(tactic)
                continue
            got = np.full(want.shape, np.nan, np.float32)
            try:
                buffers.fused(tactic, scratch, got)()
                why = disagreement(got, want)
            except Exception as exc:  # a candidate that cannot run the chain is none
                why = f"raised {type(exc).__name__}: {exc}"
            if why is None:
                kept.append(tactic)
                continue
            first = chain.members[0]
            first.meta.setdefault("rejected_tactics", {})[tactic.name] = why
            log.warning(
                "layers %s: chain tactic %s rejected by the self-check (%s); it will not be chosen",
                ", ".join(chain.names),
                tactic.name,
                why,
            )
        return kept

    return check


def time_chain(
    runs: dict[str, Callable[[], None]], timer: Timer | None = None
) -> dict[str, list[float]]:
    """``autotune.time_paired`` with the chain's rounds, budget and give-up (the members' run
    first in ``runs``)."""
    return time_paired(
        runs,
        timer=timer,
        rounds=CHAIN_ROUNDS,
        min_rounds=CHAIN_MIN_ROUNDS,
        budget_s=CHAIN_BUDGET_S,
        give_up=CHAIN_GIVE_UP,
    )


def plausible_rounds(samples: dict[str, list[float]]) -> list[int]:
    """The rounds of a :func:`time_chain` timing (the members' run first) that no disturbance
    decided: every run's sample at most DISTURBED times its run's median, and every other
    run's ratio to the members' within PLAUSIBLE_RATIO."""
    names = list(samples)
    base = samples[names[0]]
    medians = {n: statistics.median(samples[n]) for n in names}
    lo, hi = PLAUSIBLE_RATIO
    return [
        k
        for k in range(len(base))
        if all(samples[n][k] <= DISTURBED * medians[n] for n in names)
        and all(lo <= samples[n][k] / base[k] <= hi for n in names[1:])
    ]


def plausible_times(samples: dict[str, list[float]]) -> dict[str, float] | None:
    """``autotune.paired_times`` over :func:`plausible_rounds` only; None with fewer than
    CHAIN_MIN_ROUNDS of them."""
    keep = plausible_rounds(samples)
    if len(keep) < CHAIN_MIN_ROUNDS:
        return None
    return paired_times({n: [s[k] for k in keep] for n, s in samples.items()})


def chain_times(
    runs: dict[str, Callable[[], None]], timer: Timer | None = None
) -> dict[str, float]:
    """Microseconds per run (the members' first in ``runs``): :func:`time_chain` until its
    rounds hold CHAIN_MIN_ROUNDS plausible ones (:func:`plausible_times`; at most
    CHAIN_RETRIES repeats, each adding its rounds; none once every other run is slower than
    the members in most rounds). Where they never do, every other run is timed at no less
    than the members' time, and the members win."""
    samples: dict[str, list[float]] = {n: [] for n in runs}
    names = list(runs)
    for _ in range(1 + CHAIN_RETRIES):
        for name, more in time_chain(runs, timer).items():
            samples[name] += more
        times = plausible_times(samples)
        if times is not None:
            return times
        if all(paired_ratio(samples[n], samples[names[0]]) > 1.0 for n in names[1:]):
            break  # slower in most rounds anyway: nothing to keep, nothing to repeat
    times = paired_times(samples)
    log.info("chain timing disturbed in most rounds (%s): the members stay separate", times)
    return {n: max(us, times[names[0]]) for n, us in times.items()}


def tune_chain(
    signature: str,
    tactics: list[Tactic],
    bind: Callable[[Tactic], Callable[[], None]],
    cache: TimingCache | None,
    timer: Timer | None = None,
    check: Callable[[list[Tactic]], list[Tactic]] | None = None,
) -> tuple[str, dict[str, float]]:
    """The chain's counterpart of ``tune_layer`` (same arguments, the members' run first in
    ``tactics``): (winner, {name: microseconds}), the self-check and the timing cache as
    there, timed by :func:`chain_times`: a chain tactic's time is the members' fastest sample
    times the median of its per-round ratios to the members' over the plausible rounds.
    Under load the fastest samples of two candidates timed apart come from different moments,
    and one lucky sample decides; two runs back to back in one round see the same load.
    Measured on MobileNetV2's blocks at batch 8, 2 threads, load 6-7, 8 timings each
    (bench/chain_ab.py --decision 8): the chain / members ratio of the minima of 7
    interleaved rounds had a standard deviation of 0.29-1.29 between timings (f3 0.54-1.27,
    f8 0.60-4.31), the median of paired ratios 0.07-0.34 (f3 0.61-0.85)."""
    return tune_layer(
        signature,
        tactics,
        bind,
        cache,
        timer,
        check,
        timing=chain_times,
    )


def choose_chains(
    graph: Graph,
    *,
    tune: bool,
    hints: dict[str, Any] | None,
    rng: np.random.Generator,
    cache: TimingCache | None,
    timer: Any,
    scratch: Callable[[], Any],
    verify: bool = True,
    width: int = 1,
) -> None:
    """Record in ``graph.meta["chains"]`` the chains that run faster than their members
    (``hints``: the choices made at another batch size, taken without timing; untuned builds
    fuse nothing). ``scratch()`` makes a fresh scratch pool for one binding."""
    graph.meta.pop("chains", None)
    if hints is not None:
        wanted = {tuple(e["members"]): e for e in hints.get("chains", [])}
        kept = [
            {"members": list(names), "tactic": e["tactic"]}
            for names, e in wanted.items()
            if (chain := chain_of(graph, names)) is not None
            and chain_tactic(chain, e["tactic"]) is not None
        ]
    elif not tune:
        kept = []
    else:
        kept = []
        for chain in find_chains(graph):
            tactic = chain_tactic(chain)
            if tactic is None:
                continue
            buffers = _Buffers(chain, rng)
            split = _Split(chain)
            members = ",".join(str(m.meta.get("tactic")) for m in chain.members)
            winner, times = tune_chain(
                f"cpu {chain.spec.signature()} members={members} w{width} paired",
                [split, tactic],
                lambda t, b=buffers: _bind(b, t, scratch()),
                cache,
                timer,
                _check(chain, buffers, scratch()) if verify else None,
            )
            if winner != SPLIT and (
                not times or times[winner] <= KEEP_BELOW * times.get(SPLIT, float("inf"))
            ):
                kept.append({"members": chain.names, "tactic": winner, "times_us": times})
    if kept:
        graph.meta["chains"] = kept


__all__ = [
    "Chain",
    "chain_of",
    "chain_tactic",
    "chain_times",
    "choose_chains",
    "find_chains",
    "plan_steps",
    "plausible_rounds",
    "plausible_times",
    "recorded_chains",
    "time_chain",
    "tune_chain",
]
