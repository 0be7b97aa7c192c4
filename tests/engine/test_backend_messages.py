"""What a person is told about backends: reduced precision on the CPU, a backend not here."""

from __future__ import annotations

import logging

import pytest

import edge_infer.engine as api
from edge_infer.engine.backends import get_backend
from edge_infer.engine.network import Network
from edge_infer.errors import BackendError


def _net() -> Network:
    net = Network("one", seed=1)
    x = net.add_input("x", (1, 4, 8, 8))
    net.mark_output(net.add_activation(net.add_convolution(x, 4, 3, padding=1), "relu"), "y")
    return net


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_reduced_precision_on_the_cpu_says_what_it_is(
    caplog: pytest.LogCaptureFixture, precision: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="edge_infer.engine.builder"):
        api.build(_net(), options=api.BuildOptions(precision=precision, tune=False))
    notes = [r.getMessage() for r in caplog.records if "validation kernels" in r.getMessage()]
    if precision == "fp32":
        assert notes == []
    else:
        assert len(notes) == 1 and notes[0].startswith("FP16 on the CPU backend")
        assert "slower than FP32" in notes[0]


def test_a_backend_that_is_not_here_says_what_to_do() -> None:
    try:
        get_backend("cuda")
    except BackendError as exc:
        text = str(exc)
        assert "\n" not in text
        assert "--backend cpu" in text or "pip install 'edge-infer[cuda]'" in text
    else:  # the CUDA backend exists and this machine can run it: nothing to explain
        pass
    with pytest.raises(BackendError, match="unknown backend 'tpu'; choose one of"):
        get_backend("tpu")
