"""``inference.backend`` / ``device`` and the engine built for them: validation, the choice
``auto`` makes, the CUDA engine built on the emulator, and an engine of another backend
refused or rebuilt as ``engine.rebuild_on_mismatch`` says."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest

from edge_infer.errors import ConfigError
from edge_infer.pipeline.backend_choice import resolve_backend
from edge_infer.pipeline.config import EngineConfig, InferenceConfig, parse_config
from edge_infer.pipeline.engine_setup import load_engine
from tests.pipeline.helpers import TINY_SIZE, tiny_detector

HAS_PYCUDA = importlib.util.find_spec("pycuda") is not None
TINY_BUILD = {"min_batch": 1, "opt_batch": 2, "max_batch": 2, "tune": False}


def _config(**inference: object) -> dict:
    return {
        "device_id": "d",
        "engine": {"path": "x.engine"},
        "cameras": [{"type": "usb", "id": "c", "device": 0}],
        "inference": inference,
    }


def test_backend_defaults_to_cpu_and_precision_defaults_per_backend() -> None:
    cfg = parse_config(_config())
    assert (cfg.inference.backend, cfg.inference.device) == ("cpu", 0)
    assert cfg.engine.build.precision is None
    assert cfg.engine.build.precision_for("cpu") == "fp32"
    assert cfg.engine.build.precision_for("cuda") == "fp16"
    fp32 = parse_config({**_config(), "engine": {"path": "x", "build": {"precision": "fp32"}}})
    assert fp32.engine.build.precision_for("cuda") == "fp32"


@pytest.mark.parametrize(
    ("inference", "field", "words"),
    [
        ({"backend": "gpu"}, "inference.backend", "'cpu', 'cuda' or 'auto'"),
        ({"backend": "cpu", "device": "emu"}, "inference", "set backend: cuda"),
        ({"backend": "cuda", "device": 64}, "inference", "GPU index 0-63 or emu"),
        ({"backend": "cuda", "device": "gpu0"}, "inference.device", "emu"),
    ],
)
def test_bad_backend_or_device_names_the_field(inference: dict, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_config(**inference))
    assert f"  {field}" in str(err.value) and words in str(err.value)


def test_cpu_and_emulator_choices() -> None:
    assert resolve_backend(InferenceConfig()).name == "cpu"
    for backend in ("cuda", "auto"):  # auto on the emulator: the emulator is always there
        choice = resolve_backend(InferenceConfig(backend=backend, device="emu"))
        assert (choice.name, choice.device) == ("cuda", "emu")
    assert resolve_backend(InferenceConfig(backend="cuda", device="emu")).build_options(
        2, None
    ) == {"device": "emu"}


@pytest.mark.skipif(HAS_PYCUDA, reason="pycuda is installed: GPU 0 may exist here")
def test_without_pycuda_cuda_fails_and_auto_logs_cpu(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ConfigError, match=r"^inference.backend cuda: .*pycuda"):
        resolve_backend(InferenceConfig(backend="cuda"))
    with caplog.at_level(logging.INFO, "edge_infer.daemon"):
        assert resolve_backend(InferenceConfig(backend="auto")).name == "cpu"
    assert "inference.backend auto: using cpu (cuda on device 0: " in caplog.text
    # the emulator stays selected afterwards for the tests that use it
    resolve_backend(InferenceConfig(backend="cuda", device="emu"))


def _engine_cfg(folder: Path, **extra: object) -> EngineConfig:
    onnx_path = folder / "tiny.onnx"
    if not onnx_path.is_file():
        onnx.save(tiny_detector(), str(onnx_path))
    return EngineConfig(path=folder / "tiny.engine", onnx=onnx_path, build=TINY_BUILD, **extra)


def _run(engine, x: np.ndarray) -> np.ndarray:
    with engine.create_context() as ctx:
        return ctx.execute({"images": x})["output0"]


def test_cuda_engine_on_the_emulator_in_fp16_by_default(tmp_path: Path) -> None:
    choice = resolve_backend(InferenceConfig(backend="cuda", device="emu"))
    cfg = _engine_cfg(tmp_path)
    engine = load_engine(cfg, "rgb", choice.build_options(1, None), "cuda")
    assert engine.backend_name == "cuda"
    assert engine.build_record["options"]["precision"] == "fp16"
    x = np.random.default_rng(0).random((2, 3, TINY_SIZE, TINY_SIZE), np.float32)
    y = _run(engine, x)
    (tmp_path / "cpu").mkdir()
    ref = _run(load_engine(_engine_cfg(tmp_path / "cpu"), backend="cpu"), x)
    # FP16 against the CPU's FP32: within 2e-3 of the output scale (docs/engine.md)
    assert y.shape == ref.shape == (2, 10, 4)
    np.testing.assert_allclose(y, ref, rtol=0, atol=2e-3 * np.abs(ref).max())
    # loaded again, not rebuilt: same file
    mtime = cfg.path.stat().st_mtime_ns
    assert load_engine(cfg, "rgb", {"device": "emu"}, "cuda").backend_name == "cuda"
    assert cfg.path.stat().st_mtime_ns == mtime


def test_engine_of_another_backend_is_refused_or_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    resolve_backend(InferenceConfig(backend="cuda", device="emu"))
    cpu = load_engine(_engine_cfg(tmp_path), backend="cpu")
    assert cpu.backend_name == "cpu"
    with pytest.raises(ConfigError, match="is an engine for backend 'cpu' but inference"):
        load_engine(_engine_cfg(tmp_path), "rgb", {"device": "emu"}, "cuda")
    assert _backend_of(tmp_path / "tiny.engine") == "cpu"  # untouched
    with caplog.at_level(logging.WARNING, "edge_infer.daemon"):
        cuda = load_engine(
            _engine_cfg(tmp_path, rebuild_on_mismatch=True), "rgb", {"device": "emu"}, "cuda"
        )
    assert cuda.backend_name == "cuda" and _backend_of(tmp_path / "tiny.engine") == "cuda"
    assert "was built for backend cpu: rebuilding it for cuda" in caplog.text
    # and back: the CUDA engine is never run by a CPU daemon
    with pytest.raises(ConfigError, match="is an engine for backend 'cuda' but inference"):
        load_engine(_engine_cfg(tmp_path), backend="cpu")


def _backend_of(path: Path) -> str:
    from edge_infer.engine import Engine

    return Engine.load(path, check_device=False).backend_name


@pytest.mark.skipif(HAS_PYCUDA, reason="pycuda is installed: GPU 0 may exist here")
def test_run_check_names_a_cuda_backend_that_cannot_run_here() -> None:
    from edge_infer.pipeline.checks import config_problems

    def problems(**inference: object) -> list[str]:
        found = config_problems(parse_config(_config(**inference)))
        return [p for p in found if p.startswith("inference.")]

    (line,) = problems(backend="cuda")
    assert line.startswith("inference.backend: cuda cannot run here: ") and "pycuda" in line
    assert problems(backend="cuda", device="emu") == problems(backend="auto") == []


def test_build_only_builds_for_the_configured_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import yaml

    from edge_infer.cli import main

    onnx.save(tiny_detector(), str(tmp_path / "tiny.onnx"))
    data = _config(backend="cuda", device="emu")
    data["engine"] = {"path": "tiny.engine", "onnx": "tiny.onnx", "build": TINY_BUILD}
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(data))
    assert main(["run", "--config", str(tmp_path / "d.yaml"), "--build-only"]) == 0
    assert "tiny.engine: ready (batch 1..2, cuda)" in capsys.readouterr().out
    assert _backend_of(tmp_path / "tiny.engine") == "cuda"
