"""The GPU check's parts that need no GPU: arguments, results, the offline pycuda plan, step
timeouts and the "skipped: <reason>" paths (a missing nvidia-smi, pycuda or torch simulated
with PATH and PYTHONPATH), the PyTorch baseline's graph plan, shellcheck."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from tests.sysdeps import need
from tools.gpucheck import (
    bench,
    build_pycuda,
    check,
    cli,
    environment,
    pycuda_install,
    report,
    setup_steps,
    torch_baseline,
)
from tools.gpucheck.models import MODELS
from tools.gpucheck.steps import FAILED, OK, SKIPPED, TIMEOUT, Runner, StepResult

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "gpu_check.sh"
FAKE_SMI = """#!/bin/sh
case "$1" in
  --query-gpu=*) echo "NVIDIA H100 80GB HBM3, 580.159.04, 81559 MiB, 9.0" ;;
  *) echo "| NVIDIA-SMI 580.159.04   Driver Version: 580.159.04   CUDA Version: 13.0 |" ;;
esac
"""


def _path_without_nvidia_smi() -> str:
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(d for d in dirs if d and not (Path(d) / "nvidia-smi").exists())


def _shadow(tmp_path: Path, *modules: str) -> Path:
    """A folder whose packages stand in for ``modules`` and fail to import, as if absent."""
    shadow = tmp_path / "shadow"
    for name in modules:
        (shadow / name).mkdir(parents=True)
        (shadow / name / "__init__.py").write_text(f"raise ImportError('simulated: no {name}')\n")
    return shadow


def _run_script(
    tmp_path: Path,
    *args: str,
    path: str | None = None,
    pythonpath: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / "out"
    env = {**os.environ, "PATH": path or _path_without_nvidia_smi(), **(extra_env or {})}
    env.pop("OUT", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    res = subprocess.run(
        [
            "bash",
            str(SCRIPT),
            "--python",
            sys.executable,
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=tmp_path,
    )
    results = (
        json.loads((out / report.RESULTS_JSON).read_text())
        if (out / report.RESULTS_JSON).is_file()
        else {}
    )
    return res, results


def _steps(results: dict) -> dict[str, dict]:
    return {s["name"]: s for s in results["steps"]}


# -- the shell script ---------------------------------------------------------------------------
def test_script_passes_shellcheck() -> None:
    need("shellcheck")
    res = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout


def test_script_usage_and_bad_arguments(tmp_path: Path) -> None:
    res = subprocess.run(
        ["bash", str(SCRIPT), "--python", sys.executable, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0 and "gpu_check.sh" in res.stdout and "--budget" in res.stdout
    bad_python = subprocess.run(
        ["bash", str(SCRIPT), "--python", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad_python.returncode == 2 and "no python found" in bad_python.stderr
    res, _ = _run_script(tmp_path, "--models", "resnet")
    assert res.returncode == 2 and "--models: unknown resnet" in res.stderr


def test_no_gpu_every_gpu_step_is_skipped_with_its_reason(tmp_path: Path) -> None:
    """No nvidia-smi on PATH, not a Jetson: exit 3, every GPU step a "skipped" line naming
    why, the result files written (few enough for the device tool to bring back)."""
    start = time.monotonic()
    res, results = _run_script(tmp_path, "--budget", "60")
    assert res.returncode == 3, res.stdout + res.stderr
    assert time.monotonic() - start < 60  # nothing waited for a GPU
    steps = _steps(results)
    for name in (
        "environment",
        "pycuda",
        "nvrtc",
        "gpu tests",
        "models",
        "pytorch",
        "engine benchmarks",
        "daemon",
    ):
        assert steps[name]["status"] == SKIPPED, name
        assert "no NVIDIA GPU found (nvidia-smi not found on PATH" in steps[name]["reason"]
    assert "[skipped] gpu tests" in res.stdout
    plan = steps["pycuda"]["data"]
    # the vendored files were verified (what else stops the build depends on the machine)
    assert not any("manifest" in p or ".whl" in p or ".tar.gz" in p for p in plan["problems"])
    out = tmp_path / "out"
    files = sorted(p.name for p in out.iterdir())
    assert files == ["gpu_check.json", "gpu_check.log", "gpu_check.md"]
    summary = (out / "gpu_check.md").read_text()
    assert "| gpu tests | skipped |" in summary and "## Targets (issue 14)" in summary
    assert all(t["value"] is None and t["met"] is None for t in results["targets"])
    assert results["exit_status"] == 3


def test_fake_gpu_dry_run_skips_what_is_missing(tmp_path: Path) -> None:
    """A GPU (a stand-in nvidia-smi), pycuda and torch absent (stand-in packages that fail to
    import): the environment is read, pycuda's offline plan recorded, and every step that
    needs them says which piece is missing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    cuda = tmp_path / "cuda"
    (cuda / "include").mkdir(parents=True)
    (cuda / "include" / "cuda.h").write_text("/* stand-in */\n")
    res, results = _run_script(
        tmp_path,
        "--budget",
        "120",
        "--dry-run",
        path=os.pathsep.join([str(bin_dir), _path_without_nvidia_smi()]),
        pythonpath=_shadow(tmp_path, "pycuda", "torch"),
        extra_env={"CUDA_ROOT": str(cuda)},
    )
    assert res.returncode == 3, res.stdout + res.stderr
    env = results["environment"]
    assert env["gpu"] == "NVIDIA H100 80GB HBM3" and env["sm"] == "sm_90"
    assert env["cuda_driver_api"] == "13.0" and env["cuda_root"] == str(cuda)
    steps = _steps(results)
    assert steps["environment"]["status"] == OK
    assert steps["pycuda"]["status"] == SKIPPED and "dry run" in steps["pycuda"]["reason"]
    plan = results["pycuda_plan"]
    if plan["install"] is not None:
        assert "--no-index" in plan["install"]
    else:
        assert plan["problems"]
    assert steps["gpu tests"]["reason"].startswith("pycuda unavailable: dry run")
    assert steps["pytorch"]["reason"] == "torch is not importable"
    assert steps["engine benchmarks"]["reason"].startswith("pycuda unavailable")
    assert results["torch"]["reason"] == "torch is not importable"


# -- arguments ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "yolov8n-640,nope"], "--models: unknown nope"),
        (["--precisions", "bf16"], "--precisions: unknown bf16"),
        (["--batches", "1,16"], "--batches: each between 1 and 8"),
        (["--batches", "one"], "--batches: integers expected"),
        (["--budget", "5"], "--budget must be >= 30 s"),
        (["--skip", "everything"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.parse_args(["--out", "x", *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_defaults() -> None:
    args = cli.parse_args(["--out", "x"])
    assert args.models == ["yolov8n-640", "demo-det"]
    assert args.precisions == ["fp16", "int8", "fp32"] and args.batches == [1, 8]
    assert args.budget < 480  # inside the 8 minutes the issue gives the whole check


# -- steps: timeouts, budget, failures ----------------------------------------------------------
def test_a_step_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    runner = Runner(60, reserve_s=0, log=lambda _: None)
    started = time.monotonic()
    r = runner.run(
        "hang", ["bash", "-c", f"sleep 30 & echo $! > {pid_file}; wait"], timeout_s=1, min_s=0
    )
    assert r.status == TIMEOUT and r.reason == "killed after 1 s"
    assert time.monotonic() - started < 10
    child = int(pid_file.read_text())
    time.sleep(0.2)
    assert (
        not Path(f"/proc/{child}").exists()
        or "Z" in Path(f"/proc/{child}/stat").read_text().split(")")[1].split()[0]
    )


def test_budget_cuts_timeouts_and_skips_steps_out_of_time() -> None:
    now = [0.0]
    runner = Runner(100, reserve_s=10, log=lambda _: None, clock=lambda: now[0])
    assert runner.timeout_for(200) == 90
    now[0] = 88.0
    r = runner.run("late", ["true"], timeout_s=60, min_s=5)
    assert r.status == SKIPPED and r.reason.startswith("out of time (2 s of the budget left")


def test_failure_reason_is_the_last_line_and_missing_program(tmp_path: Path) -> None:
    runner = Runner(60, log=lambda _: None)
    r = runner.run(
        "fail",
        ["bash", "-c", "echo ok; echo 'first' >&2; echo 'Error: why' >&2; exit 4"],
        timeout_s=10,
    )
    assert r.status == FAILED and r.reason == "exit 4: Error: why"
    missing = runner.run("missing", [str(tmp_path / "no-such-program")], timeout_s=10)
    assert missing.status == FAILED and "cannot start" in missing.reason


def test_exit_status() -> None:
    ok, skipped = StepResult("a", OK), StepResult("b", SKIPPED, "why")
    assert check.exit_status([ok]) == 0
    assert check.exit_status([ok, skipped]) == 3
    assert check.exit_status([ok, skipped, StepResult("c", TIMEOUT)]) == 1


# -- the offline pycuda install plan ------------------------------------------------------------
def test_vendored_files_match_the_manifest() -> None:
    assert pycuda_install.verify() == []
    names = {p.name for p in pycuda_install.VENDOR.iterdir()}
    assert f"pycuda-{pycuda_install.PINS['pycuda']}.tar.gz" in names
    for dep in pycuda_install.COMPILED:  # a wheel per CPython and architecture
        for version in pycuda_install.PYTHONS:
            tag = "cp" + version.replace(".", "")
            for arch in pycuda_install.ARCHES:
                assert any(
                    n.startswith(f"{dep}-") and f"-{tag}-" in n and arch in n for n in names
                ), (dep, tag, arch)
    size = sum(p.stat().st_size for p in pycuda_install.VENDOR.iterdir())
    assert size < 4 * 2**20  # small: the sdist and a few wheels, no toolkit


def test_verify_catches_a_changed_missing_or_unlisted_file(tmp_path: Path) -> None:
    vendor = tmp_path / "vendor"
    shutil.copytree(pycuda_install.VENDOR, vendor)
    wheel = next(vendor.glob("mako-*.whl"))
    data = bytearray(wheel.read_bytes())
    data[100] ^= 0xFF
    wheel.write_bytes(bytes(data))
    next(vendor.glob("pytools-*.whl")).unlink()
    (vendor / "evil-1.0-py3-none-any.whl").write_bytes(b"x")
    problems = pycuda_install.verify(vendor)
    assert f"{wheel.name} differs from the manifest (size or SHA-256)" in problems
    assert any(p.startswith("pytools-") and p.endswith("is missing") for p in problems)
    assert "evil-1.0-py3-none-any.whl is not in the manifest" in problems
    (vendor / pycuda_install.MANIFEST).unlink()
    assert "is missing" in pycuda_install.verify(vendor)[0]


def test_every_requirement_of_pycuda_is_vendored_and_resolves_offline() -> None:
    """pip, index off, only vendor/pycuda: pycuda's dependencies resolve for this Python
    (what the GPU machine's pip does after the wheel is built)."""
    required = pycuda_install.requirements_of_sdist(pycuda_install.sdist())
    assert set(required) <= set(pycuda_install.PINS)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--isolated",  # this machine's pip.conf may add find-links: only vendor/ counts
            "install",
            "--dry-run",
            "--ignore-installed",
            "--no-index",
            "--find-links",
            str(pycuda_install.VENDOR),
            "--disable-pip-version-check",
            "--quiet",
            *(f"{n}=={pycuda_install.PINS[n]}" for n in required),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr


def test_install_command_is_offline(tmp_path: Path) -> None:
    cmd = pycuda_install.install_command("py", tmp_path / "wheels")
    assert cmd[:5] == ["py", "-m", "pip", "--isolated", "install"]
    assert "--no-index" in cmd and "--no-build-isolation" in cmd
    links = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--find-links"]
    assert links == [str(pycuda_install.VENDOR), str(tmp_path / "wheels")]
    assert cmd[-1] == f"pycuda=={pycuda_install.PINS['pycuda']}"
    assert not any("://" in a or a in ("--index-url", "--extra-index-url") for a in cmd)


def test_plan_names_what_stops_the_build(tmp_path: Path) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    p = pycuda_install.plan(
        sys.executable, tmp_path / "w", tmp_path / "b", {"PATH": str(empty)}, None
    )
    assert not p.ok and p.build is None and p.install is None
    assert any("no CUDA toolkit headers" in x for x in p.problems)
    assert any("no C++ compiler (g++) on PATH" in x for x in p.problems)


def test_plan_with_a_toolkit_and_compiler_builds_then_installs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need("g++")
    monkeypatch.setattr(pycuda_install, "missing_build_modules", lambda python: [])
    cuda = tmp_path / "cuda"
    (cuda / "include").mkdir(parents=True)
    p = pycuda_install.plan(
        "py", tmp_path / "wheels", tmp_path / "build", {"PATH": os.environ["PATH"]}, cuda, jobs=16
    )
    assert p.ok and p.build is not None and p.install is not None
    assert p.build[1].endswith("build_pycuda.py") and p.build[-2:] == ["--jobs", "16"]
    assert p.build[p.build.index("--cuda-root") + 1] == str(cuda)
    assert p.install == pycuda_install.install_command("py", tmp_path / "wheels")


# -- benchmark commands and results -------------------------------------------------------------
def test_configs_put_the_targets_first_and_tune_them() -> None:
    cfgs = bench.configs(["demo-det", "yolov8n-640"], ["fp32", "int8", "fp16"], "headline")
    assert [c.name for c in cfgs][:2] == ["yolov8n-640-fp16", "yolov8n-640-int8"]
    assert [c.tune for c in cfgs] == [True, True, False, False, False, False]
    assert all(c.tune for c in bench.configs(["demo-det"], ["fp16"], "all"))


def test_build_and_bench_commands(tmp_path: Path) -> None:
    cfg = bench.configs(["yolov8n-640"], ["int8"], "none")[0]
    cmd = bench.build_command("py", cfg, tmp_path, "0", tmp_path / "y.calib", has_device_flag=True)
    assert cmd[:4] == ["py", "-m", "edge_infer", "build"] and "--no-tune" in cmd
    assert cmd[cmd.index("--backend") + 1] == "cuda" and cmd[cmd.index("--device") + 1] == "0"
    assert cmd[cmd.index("--min-shapes") + 1] == "images:1x3x640x640"
    assert cmd[cmd.index("--max-shapes") + 1] == "images:8x3x640x640"
    assert "--int8" in cmd and cmd[cmd.index("--calib-cache") + 1] == str(tmp_path / "y.calib")
    old = bench.build_command("py", cfg, tmp_path, "0", None, has_device_flag=False)
    assert "--device" not in old and "--calib-cache" not in old
    b = bench.bench_command("py", cfg, tmp_path, 8, "1", 50, has_device_flag=True)
    assert b[b.index("--batch") + 1] == "8" and "--json" in b and b[-2:] == ["--device", "1"]


def test_demo_detector_is_built_and_calibrated_at_the_cameras_input(tmp_path: Path) -> None:
    model = onnx.load(str(ROOT / "models" / "edge_demo_det.onnx"), load_external_data=False)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[1].dim_value == 3 and not dims[2].HasField("dim_value")  # dynamic H/W
    cfg = bench.configs(["demo-det"], ["fp32"], "none")[0]
    cmd = bench.build_command("py", cfg, tmp_path, "0", None, has_device_flag=True)
    assert cmd[cmd.index("--min-shapes") + 1] == "images:1x3x256x416"  # W x H 416x256
    cal = bench.calibrate_command("py", MODELS["demo-det"], tmp_path, tmp_path / "frames")
    assert cal[cal.index("--shapes") + 1] == "images:1x3x256x416"
    # entropy clips the stride-8 box branch (models/edge_demo_det.md): percentile
    assert cal[cal.index("--calibrator") + 1] == "percentile"


def test_parse_bench_reads_cpu_and_gpu_reports() -> None:
    cpu = {"batch": 1, "edge_infer": {"median_ms": 2.0, "p99_ms": 3.0, "throughput": 500.0}}
    row = bench.parse_bench(cpu, 1)
    assert row["host_median_ms"] == 2.0 and row["throughput"] == 500.0
    assert "gpu_median_ms" not in row and "host_overhead_us" not in row
    # edge_infer.cuda.bench's report (edge-infer bench --json on a CUDA engine)
    cuda = {
        "device": "NVIDIA H100",
        "emulated": False,
        "batch": 8,
        "iterations": 200,
        "gpu": {"median_ms": 4.0, "p90_ms": 4.1, "p99_ms": 4.5, "throughput": 2000.0},
        "host": {"median_ms": 4.02, "p90_ms": 4.2, "p99_ms": 4.9, "throughput": 1990.0},
        "host_overhead_ms": 0.021,
    }
    row = bench.parse_bench(cuda, 8)
    assert (row["gpu_median_ms"], row["host_median_ms"], row["p99_ms"]) == (4.0, 4.02, 4.5)
    assert row["throughput"] == 2000.0 and row["throughput_key"] == "gpu.throughput"
    assert row["host_overhead_us"] == pytest.approx(21.0)  # ms in the report, µs here
    del cuda["host_overhead_ms"]
    derived = bench.parse_bench(cuda, 8)
    assert derived["host_overhead_us"] == pytest.approx(20.0)
    assert derived["host_overhead_us_key"].startswith("derived")


def _results() -> dict:
    def row(precision: str, batch: int, gpu_ms: float, thr: float) -> dict:
        return {
            "model": "yolov8n-640",
            "precision": precision,
            "tuned": True,
            "build_s": 41.0,
            "batch": batch,
            "gpu_median_ms": gpu_ms,
            "throughput": thr,
            "host_overhead_us": 18.0,
        }

    return {
        "engine": [
            row("fp16", 1, 1.2, 800.0),
            row("fp16", 8, 4.0, 2000.0),
            row("int8", 8, 2.9, 2800.0),
        ],
        "torch": {
            "env": {"torch": "2.11"},
            "rows": [
                {"model": "yolov8n-640", "batch": 1, "eager": {"gpu_median_ms": 1.5}},
                {"model": "yolov8n-640", "batch": 8, "eager": {"gpu_median_ms": 3.2}},
            ],
        },
        "steps": [],
        "environment": {"gpu": "H100"},
    }


def test_targets_are_measured_against_their_bounds() -> None:
    targets = {t["key"]: t for t in report.measure_targets(_results())}
    assert targets["fp16_b1_latency_vs_torch"]["value"] == pytest.approx(0.8)
    assert targets["fp16_b1_latency_vs_torch"]["met"] is True
    assert targets["fp16_b8_throughput_vs_torch"]["value"] == pytest.approx(0.8)  # 2000/2500
    assert targets["fp16_b8_throughput_vs_torch"]["met"] is False
    assert targets["int8_b8_throughput_vs_fp16"]["value"] == pytest.approx(1.4)
    assert targets["host_overhead_us"]["met"] is True and targets["build_s"]["value"] == 41.0


def test_results_are_written_as_json_and_markdown(tmp_path: Path) -> None:
    results = _results()
    report.write(tmp_path, results)
    back = json.loads((tmp_path / report.RESULTS_JSON).read_text())
    assert len(back["targets"]) == len(report.TARGETS)
    md = (tmp_path / report.SUMMARY_MD).read_text()
    assert "| yolov8n-640 | fp16 | yes | 41 | 1 | 1.2 |" in md
    assert "| FP16 YOLOv8n-640 batch 8 throughput / PyTorch's | >= 1 | 0.8 | **no** |" in md
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind
    assert "Emulated" not in md
    report.write(tmp_path, {**results, "args": {"device": "emu"}})
    assert (
        "every time below is the CPU emulator's, not a GPU's"
        in (tmp_path / report.SUMMARY_MD).read_text()
    )


def test_junit_counts(tmp_path: Path) -> None:
    xml = tmp_path / "r.xml"
    xml.write_text(
        '<testsuites><testsuite tests="5" failures="1" errors="0" skipped="2">'
        '<testcase name="a"><skipped message="no GPU through pycuda"/></testcase>'
        '<testcase name="b"><skipped message="no GPU through pycuda"/></testcase>'
        "</testsuite></testsuites>"
    )
    counts = setup_steps.junit_counts(xml)
    assert counts["passed"] == 2 and counts["failed"] == 1 and counts["skipped"] == 2
    assert counts["skip_reasons"] == ["no GPU through pycuda"]
    assert "error" in setup_steps.junit_counts(tmp_path / "none.xml")


# -- the PyTorch baseline's plan (the torch part runs on a GPU only) ----------------------------
def test_torch_plan_folds_shape_subgraphs_and_fuses_silu() -> None:
    model = onnx.load(str(ROOT / "models" / "edge_demo_det.onnx"))
    plan = torch_baseline.plan(model, 8, (256, 416))  # dynamic H/W: the anchor grid folds too
    ops = [s.op for s in plan.steps]
    shape_ops = {"Shape", "Gather", "Unsqueeze", "Constant", "Range", "Expand", "ConstantOfShape"}
    assert shape_ops.isdisjoint(ops)
    assert ops.count("Conv") == 64 and ops.count("SiLU") == 57
    assert set(ops) <= torch_baseline.SUPPORTED
    reshapes = [plan.consts[s.inputs[1]] for s in plan.steps if s.op == "Reshape"]
    assert all(int(r[0]) in (8, -1) for r in reshapes)  # the batch folded in


def test_torch_plan_refuses_an_unsupported_op() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    model = helper.make_model(
        helper.make_graph([helper.make_node("Erf", ["x"], ["y"])], "g", [x], [y])
    )
    with pytest.raises(torch_baseline.UnsupportedGraph, match="cannot run op\\(s\\) Erf"):
        torch_baseline.plan(model, 1)


# -- libraries found on the GPU machine ---------------------------------------------------------
def test_nvrtc_of_a_pip_wheel_with_only_a_versioned_name_gets_a_link(tmp_path: Path) -> None:
    """CUDA 13's wheel ships ``nvidia/cu13/lib/libnvrtc.so.13`` only; edge_infer's lookup
    asks for ``libnvrtc.so``: the check links one and puts both folders on the path."""
    site = tmp_path / "site"
    lib = site / "nvidia" / "cu13" / "lib"
    lib.mkdir(parents=True)
    (lib / "libnvrtc.so.13").write_bytes(b"")
    (lib / "libnvrtc-builtins.so.13.0").write_bytes(b"")
    assert environment.find_nvrtc(None, [str(tmp_path / "none")]) is None
    found = environment.find_nvrtc(None, [str(site)])
    assert found == lib / "libnvrtc.so.13"
    dirs = environment.nvrtc_library_dirs(found, tmp_path / "work")
    assert dirs == [str(tmp_path / "work" / "nvrtc"), str(lib)]
    assert (tmp_path / "work" / "nvrtc" / "libnvrtc.so").resolve() == found
    toolkit = tmp_path / "cuda"
    (toolkit / "lib64").mkdir(parents=True)
    (toolkit / "lib64" / "libnvrtc.so").write_bytes(b"")
    preferred = environment.find_nvrtc(toolkit, [str(site)])
    assert preferred == toolkit / "lib64" / "libnvrtc.so"
    assert environment.nvrtc_library_dirs(preferred, tmp_path / "w2") == [str(toolkit / "lib64")]


def test_pycuda_build_links_against_the_toolkit_stub_and_leaves_curand_out(tmp_path: Path) -> None:
    cuda = tmp_path / "cuda"
    (cuda / "lib64" / "stubs").mkdir(parents=True)
    (cuda / "lib64" / "stubs" / "libcuda.so").write_bytes(b"")
    dirs = build_pycuda.driver_lib_dirs(cuda, tmp_path / "work")
    assert dirs == [str(cuda / "lib64" / "stubs")]
    src = tmp_path / "src"
    src.mkdir()
    build_pycuda.write_siteconf(src, cuda, dirs)
    conf: dict = {}
    exec((src / "siteconf.py").read_text(), conf)  # what pycuda's aksetup reads
    assert conf["CUDA_ROOT"] == str(cuda) and conf["CUDA_INC_DIR"] == [str(cuda / "include")]
    assert conf["CUDADRV_LIB_DIR"] == dirs and conf["CUDA_ENABLE_CURAND"] is False
    assert conf["USE_SHIPPED_BOOST"] is True
