"""The steps that make the machine ready and check it: environment report, extra wheels,
Python packages, pycuda (built offline when missing), NVRTC, the gpu-marked tests."""

from __future__ import annotations

import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from tools.gpucheck import environment as env_report
from tools.gpucheck import pycuda_install
from tools.gpucheck.check import ROOT, Check
from tools.gpucheck.steps import FAILED, OK, StepResult

#: the Python packages each capability needs (a bare GPU image may lack some: carry them as
#: wheels and pass --wheels DIR); a missing one skips only the steps that need it
MODULES = {
    "core": ("numpy", "onnx", "scipy", "yaml", "tqdm", "threadpoolctl"),  # build, bench, tests
    "pytest": ("pytest", "hypothesis"),  # the gpu-marked tests
    "int8": ("cv2",),  # calibration images and frames (edge_infer.synth, pipeline)
    "pipeline": ("cv2", "zmq", "pydantic"),  # the daemon
}
#: seconds one gpu test may take (the step's own timeout bounds them all)
PER_TEST_TIMEOUT_S = 60
#: test folders with gpu-marked tests (the device fixture marks its gpu side in conftest)
GPU_TEST_PATHS = ("tests/cuda",)


def environment_report(check: Check) -> None:
    info = env_report.collect(check.env)
    check.results["environment"] = info
    cuda_root = info["cuda_root"]
    libs: list[str] = []
    if cuda_root:  # nvcc and the libraries of this toolkit, for the children
        check.env["CUDA_ROOT"] = cuda_root
        check.env["PATH"] = os.pathsep.join((f"{cuda_root}/bin", check.env.get("PATH", "")))
        libs += [d for d in (f"{cuda_root}/lib64", f"{cuda_root}/lib") if Path(d).is_dir()]
    nvrtc = env_report.find_nvrtc(Path(cuda_root) if cuda_root else None, sys.path)
    info["nvrtc_library"] = str(nvrtc) if nvrtc else None
    if nvrtc is not None:
        libs = [*env_report.nvrtc_library_dirs(nvrtc, check.work), *libs]
    if libs:
        check.env["LD_LIBRARY_PATH"] = os.pathsep.join(
            [*libs, *filter(None, [check.env.get("LD_LIBRARY_PATH")])]
        )
    if not info["gpu_present"]:
        check.blocked["gpu"] = info["why_no_gpu"]
        check.skip("environment", info["why_no_gpu"], **_brief(info))
    else:
        check.runner.record(StepResult("environment", OK, data=_brief(info)))
        check.save()


def wheels(check: Check) -> None:
    if check.args.wheels is None:
        return
    found = sorted(str(p) for p in check.args.wheels.glob("*.whl"))
    if not found:
        check.skip("extra wheels", f"no *.whl in {check.args.wheels}")
        return
    check.run(
        "extra wheels",
        [
            check.py,
            "-m",
            "pip",
            "--isolated",
            "install",
            "--no-index",
            "--no-deps",
            "--disable-pip-version-check",
            *found,
        ],
        "wheels",
    )


def prerequisites(check: Check) -> None:
    code = (
        "import importlib.util as u, sys; "
        "print(' '.join(m for m in sys.argv[1:] if u.find_spec(m) is None))"
    )
    wanted = sorted({m for mods in MODULES.values() for m in mods})
    r = check.run("python packages", [check.py, "-c", code, *wanted], "probe")
    missing = set(r.stdout.split() if r.status == OK else wanted)
    for capability, modules in MODULES.items():
        absent = [m for m in modules if m in missing]
        if absent:
            check.blocked[capability] = (
                f"python packages missing: {', '.join(absent)} (carry wheels and pass "
                "--wheels DIR; tools/README.md)"
            )
    if missing and r.status == OK:  # not a failure: the steps that need them say so
        r.reason = f"missing: {', '.join(sorted(missing))}"
        check.save()


def pycuda(check: Check) -> None:
    probe = (
        "import pycuda, pycuda.driver as d; d.init(); "
        "print(pycuda.VERSION_TEXT, d.get_version(), d.Device.count())"
    )
    have = check.probe(probe)
    if have:
        check.skip_ok("pycuda", f"already installed: {have}")
        return
    cuda_root = check.results["environment"].get("cuda_root")
    the_plan = pycuda_install.plan(
        check.py,
        check.work / "pycuda-wheels",
        check.work / "pycuda-build",
        check.env,
        Path(cuda_root) if cuda_root else None,
        vendor=check.args.vendor,
    )
    data = {"build": the_plan.build, "install": the_plan.install, "problems": the_plan.problems}
    check.results["pycuda_plan"] = data
    if "install" in check.args.skip:
        _block_pycuda(check, "--skip install, and it is not importable", data)
    elif "gpu" in check.blocked:
        _block_pycuda(check, check.blocked["gpu"], data)
    elif check.args.dry_run:
        _block_pycuda(check, "dry run: pycuda not installed", data)
    elif not the_plan.ok or the_plan.build is None or the_plan.install is None:
        check.blocked["pycuda"] = "pycuda cannot be installed offline: " + "; ".join(
            the_plan.problems
        )
        check.runner.record(StepResult("pycuda", FAILED, check.blocked["pycuda"], data=data))
        check.save()
    else:
        built = check.run("pycuda wheel", the_plan.build, "pycuda_build", min_s=30)
        if built.status == OK:
            check.run("pycuda install", the_plan.install, "pycuda_install")
        have = check.probe(probe)
        if have:
            check.skip_ok("pycuda", f"installed from vendor/pycuda: {have}")
        else:
            _block_pycuda(
                check,
                "pycuda did not import after the install (see the steps before)",
                data,
                failed=True,
            )


def _block_pycuda(check: Check, reason: str, data: dict[str, Any], *, failed: bool = False) -> None:
    check.blocked["pycuda"] = f"pycuda unavailable: {reason}"
    if failed:
        check.runner.record(StepResult("pycuda", FAILED, reason, data=data))
        check.save()
    else:
        check.skip("pycuda", reason, **data)


def nvrtc(check: Check) -> None:
    if not check.needs("nvrtc", "gpu", "core"):
        return
    code = (
        "from edge_infer.cuda.compile import nvrtc_version, include_dirs; "
        "print(nvrtc_version(), *include_dirs())"
    )
    r = check.run("nvrtc", [check.py, "-c", code], "probe")
    if r.status != OK:
        check.blocked["nvrtc"] = f"NVRTC or the CUDA headers missing: {r.reason}"


def gpu_tests(check: Check) -> None:
    if "tests" in check.args.skip:
        check.skip("gpu tests", "--skip tests")
        return
    if not check.needs("gpu tests", "gpu", "core", "pytest", "pycuda", "nvrtc"):
        return
    xml = check.args.out / "pytest_gpu.xml"
    paths = [*GPU_TEST_PATHS, *_other_gpu_test_files()]
    cmd = [
        check.py,
        "-m",
        "pytest",
        "-m",
        "gpu",
        "-q",
        "-p",
        "no:cacheprovider",
        "--continue-on-collection-errors",
        # one hung test must not take the step's whole time (pytest-timeout, where installed)
        "-o",
        f"timeout={PER_TEST_TIMEOUT_S}",
        f"--junitxml={xml}",
        *paths,
    ]
    if check.args.dry_run:
        check.skip("gpu tests", "dry run", command=cmd)
        return
    r = check.run("gpu tests", cmd, "tests", min_s=30)
    counts = junit_counts(xml)
    check.results["tests"] = counts
    if r.status == OK and counts.get("tests", 0) == counts.get("skipped", 0):
        r.status = FAILED
        r.reason = f"every gpu test skipped: {'; '.join(counts.get('skip_reasons', []))}"
    elif r.status == FAILED and r.returncode == 5:
        r.reason = "no gpu-marked test was collected"
    check.save()


def _brief(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k != "nvidia_smi"}


def _other_gpu_test_files() -> list[str]:
    found = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if any(rel.startswith(p + "/") for p in GPU_TEST_PATHS):
            continue
        if "mark.gpu" in path.read_text(errors="replace"):
            found.append(rel)
    return found


def junit_counts(xml: Path) -> dict[str, Any]:
    """tests / failed / errors / skipped (and the distinct skip reasons) from pytest's XML."""
    if not xml.is_file():
        return {"error": f"{xml.name} was not written"}
    root = ET.parse(xml).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {
        k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")
    }
    reasons = sorted(
        {re.sub(r"\s+", " ", (e.get("message") or "").strip())[:200] for e in root.iter("skipped")}
    )
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {
        "tests": counts["tests"],
        "passed": passed,
        "failed": counts["failures"],
        "errors": counts["errors"],
        "skipped": counts["skipped"],
        "skip_reasons": reasons[:5],
    }
