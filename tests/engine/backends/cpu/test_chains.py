"""Conv chains in the CPU backend (backends/cpu/chains.py): which runs of layers are found,
how a chain is chosen (self-check, timing, hints at other batch sizes), and that an engine
running chains computes what the unfused engine computes — also saved and loaded, and where
the chain tactic is missing. The chain tactics here are test-local numpy ones; the native
kernel has its own tests (test_chain_native.py)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

import edge_infer.engine as api
from edge_infer.engine.backends.cpu import chains
from edge_infer.engine.backends.cpu.program import CpuProgram
from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS
from edge_infer.engine.backends.cpu.tactics.chain_spec import ChainSpec
from edge_infer.engine.memory import root_of
from edge_infer.engine.ops.fused import fused_conv
from edge_infer.engine.tactics.base import Tactic
from edge_infer.zoo.mobilenet import build_mobilenetv2


def _member(x: np.ndarray, s: Any, z: np.ndarray | None) -> np.ndarray:
    return fused_conv(
        x,
        s.weight,
        s.bias,
        z,
        group=s.group,
        strides=list(s.strides),
        pads=list(s.pads),
        dilations=list(s.dilations),
        activation=s.activation,
        activation_params=s.activation_params,
        residual=s.residual,
    )


class NumpyChain(Tactic):
    """The members' reference ops one after another (right, slow)."""

    name = "chain_numpy"
    runs = 0

    def __init__(self, spec: ChainSpec) -> None:
        self.spec = spec

    @classmethod
    def applicable(cls, spec: ChainSpec) -> bool:
        return True

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Any) -> Any:
        x, z = inputs[0], (inputs[1] if len(inputs) > 1 else None)

        def run() -> None:
            type(self).runs += 1
            v = x
            for s in self.spec.layers:
                v = _member(v, s, z if s is self.spec.project else None)
            np.copyto(outputs[0], v)

        return run


class WrongChain(NumpyChain):
    """Forgets the project layer's bias: the self-check must refuse it."""

    name = "chain_wrong"

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Any) -> Any:
        run = super().bind(inputs, outputs, scratch)
        bias = self.spec.project.bias

        def wrong() -> None:
            run()
            outputs[0] -= 0.5 + (0 if bias is None else bias.reshape(1, -1, 1, 1))

        return wrong


@pytest.fixture(scope="module")
def model() -> Any:
    # full width: the memory plan of this one puts a block's output where its input was
    return build_mobilenetv2(seed=3, batch=None, image_size=32, num_classes=10, width_mult=1.0)


@pytest.fixture
def force_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chains always win the timing (the numpy tactic is slower than the native members)."""

    def tune(signature: str, tactics: list[Any], bind: Any, cache: Any, timer: Any, check: Any):
        kept = check(tactics) if check is not None else tactics
        return kept[-1].name, {t.name: 1.0 if t.name == chains.SPLIT else 0.5 for t in kept}

    monkeypatch.setattr(chains, "tune_chain", tune)
    monkeypatch.setitem(CPU_TACTICS, "chain", (NumpyChain,))


def _opts(**kw: Any) -> api.BuildOptions:
    return api.BuildOptions(shapes={"input": (2, 3, 32, 32)}, **kw)


def _feeds(batch: int = 2) -> dict[str, np.ndarray]:
    x = np.random.default_rng(7).standard_normal((batch, 3, 32, 32)).astype(np.float32)
    return {"input": x}


def test_finds_every_inverted_residual_block(model: Any) -> None:
    from edge_infer.engine.builder import import_source, specialize
    from edge_infer.engine.profiles import make_profile

    graph, _ = import_source(model)
    g = specialize(graph, make_profile(graph, {"input": (1, 3, 32, 32)}), 1, _opts())
    found = chains.find_chains(g)
    # MobileNetV2: block 1 is dw -> project, blocks 2-17 expand -> dw -> project
    assert len(found) == 17
    assert [len(c.members) for c in found] == [2] + [3] * 16
    assert [c.spec.residual for c in found].count("pre") == 10  # the stride-1 same-width blocks
    for c in found:
        assert c.members[-2].inputs[0] is c.members[-3].outputs[0] if len(c.members) == 3 else True
        assert c.residual is None or c.residual is c.members[0].inputs[0]


def test_chained_engine_matches_the_unfused_one(model: Any, force_chain: None, tmp_path) -> None:
    plain = api.build(model, options=_opts(tune=False))
    fused = api.build(model, options=_opts())
    recorded = fused.graph(2).meta.get("chains", [])
    assert len(recorded) == 17 and all(e["tactic"] == "chain_numpy" for e in recorded)
    program = fused.program(2)
    assert isinstance(program, CpuProgram) and len(program.chains) == 17
    layers = program.describe()["layers"]
    assert sum(1 for entry in layers if entry["op"] == "Chain") == 17
    want = plain.create_context().execute(_feeds())["output"]
    NumpyChain.runs = 0
    got = fused.create_context().execute(_feeds())["output"]
    assert NumpyChain.runs == 17
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # the chain's output never shares memory with its input (they live at one step)
    plan = program.plan
    for chain in program.chains:
        x, y = (root_of(v.name, plan.aliases) for v in (chain.inputs[0], *chain.outputs))
        assert x in plan.offsets and y in plan.offsets
        xs, ys = plan.offsets[x], plan.offsets[y]
        assert xs + plan.sizes[x] <= ys or ys + plan.sizes[y] <= xs, chain.names
    # saved and loaded: the chains come back and run
    path = tmp_path / "m.engine"
    fused.save(path)
    again = api.Engine.load(path)
    NumpyChain.runs = 0
    np.testing.assert_allclose(again.create_context().execute(_feeds())["output"], want, 1e-4, 1e-4)
    assert NumpyChain.runs == 17


def test_missing_chain_tactic_runs_the_members(
    model: Any, force_chain: None, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    fused = api.build(model, options=_opts())
    want = fused.create_context().execute(_feeds())["output"]
    monkeypatch.setitem(CPU_TACTICS, "chain", ())
    graph = fused.graph(2)
    with caplog.at_level(logging.WARNING):
        program = CpuProgram(graph)
    assert program.chains == [] and "chain tactic chain_numpy is not available" in caplog.text
    state = program.new_state()
    try:
        got = program.run(state, _feeds())["output"]
    finally:
        state.close()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_the_self_check_refuses_a_wrong_chain(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CPU_TACTICS, "chain", (WrongChain,))
    engine = api.build(model, options=_opts())
    assert not engine.graph(2).meta.get("chains")
    rejected = engine.build_record["rejected_tactics"]
    assert {r["tactic"] for r in rejected} == {"chain_wrong"} and len(rejected) == 17
    assert all("max |error|" in r["error"] for r in rejected)


def test_untuned_builds_fuse_nothing(model: Any, force_chain: None) -> None:
    engine = api.build(model, options=_opts(tune=False))
    assert not engine.graph(2).meta.get("chains")


def test_other_batch_sizes_take_the_chains_of_the_tuned_ones(model: Any, force_chain: None) -> None:
    opts = api.BuildOptions(
        min_shapes={"input": (1, 3, 32, 32)},
        opt_shapes={"input": (2, 3, 32, 32)},
        max_shapes={"input": (4, 3, 32, 32)},
    )
    engine = api.build(model, options=opts)
    for batch in engine.batch_sizes:
        assert len(engine.graph(batch).meta.get("chains", [])) == 17, batch
    plain = api.build(model, options=api.BuildOptions(shapes={"input": (3, 3, 32, 32)}, tune=False))
    want = plain.create_context().execute(_feeds(3))["output"]
    got = engine.create_context().execute(_feeds(3))["output"]  # the plan for batch 4
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_a_residual_made_after_the_first_member_is_no_chain(model: Any) -> None:
    """The chain runs at its first member's place: a residual computed later than that
    would be read before it exists."""
    from edge_infer.engine.builder import import_source, specialize
    from edge_infer.engine.profiles import make_profile

    graph, _ = import_source(model)
    g = specialize(graph, make_profile(graph, {"input": (1, 3, 32, 32)}), 1, _opts())
    chain = next(c for c in chains.find_chains(g) if c.spec.residual == "pre")
    order = {n.name: k for k, n in enumerate(g.nodes)}
    assert chains._chain(g, list(chain.members), order) is not None
    z = chain.residual
    assert z is not None and z.producer is not None
    late = dict(order)
    late[z.producer.name] = order[chain.members[0].name] + 1
    assert chains._chain(g, list(chain.members), late) is None


def test_an_engine_file_with_a_bad_chain_is_refused(
    model: Any, force_chain: None, tmp_path
) -> None:
    from edge_infer.errors import EngineFileError
    from tests.engine.test_plan_check import rewrite

    path = tmp_path / "m.engine"
    api.build(model, options=_opts()).save(path)

    def unknown_tactic(plan: dict[str, Any]) -> None:
        plan["meta"]["chains"][0]["tactic"] = "chain_fastest_ever"

    bad = rewrite(path, tmp_path / "bad.engine", plan_edit=unknown_tactic)
    with pytest.raises(EngineFileError, match="chain 0 has unknown tactic 'chain_fastest_ever'"):
        api.Engine.load(bad)


def test_a_chain_barely_faster_than_its_members_is_not_kept(
    model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Build-time timings within KEEP_BELOW decide nothing: the members stay separate."""
    monkeypatch.setitem(CPU_TACTICS, "chain", (NumpyChain,))
    ratio = {"r": chains.KEEP_BELOW + 0.05}

    def tune(signature: str, tactics: list[Any], bind: Any, cache: Any, timer: Any, check: Any):
        return tactics[-1].name, {chains.SPLIT: 1.0, tactics[-1].name: ratio["r"]}

    monkeypatch.setattr(chains, "tune_chain", tune)
    assert not api.build(model, options=_opts()).graph(2).meta.get("chains")
    ratio["r"] = chains.KEEP_BELOW - 0.05
    assert len(api.build(model, options=_opts()).graph(2).meta["chains"]) == 17


class _Scripted:
    """A timer whose samples are scripted per run (the run's name), one per call."""

    def __init__(self, script: dict[str, list[float]]) -> None:
        self.script = {k: iter(v) for k, v in script.items()}

    def measure(self, run: Any) -> float:
        run()
        return next(self.script[run.name])


class _Named:
    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self) -> None:
        pass


def _tactic(name: str) -> Any:
    return type(name, (), {"name": name})()


def test_the_chain_timing_takes_the_median_of_paired_ratios() -> None:
    """A chain 0.85x its members in every round wins though the members' one odd fast sample
    (taken in another round) is below all of the chain's; a chain 0.95x in most rounds but
    fastest in one lucky round is timed at 0.95x: not kept (KEEP_BELOW)."""
    rounds = chains.CHAIN_ROUNDS
    split = [1.0] * rounds
    split[3] = 0.6  # a lone fast sample: the minima's ratio 0.85 / 0.6 would keep the members
    chain = [0.85 * s if k != 3 else 0.85 for k, s in enumerate(split)]
    timer = _Scripted({chains.SPLIT: split, "c": chain})
    tactics = [_tactic(chains.SPLIT), _tactic("c")]
    winner, times = chains.tune_chain("sig", tactics, lambda t: _Named(t.name), None, timer)
    assert winner == "c" and times["c"] == pytest.approx(0.85 * 0.6e6, rel=1e-3), times
    assert times["c"] <= chains.KEEP_BELOW * times[chains.SPLIT]
    lucky = [0.95] * rounds
    lucky[5] = 0.5  # one undisturbed chain sample: the minima say 0.5, the rounds 0.95
    timer = _Scripted({chains.SPLIT: [1.0] * rounds, "c": lucky})
    winner, times = chains.tune_chain("sig", tactics, lambda t: _Named(t.name), None, timer)
    assert times["c"] == pytest.approx(0.95e6, rel=1e-3), times
    assert times["c"] > chains.KEEP_BELOW * times[chains.SPLIT]


def test_the_chain_timing_stops_early_when_the_chain_is_clearly_slower() -> None:
    n = chains.CHAIN_ROUNDS
    timer = _Scripted({chains.SPLIT: [1.0] * n, "c": [2.0] * n})
    samples = chains.time_chain({chains.SPLIT: _Named(chains.SPLIT), "c": _Named("c")}, timer)
    assert len(samples["c"]) == chains.CHAIN_MIN_ROUNDS < n


def _tune(script: dict[str, list[float]]) -> tuple[str, dict[str, float], _Scripted]:
    timer = _Scripted(script)
    tactics = [_tactic(chains.SPLIT), _tactic("c")]
    winner, times = chains.tune_chain("sig", tactics, lambda t: _Named(t.name), None, timer)
    return winner, times, timer


def test_rounds_a_disturbance_decided_are_dropped() -> None:
    """A chain 1.1x its members, whose members' run was preempted (10x) in 8 of 15 rounds and
    it once (3.5x: a plausible ratio, but over DISTURBED times its median): the median of
    every round's ratio (0.11) would keep it; the 6 undisturbed rounds time it at 1.1x."""
    n = chains.CHAIN_ROUNDS
    split = [10.0 if k % 2 == 0 else 1.0 for k in range(n)]
    chain = [1.1] * n
    chain[1] = 3.5
    assert sum(s == 10.0 for s in split) == 8 and n - 9 >= chains.CHAIN_MIN_ROUNDS
    assert sum(r < chains.KEEP_BELOW for r in np.divide(chain, split)) > n // 2
    winner, times, _ = _tune({chains.SPLIT: split, "c": chain})
    assert winner == chains.SPLIT, times
    assert times["c"] == pytest.approx(1.1e6, rel=1e-3), times
    assert len(chains.plausible_rounds({chains.SPLIT: split, "c": chain})) == n - 9


def test_a_disturbed_chain_timing_is_repeated_then_gives_up() -> None:
    """Fewer than CHAIN_MIN_ROUNDS plausible rounds: timed again (rounds added); a timing
    that never has them keeps the members (the chain timed no faster than they)."""
    n, need = chains.CHAIN_ROUNDS, chains.CHAIN_MIN_ROUNDS
    fast = [0.1] * (n - need + 1) + [0.85] * (need - 1)  # members preempted: ratio 0.1
    winner, times, timer = _tune({chains.SPLIT: [1.0] * 2 * n, "c": fast + [0.85] * n})
    assert winner == "c" and times["c"] == pytest.approx(0.85e6, rel=1e-3), times
    assert next(timer.script["c"], None) is None  # both timings' rounds taken
    runs = 1 + chains.CHAIN_RETRIES
    winner, times, _ = _tune({chains.SPLIT: [1.0] * runs * n, "c": [0.1] * runs * n})
    assert winner == chains.SPLIT and times["c"] >= times[chains.SPLIT], times
