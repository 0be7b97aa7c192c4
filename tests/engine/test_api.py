"""The public engine API: lazy, complete, and the seam the daemon and commands use."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import edge_infer
import edge_infer.engine as api
from edge_infer.engine.backends import get_backend
from edge_infer.engine.backends.base import Timer
from edge_infer.engine.backends.cpu.threads import set_thread_budget, thread_budget
from edge_infer.engine.network import Network
from edge_infer.engine.tactics.autotune import tune_layer


def test_importing_the_package_and_the_api_stays_cheap() -> None:
    code = (
        "import sys, edge_infer, edge_infer.engine; "
        "print(sorted(m for m in ('onnx', 'cv2', 'zmq', 'pycuda', 'edge_infer.engine.builder',"
        " 'edge_infer.engine.backends.cpu') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


def test_every_public_name_resolves() -> None:
    for name in api.__all__:
        assert getattr(api, name) is not None, name
    assert edge_infer.build is api.build and edge_infer.BuildOptions is api.BuildOptions
    with pytest.raises(AttributeError):
        api.builder_internals  # noqa: B018


def _net() -> Network:
    net = Network("two", seed=1)
    x = net.add_input("x", ("N", 4, 12, 12))
    a = net.add_activation(net.add_convolution(x, 8, 3, padding=1), "relu")
    net.mark_output(net.add_convolution(a, 4, 1), "y")
    return net


def test_profile_layers_is_the_backends_and_covers_every_layer() -> None:
    engine = api.build(
        _net(),
        options=api.BuildOptions(
            min_shapes={"x": (1, 4, 12, 12)},
            opt_shapes={"x": (2, 4, 12, 12)},
            max_shapes={"x": (4, 4, 12, 12)},
            tune=False,
        ),
    )
    x = np.random.default_rng(0).standard_normal((3, 4, 12, 12)).astype(np.float32)
    layers = engine.profile_layers({"x": x}, iterations=3)  # batch 3 runs on the plan for 4
    names = {n.name for n in engine.graph(4).nodes if not n.meta.get("noop")}
    assert {entry["name"] for entry in layers} <= names and len(layers) >= 2
    times = [entry["time_us"] for entry in layers]
    assert times == sorted(times, reverse=True) and all(t > 0 for t in times)
    assert all(entry["tactic"] for entry in layers if entry["op"] == "FusedConv")


def test_configure_backend_shares_the_cores_and_returns_build_options() -> None:
    before = thread_budget()
    try:
        assert api.configure_backend("cpu", contexts=2, cores=4) == {"threads": 2}
        assert get_backend("cpu").runtime_settings() == {"threads_per_context": 2}
        assert api.configure_backend("cpu", contexts=4, cores=2) == {"threads": 1}
    finally:
        set_thread_budget(before.cores, before.concurrent_contexts)


def test_cpu_backend_describes_its_device() -> None:
    cpu = get_backend("cpu")
    fp = cpu.device_fingerprint()
    assert fp["model"] in cpu.describe() and fp["arch"] in cpu.describe()
    other = {**fp, "model": "Some Other CPU"}
    assert "Some Other CPU" in cpu.describe(other)


class _Fake:
    def __init__(self, name: str) -> None:
        self.name = name


class _CostTimer(Timer):
    """A device clock: each run reports the cost it carries, whatever the host clock says."""

    def measure(self, run):  # type: ignore[no-untyped-def]
        run()
        return run.cost


def test_the_autotuner_measures_with_the_backends_timer() -> None:
    costs = {"a": 3e-3, "b": 1e-3, "c": 2e-3}

    def bind(tactic):  # type: ignore[no-untyped-def]
        def run() -> None:
            pass

        run.cost = costs[tactic.name]  # type: ignore[attr-defined]
        return run

    winner, times = tune_layer(
        "sig",
        [_Fake(n) for n in costs],
        bind,
        None,  # type: ignore[list-item]
        timer=_CostTimer(),
    )
    assert winner == "b" and times["b"] == pytest.approx(1e3)
