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


@pytest.mark.parametrize("native_kernels", [True, False])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_reduced_precision_on_the_cpu_says_what_it_is(
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    precision: str,
    native_kernels: bool,
) -> None:
    """FP16 runs the FP32 kernels on float16 storage through native conversions: no note.
    Without native kernels (no C compiler) it is slower than FP32, and the build says so."""
    from edge_infer.engine.backends.cpu import native

    if native_kernels and not native.available():
        pytest.skip("no C compiler here")  # CI has one (tools/install_system_deps.sh)
    monkeypatch.setattr(native, "available", lambda: native_kernels)
    with caplog.at_level(logging.WARNING, logger="edge_infer.engine.builder"):
        api.build(_net(), options=api.BuildOptions(precision=precision, tune=False))
    notes = [r.getMessage() for r in caplog.records if "slower than FP32" in r.getMessage()]
    if precision == "fp32" or native_kernels:
        assert notes == []
    else:
        assert len(notes) == 1 and notes[0].startswith("FP16 on the CPU backend")


@pytest.mark.parametrize("native_kernels", [True, False])
def test_int8_on_the_cpu_says_what_it_is(
    monkeypatch: pytest.MonkeyPatch, native_kernels: bool
) -> None:
    """INT8 layers run native integer kernels: no note; without them, validation kernels."""
    from edge_infer.engine.backends.cpu import native

    monkeypatch.setattr(native, "available", lambda: native_kernels)
    note = get_backend("cpu").precision_note("int8")
    if native_kernels:
        assert note is None
    else:
        assert note is not None and "validation kernels" in note and "\n" not in note
        assert "slower than FP32" in note


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
