"""The command line with ``--backend cuda --device emu``: build, infer, inspect, bench and
compare work without a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_infer.engine.onnx_export import export_onnx
from tests.cuda.backend_support import small_net

REPO = Path(__file__).resolve().parents[2]


def cli(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "edge_infer", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cuda_cli")
    model = folder / "m.onnx"
    model.write_bytes(export_onnx(small_net(batch=1).graph).SerializeToString())
    r = cli(
        "build",
        model,
        "-o",
        "m.engine",
        "--backend",
        "cuda",
        "--device",
        "emu",
        "--quiet",
        cwd=folder,
    )
    assert r.returncode == 0, r.stderr
    return folder


def test_build_then_infer_on_the_emulator(built) -> None:
    r = cli("infer", "m.engine", "--device", "emu", "--output-dir", "out", cwd=built)
    assert r.returncode == 0, r.stderr
    probs = np.load(built / "out" / "probs.npy")
    assert probs.shape == (1, 5) and abs(float(probs.sum()) - 1.0) < 1e-5


def test_without_a_device_the_message_says_what_to_do(built) -> None:
    r = cli("infer", "m.engine", cwd=built)
    try:
        import pycuda  # noqa: F401
    except ImportError:
        assert r.returncode != 0
        assert "edge-infer[cuda]" in r.stderr and "--device emu" in r.stderr


def test_inspect_shows_kernels_tiles_and_resources(built) -> None:
    r = cli("inspect", "m.engine", "--device", "emu", cwd=built)
    assert r.returncode == 0, r.stderr
    assert "kernel ei_conv_f32_direct" in r.stdout and "registers" in r.stdout
    assert "kernel ei_gemm_f32_32x32  tile 32x32" in r.stdout
    r = cli("inspect", "m.engine", "--device", "emu", "--json", cwd=built)
    layers = json.loads(r.stdout)["layers"]
    conv = next(layer for layer in layers if layer["op"] == "FusedConv")
    assert conv["kernels"][0]["registers"] > 0


def test_bench_reports_device_and_host_time(built) -> None:
    r = cli(
        "bench",
        "m.engine",
        "--device",
        "emu",
        "--iterations",
        "3",
        "--warmup",
        "1",
        "--json",
        cwd=built,
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["emulated"] and report["gpu"]["median_ms"] > 0
    assert report["host"]["median_ms"] >= report["gpu"]["median_ms"] * 0.5


def test_compare_across_backends(built) -> None:
    r = cli("build", "m.onnx", "-o", "cpu.engine", "--quiet", cwd=built)
    assert r.returncode == 0, r.stderr
    r = cli("compare", "cpu.engine", "m.engine", "--device", "emu", "--frames", "1", cwd=built)
    assert r.returncode == 0, r.stderr
    assert "m.engine" in r.stdout


def test_device_needs_the_cuda_backend(built) -> None:
    r = cli("build", "m.onnx", "-o", "x.engine", "--device", "emu", cwd=built)
    assert r.returncode != 0 and "--backend cuda" in r.stderr
