"""Shared pieces of the CUDA backend tests: small models, builds on the emulator, comparison
with the CPU engine at the issue's tolerances."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edge_infer.engine import BuildOptions, build
from edge_infer.engine.network import Network

#: FP32: within 1e-4 of the output scale (max |reference|, at least 1)
FP32_TOL = 1e-4
EMU = {"device": "emu"}


def small_net(batch: Any = "batch", channels: int = 8, size: int = 12) -> Network:
    """A small CNN with the common layer kinds: convolutions with fused activations and a
    residual, max pool, a concat of two branches, nearest resize, sigmoid, global pool, a
    fully connected layer and softmax."""
    net = Network("small", seed=7)
    x = net.add_input("x", (batch, 3, size, size))
    a = net.add_activation(net.add_convolution(x, channels, 3, padding=1), "relu")
    b = net.add_activation(net.add_convolution(a, channels, 3, padding=1), "relu")
    a = net.add_elementwise(a, b, "sum")
    p = net.add_pooling(a, "max", 2, stride=2)
    left = net.add_activation(net.add_convolution(p, channels, 1), "relu")
    right = net.add_activation(net.add_convolution(p, channels, 3, padding=1), "sigmoid")
    cat = net.add_concatenation([left, right], axis=1)
    up = net.add_resize(cat, 2.0)
    net.mark_output(net.add_activation(up, "sigmoid"), "map")
    logits = net.add_fully_connected(net.add_global_pooling(cat), 5)
    net.mark_output(net.add_softmax(logits), "probs")
    return net


def build_pair(model: Any, **kw: Any) -> tuple[Any, Any]:
    """The CPU and the CUDA (emulator) engines of ``model`` with the same options."""
    cpu = build(model, options=BuildOptions(tune=False, **kw))
    cuda = build(model, options=BuildOptions(backend="cuda", backend_options=EMU, tune=False, **kw))
    return cpu, cuda


def random_feeds(engine: Any, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for b in engine.inputs:
        shape = [batch if d < 0 else d for d in b.shape]
        if b.batched:
            shape[0] = batch
        feeds[b.name] = rng.random(shape, dtype=np.float32).astype(b.dtype)
    return feeds


def assert_close(
    ours: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray], tol: float = FP32_TOL
) -> None:
    assert set(ours) == set(ref)
    for name, want in ref.items():
        got = ours[name]
        assert got.shape == want.shape and got.dtype == want.dtype, name
        scale = max(1.0, float(np.abs(want.astype(np.float64)).max(initial=0.0)))
        err = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max(initial=0.0))
        assert err <= tol * scale, f"{name}: max error {err:.3g} > {tol} x scale {scale:.3g}"
