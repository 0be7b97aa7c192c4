"""Deployment files: systemd units verified, scripts shellchecked, required settings present."""

from __future__ import annotations

import configparser
import re
import subprocess
from pathlib import Path

import pytest

from tests.sysdeps import need

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
SCRIPTS = [ROOT / "deploy" / "jetson" / "install.sh", ROOT / "tools" / "install_system_deps.sh"]


def _unit(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # systemd keys are case-sensitive
    cp.read(UNITS / name)
    return cp


def test_units_pass_systemd_analyze_verify() -> None:
    need("systemd-analyze")
    units = [str(UNITS / "edge-infer.service"), str(UNITS / "edge-infer-build.service")]
    res = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=UNITS,
    )
    # the install prefix does not exist on a build machine; anything else is a real problem
    problems = [
        line
        for line in (res.stdout + res.stderr).splitlines()
        if line.strip() and "is not executable" not in line
    ]
    assert problems == []


@pytest.mark.parametrize("unit", ["edge-infer.service", "edge-infer-build.service"])
def test_units_exposure_is_at_most_3(unit: str) -> None:
    """systemd's own exposure score (0 safe .. 10 exposed) of the hardened units; the GPU and
    camera device nodes and the network the cameras need keep it above 0."""
    need("systemd-analyze")
    res = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNITS / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout)
    assert match is not None, res.stdout + res.stderr
    assert float(match.group(1)) <= 3.0, res.stdout


def test_daemon_unit_settings() -> None:
    s = _unit("edge-infer.service")["Service"]
    assert s["Type"] == "notify" and s["Restart"] == "on-failure"
    assert s["ExecStart"].split()[1:4] == ["run", "--config", "/etc/edge-infer/config.yaml"]
    for key in ("WatchdogSec", "RestartSec", "TimeoutStopSec"):
        assert key in s
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert s[key] == "yes"
    assert s["ProtectSystem"] == "strict" and "/var/lib/edge-infer" in s["ReadWritePaths"]
    text = (UNITS / "edge-infer.service").read_text()
    assert "DeviceAllow=char-video4linux rw" in text and "DeviceAllow=/dev/nvhost-gpu" in text
    assert "SupplementaryGroups=video" in text
    u = _unit("edge-infer.service")["Unit"]
    assert "edge-infer-build.service" in u["After"]


def test_build_unit_is_a_oneshot_before_the_daemon() -> None:
    cp = _unit("edge-infer-build.service")
    assert cp["Service"]["Type"] == "oneshot"
    assert "--build-only" in cp["Service"]["ExecStart"]
    assert "edge-infer.service" in cp["Unit"]["Before"]


@pytest.mark.parametrize("unit", ["edge-infer.service", "edge-infer-build.service"])
def test_native_kernel_cache_is_writable_under_the_hardening(unit: str) -> None:
    """ProtectHome hides ~/.cache: the kernels compiled on first use must go somewhere the
    unit may write, or the engine silently loses its fastest tactics."""
    text = (UNITS / unit).read_text()
    (path,) = [
        line.split("=", 2)[2]
        for line in text.splitlines()
        if line.startswith("Environment=EDGE_INFER_CACHE=")
    ]
    assert path in _unit(unit)["Service"]["ReadWritePaths"].split()


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_scripts_pass_shellcheck(script: Path) -> None:
    need("shellcheck")
    res = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout


def test_install_script_usage() -> None:
    res = subprocess.run(
        ["bash", str(SCRIPTS[0]), "--help"], capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 0 and "install.sh" in res.stdout
    bad = subprocess.run(
        ["bash", str(SCRIPTS[0]), "--nope"], capture_output=True, text=True, timeout=30
    )
    assert bad.returncode == 2


def test_build_only_builds_a_missing_engine(tmp_path: Path) -> None:
    """What edge-infer-build.service runs: builds engine.path from engine.onnx, then is a no-op."""
    import sys

    import onnx
    import yaml

    from tests.pipeline.helpers import tiny_detector

    onnx.save(tiny_detector(), str(tmp_path / "m.onnx"))
    cfg = {
        "device_id": "d",
        "engine": {
            "path": "out/m.engine",
            "onnx": "m.onnx",
            "build": {"max_batch": 2, "opt_batch": 2, "tune": False},
        },
        "cameras": [{"type": "usb", "id": "c", "device": 0}],
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [
        sys.executable,
        "-m",
        "edge_infer",
        "run",
        "--config",
        str(tmp_path / "c.yaml"),
        "--build-only",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert first.returncode == 0, first.stderr
    engine = tmp_path / "out" / "m.engine"
    assert engine.is_file() and "batch 1..2" in first.stdout
    mtime = engine.stat().st_mtime_ns
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert again.returncode == 0 and engine.stat().st_mtime_ns == mtime
    other = tiny_detector()
    other.graph.name = "retrained"  # another model file: another sha256
    onnx.save(other, str(tmp_path / "m.onnx"))
    cfg["engine"]["rebuild_on_mismatch"] = True
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    rebuilt = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert engine.stat().st_mtime_ns != mtime and "another model" in rebuilt.stderr
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**cfg, "engine": {"path": "nope.engine"}}))
    missing = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert missing.returncode == 1 and "engine.onnx is not set" in missing.stderr
