"""The GPU check's order of steps: ``python -m tools.gpucheck --out DIR`` (``tools/gpu_check.sh``
is the usual way in). Exit status: 0 every step ran and passed; 1 a step failed or timed out;
2 bad arguments; 3 nothing failed but steps were skipped (no GPU, no pycuda, no torch, ...).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.gpucheck import bench, environment, pycuda_install, report
from tools.gpucheck.models import MODELS
from tools.gpucheck.steps import FAILED, OK, SKIPPED, TIMEOUT, Runner, StepResult

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("install", "tests", "bench", "torch", "daemon")
PRECISIONS = ("fp32", "fp16", "int8")
#: per-step timeouts (s); the budget cuts them further when time runs short
TIMEOUTS = {
    "probe": 60,
    "wheels": 60,
    "pycuda_build": 240,
    "pycuda_install": 60,
    "tests": 200,
    "models": 60,
    "images": 60,
    "calibrate": 90,
    "build": 90,
    "bench": 60,
    "torch": 150,
    "daemon": 150,
}
#: the Python packages each capability needs (a bare GPU image may lack some: carry them as
#: wheels and pass --wheels DIR); a missing one skips only the steps that need it
MODULES = {
    "core": ("numpy", "onnx", "scipy", "yaml", "tqdm", "threadpoolctl"),  # build, bench, tests
    "pytest": ("pytest", "hypothesis"),  # the gpu-marked tests
    "int8": ("cv2",),  # calibration images and frames (edge_infer.synth, pipeline)
    "pipeline": ("cv2", "zmq", "pydantic"),  # the daemon
}
#: test folders with gpu-marked tests (the device fixture marks its gpu side in conftest)
GPU_TEST_PATHS = ("tests/cuda",)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tools/gpu_check.sh",
        description=(
            "Check edge_infer on this machine's NVIDIA GPU, offline, within the budget: pycuda "
            "from vendor/pycuda, the gpu-marked tests, engine benchmarks against PyTorch, a short "
            "daemon run. Results: OUT/gpu_check.json and OUT/gpu_check.md."
        ),
    )
    p.add_argument("--out", type=Path, required=True, help="results folder")
    p.add_argument("--work", type=Path, help="engines, models, builds (default: a temp folder)")
    p.add_argument(
        "--budget",
        type=float,
        default=460.0,
        help="seconds for the whole run (default 460: inside 8 minutes)",
    )
    p.add_argument(
        "--device",
        default="0",
        help="GPU index (default 0); 'emu': the engine steps on the emulator, a smoke run of "
        "the commands without a GPU (its times are the emulator's, not a GPU's)",
    )
    p.add_argument(
        "--vendor",
        type=Path,
        default=pycuda_install.VENDOR,
        help="pycuda's sdist and wheels (default vendor/pycuda)",
    )
    p.add_argument(
        "--wheels", type=Path, help="a folder of extra wheels to install offline first (--no-index)"
    )
    p.add_argument(
        "--skip", action="append", default=[], choices=STEPS, help="leave a step out (repeatable)"
    )
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated model names")
    p.add_argument("--precisions", default="fp16,int8,fp32")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--iterations", type=int, default=200, help="timed runs per benchmark")
    p.add_argument(
        "--tune",
        choices=("headline", "all", "none"),
        default="headline",
        help="headline: YOLOv8n-640 FP16/INT8 tuned, the rest --no-tune",
    )
    p.add_argument("--daemon-seconds", type=float, default=20.0)
    p.add_argument(
        "--dry-run", action="store_true", help="probe and plan every step, run none of the GPU work"
    )
    args = p.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.precisions = [m for m in args.precisions.split(",") if m]
    bad = [m for m in args.models if m not in MODELS]
    if bad or not args.models:
        p.error(f"--models: unknown {', '.join(bad) or '(none given)'}; known: {', '.join(MODELS)}")
    bad = [m for m in args.precisions if m not in PRECISIONS]
    if bad or not args.precisions:
        p.error(
            f"--precisions: unknown {', '.join(bad) or '(none given)'}; known: "
            f"{', '.join(PRECISIONS)}"
        )
    try:
        args.batches = [int(b) for b in args.batches.split(",") if b]
    except ValueError:
        p.error(f"--batches: integers expected, got {args.batches!r}")
    if not args.batches or not all(1 <= b <= bench.PROFILE[-1] for b in args.batches):
        p.error(f"--batches: each between 1 and {bench.PROFILE[-1]} (the engines' profile)")
    if args.budget < 30 or args.iterations < 1 or args.daemon_seconds <= 0:
        p.error("--budget must be >= 30 s, --iterations >= 1, --daemon-seconds > 0")
    return args


class Check:
    """One run: the runner, the results being filled, the environment children get."""

    def __init__(self, args: argparse.Namespace, log: Callable[[str], None]) -> None:
        self.args = args
        self.runner = Runner(args.budget, log=log)
        self.work = args.work or Path(tempfile.gettempdir()) / "edge-infer-gpu-check"
        self.py = sys.executable
        self.results: dict[str, Any] = {
            "version": 1,
            "started": _now(),
            "command": " ".join(["tools/gpu_check.sh", *sys.argv[1:]]),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "steps": [],
            "engine": [],
            "torch": {},
        }
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        self.env["PYTHONUNBUFFERED"] = "1"
        self.blocked: dict[str, str] = {}  # capability -> why it is missing

    # -- bookkeeping ------------------------------------------------------------------------
    def save(self) -> None:
        self.results["steps"] = [r.to_json() for r in self.runner.results]
        self.results["finished"] = _now()
        report.write(self.args.out, self.results)

    def run(self, name: str, command: list[str], timeout_key: str, **kw: Any) -> StepResult:
        result = self.runner.run(
            name, command, timeout_s=TIMEOUTS[timeout_key], env=self.env, cwd=ROOT, **kw
        )
        self.save()
        return result

    def skip(self, name: str, reason: str, **data: Any) -> StepResult:
        result = self.runner.skip(name, reason, **data)
        self.save()
        return result

    def needs(self, name: str, *capabilities: str) -> bool:
        """False (and the step recorded as skipped) when a capability it needs is missing."""
        for cap in capabilities:
            if cap in self.blocked:
                self.skip(name, self.blocked[cap])
                return False
        return True

    # -- steps ------------------------------------------------------------------------------
    def environment(self) -> None:
        info = environment.collect(self.env)
        self.results["environment"] = info
        cuda_root = info["cuda_root"]
        libs: list[str] = []
        if cuda_root:  # nvcc and the libraries of this toolkit, for the children
            self.env["CUDA_ROOT"] = cuda_root
            self.env["PATH"] = os.pathsep.join((f"{cuda_root}/bin", self.env.get("PATH", "")))
            libs += [d for d in (f"{cuda_root}/lib64", f"{cuda_root}/lib") if Path(d).is_dir()]
        nvrtc = environment.find_nvrtc(Path(cuda_root) if cuda_root else None, sys.path)
        info["nvrtc_library"] = str(nvrtc) if nvrtc else None
        if nvrtc is not None:
            libs = [*environment.nvrtc_library_dirs(nvrtc, self.work), *libs]
        if libs:
            self.env["LD_LIBRARY_PATH"] = os.pathsep.join(
                [*libs, *filter(None, [self.env.get("LD_LIBRARY_PATH")])]
            )
        if not info["gpu_present"]:
            self.blocked["gpu"] = info["why_no_gpu"]
            self.skip("environment", info["why_no_gpu"], **_brief(info))
        else:
            self.runner.record(StepResult("environment", OK, data=_brief(info)))
            self.save()

    def wheels(self) -> None:
        if self.args.wheels is None:
            return
        found = sorted(str(p) for p in self.args.wheels.glob("*.whl"))
        if not found:
            self.skip("extra wheels", f"no *.whl in {self.args.wheels}")
            return
        self.run(
            "extra wheels",
            [
                self.py,
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

    def prerequisites(self) -> None:
        code = (
            "import importlib.util as u, sys; "
            "print(' '.join(m for m in sys.argv[1:] if u.find_spec(m) is None))"
        )
        wanted = sorted({m for mods in MODULES.values() for m in mods})
        r = self.run("python packages", [self.py, "-c", code, *wanted], "probe")
        missing = set(r.stdout.split() if r.status == OK else wanted)
        for capability, modules in MODULES.items():
            absent = [m for m in modules if m in missing]
            if absent:
                self.blocked[capability] = (
                    f"python packages missing: {', '.join(absent)} (carry wheels and pass "
                    "--wheels DIR; tools/README.md)"
                )
        if missing and r.status == OK:  # not a failure: the steps that need them say so
            r.reason = f"missing: {', '.join(sorted(missing))}"
            self.save()

    def pycuda(self) -> None:
        probe = (
            "import pycuda, pycuda.driver as d; d.init(); "
            "print(pycuda.VERSION_TEXT, d.get_version(), d.Device.count())"
        )
        have = self._quiet_probe(probe)
        if have:
            self.skip_ok("pycuda", f"already installed: {have}")
            return
        cuda_root = self.results["environment"].get("cuda_root")
        the_plan = pycuda_install.plan(
            self.py,
            self.work / "pycuda-wheels",
            self.work / "pycuda-build",
            self.env,
            Path(cuda_root) if cuda_root else None,
            vendor=self.args.vendor,
        )
        data = {"build": the_plan.build, "install": the_plan.install, "problems": the_plan.problems}
        self.results["pycuda_plan"] = data
        if "install" in self.args.skip:
            self._block_pycuda("--skip install, and it is not importable", data)
        elif "gpu" in self.blocked:
            self._block_pycuda(self.blocked["gpu"], data)
        elif self.args.dry_run:
            self._block_pycuda("dry run: pycuda not installed", data)
        elif not the_plan.ok or the_plan.build is None or the_plan.install is None:
            self.blocked["pycuda"] = "pycuda cannot be installed offline: " + "; ".join(
                the_plan.problems
            )
            self.runner.record(StepResult("pycuda", FAILED, self.blocked["pycuda"], data=data))
            self.save()
        else:
            built = self.run("pycuda wheel", the_plan.build, "pycuda_build", min_s=30)
            if built.status == OK:
                self.run("pycuda install", the_plan.install, "pycuda_install")
            have = self._quiet_probe(probe)
            if have:
                self.skip_ok("pycuda", f"installed from vendor/pycuda: {have}")
            else:
                self._block_pycuda(
                    "pycuda did not import after the install (see the steps before)",
                    data,
                    failed=True,
                )

    def skip_ok(self, name: str, reason: str) -> None:
        self.runner.record(StepResult(name, OK, reason))
        self.save()

    def _block_pycuda(self, reason: str, data: dict[str, Any], *, failed: bool = False) -> None:
        self.blocked["pycuda"] = f"pycuda unavailable: {reason}"
        if failed:
            self.runner.record(StepResult("pycuda", FAILED, reason, data=data))
            self.save()
        else:
            self.skip("pycuda", reason, **data)

    def _quiet_probe(self, code: str) -> str:
        """stdout of a short ``python -c`` (empty when it fails); not recorded as a step."""
        from tools.gpucheck.steps import run_group

        out, _, rc, _ = run_group(
            [self.py, "-c", code], min(60.0, max(1.0, self.runner.left())), env=self.env, cwd=ROOT
        )
        return out.strip() if rc == 0 else ""

    def nvrtc(self) -> None:
        if not self.needs("nvrtc", "gpu", "core"):
            return
        code = (
            "from edge_infer.cuda.compile import nvrtc_version, include_dirs; "
            "print(nvrtc_version(), *include_dirs())"
        )
        r = self.run("nvrtc", [self.py, "-c", code], "probe")
        if r.status != OK:
            self.blocked["nvrtc"] = f"NVRTC or the CUDA headers missing: {r.reason}"

    def tests(self) -> None:
        if "tests" in self.args.skip:
            self.skip("gpu tests", "--skip tests")
            return
        if not self.needs("gpu tests", "gpu", "core", "pytest", "pycuda", "nvrtc"):
            return
        xml = self.args.out / "pytest_gpu.xml"
        paths = [*GPU_TEST_PATHS, *_other_gpu_test_files()]
        cmd = [
            self.py,
            "-m",
            "pytest",
            "-m",
            "gpu",
            "-q",
            "-p",
            "no:cacheprovider",
            "--continue-on-collection-errors",
            f"--junitxml={xml}",
            *paths,
        ]
        if self.args.dry_run:
            self.skip("gpu tests", "dry run", command=cmd)
            return
        r = self.run("gpu tests", cmd, "tests", min_s=30)
        counts = junit_counts(xml)
        self.results["tests"] = counts
        if r.status == OK and counts.get("tests", 0) == counts.get("skipped", 0):
            r.status = FAILED
            r.reason = f"every gpu test skipped: {'; '.join(counts.get('skip_reasons', []))}"
        elif r.status == FAILED and r.returncode == 5:
            r.reason = "no gpu-marked test was collected"
        self.save()

    def gpu_needs(self, *more: str) -> tuple[str, ...]:
        """What a step on the device needs: with ``--device emu`` (the emulator: a smoke run
        of the commands, no GPU figures) only the Python packages."""
        return ("core", *more) if self.args.device == "emu" else ("gpu", "core", *more)

    def prepare_models(self) -> None:
        if not self.needs("models", *self.gpu_needs()):
            return
        if self.args.dry_run:
            self.skip("models", "dry run")
            return
        if "yolov8n-640" in self.args.models:
            r = self.run(
                "models",
                [self.py, "-m", "tools.gpucheck.models", "--work", str(self.work)],
                "models",
            )
            if r.status != OK:
                self.blocked["yolov8n-640"] = f"its ONNX was not written: {r.reason}"
        if "int8" not in self.args.precisions:
            return
        if "int8" in self.blocked:
            self.skip("calibration images", self.blocked["int8"])
            return
        images = self.work / "calib"
        r = self.run(
            "calibration images",
            [
                self.py,
                "-m",
                "edge_infer",
                "synth",
                "images",
                "--out",
                str(images),
                "--split",
                "calib",
                "--count",
                "16",
                "--seed",
                "3",
                "--size",
                "320",
            ],
            "images",
        )
        if r.status != OK:
            self.blocked["int8"] = f"no calibration images: {r.reason}"
            return
        for name in self.args.models:
            if name in self.blocked:
                continue
            spec = MODELS[name]
            r = self.run(
                f"calibrate {name}",
                bench.calibrate_command(self.py, spec, self.work, images / "calib"),
                "calibrate",
            )
            if r.status != OK:
                self.blocked[f"int8:{name}"] = f"no calibration cache: {r.reason}"

    def torch(self) -> None:
        if "torch" in self.args.skip:
            self.results["torch"] = {"reason": "--skip torch"}
            self.skip("pytorch", "--skip torch")
            return
        if not self.needs("pytorch", "gpu", "core"):
            self.results["torch"] = {"reason": self.runner.results[-1].reason}
            return
        have = self._quiet_probe(
            "import torch; print(torch.__version__, torch.cuda.is_available())"
        )
        if not have:
            self.results["torch"] = {"reason": "torch is not importable"}
            self.skip("pytorch", "torch is not importable")
            return
        if have.split()[-1] != "True":
            reason = f"torch {have.split()[0]} sees no CUDA device"
            self.results["torch"] = {"reason": reason}
            self.skip("pytorch", reason)
            return
        models = [
            f"{n}={MODELS[n].onnx(self.work)}" for n in self.args.models if n not in self.blocked
        ]
        cmd = [
            self.py,
            "-m",
            "tools.gpucheck.torch_baseline",
            "--iterations",
            str(self.args.iterations),
            "--batch",
            *map(str, self.args.batches),
        ]
        for m in models:
            cmd += ["--model", m]
        if self.args.dry_run:
            self.results["torch"] = {"reason": "dry run"}
            self.skip("pytorch", "dry run", command=cmd)
            return
        r = self.run("pytorch", cmd, "torch", min_s=20)
        rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        self.results["torch"] = {
            "env": next((x["env"] for x in rows if "env" in x), None),
            "rows": [x for x in rows if "model" in x],
            "reason": None if r.status == OK else r.reason,
        }
        self.save()

    def engines(self) -> None:
        if "bench" in self.args.skip:
            self.skip("engine benchmarks", "--skip bench")
            return
        needs = self.gpu_needs() if self.args.device == "emu" else self.gpu_needs("pycuda", "nvrtc")
        if not self.needs("engine benchmarks", *needs):
            return
        help_text = self._quiet_probe(
            "import sys; sys.argv = ['edge-infer', 'build', '--help']"
            "; from edge_infer.cli import main; main()"
        )
        has_device = "--device" in help_text
        built_any, first_failure = False, ""
        for cfg in bench.configs(self.args.models, self.args.precisions, self.args.tune):
            name = f"build {cfg.name}"
            blocked = self.blocked.get(cfg.model.name) or (
                self.blocked.get("int8") or self.blocked.get(f"int8:{cfg.model.name}")
                if cfg.precision == "int8"
                else None
            )
            if blocked:
                self.skip(name, blocked)
                continue
            if first_failure and not built_any:
                self.skip(name, f"the first CUDA build failed: {first_failure}")
                continue
            calib = self.work / f"{cfg.model.name}.calib" if cfg.precision == "int8" else None
            cmd = bench.build_command(
                self.py, cfg, self.work, self.args.device, calib, has_device_flag=has_device
            )
            if self.args.dry_run:
                self.skip(name, "dry run", command=cmd)
                continue
            built = self.run(name, cmd, "build", min_s=20)
            if built.status != OK:
                first_failure = first_failure or built.reason
                continue
            built_any = True
            for batch in self.args.batches:
                self.bench_one(cfg, batch, built.seconds, has_device)

    def bench_one(self, cfg: bench.Config, batch: int, build_s: float, has_device: bool) -> None:
        cmd = bench.bench_command(
            self.py,
            cfg,
            self.work,
            batch,
            self.args.device,
            self.args.iterations,
            has_device_flag=has_device,
        )
        r = self.run(f"bench {cfg.name} b{batch}", cmd, "bench")
        if r.status != OK:
            return
        try:
            raw = json.loads(r.stdout[r.stdout.index("{") :])
        except ValueError as exc:
            r.status, r.reason = FAILED, f"bench printed no JSON report: {exc}"
            self.save()
            return
        row = {
            "model": cfg.model.name,
            "precision": cfg.precision,
            "tuned": cfg.tune,
            "build_s": build_s,
            **bench.parse_bench(raw, batch),
            "raw": raw,
        }
        self.results["engine"].append(row)
        self.save()

    def daemon(self) -> None:
        if "daemon" in self.args.skip:
            self.skip("daemon", "--skip daemon")
            return
        if not self.needs("daemon", "gpu", "core", "pipeline", "pycuda", "nvrtc"):
            return
        help_text = self._quiet_probe(
            "import runpy, sys; sys.argv = ['bench/daemon.py', '--help']; "
            "runpy.run_path('bench/daemon.py', run_name='__main__')"
        )
        if "--backend" not in help_text:
            self.skip("daemon", "bench/daemon.py has no --backend option yet (issue 15 adds it)")
            return
        if shutil.which("ffmpeg", path=self.env.get("PATH")) is None:
            self.skip(
                "daemon", "ffmpeg not installed (bench/daemon.py encodes its camera videos with it)"
            )
            return
        out = self.work / "daemon"
        cmd = [
            self.py,
            "bench/daemon.py",
            "--backend",
            "cuda",
            "--cameras",
            "30",
            "--seconds",
            f"{self.args.daemon_seconds:g}",
            "--warmup",
            "5",
            "--no-tune",
            "--results",
            str(out),
            "--cache",
            str(self.work / "daemon-cache"),
        ]
        if self.args.dry_run:
            self.skip("daemon", "dry run", command=cmd)
            return
        r = self.run("daemon", cmd, "daemon", min_s=60)
        summary = out / "daemon.md"
        self.results["daemon"] = summary.read_text() if summary.is_file() else r.stdout_tail
        self.save()


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


def exit_status(results: list[StepResult]) -> int:
    statuses = {r.status for r in results}
    if statuses & {FAILED, TIMEOUT}:
        return 1
    return 3 if SKIPPED in statuses else 0


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    log_file = args.out / "gpu_check.log"

    def log(line: str) -> None:
        print(line, flush=True)
        with log_file.open("a") as f:
            f.write(line + "\n")

    check = Check(args, log)
    check.work.mkdir(parents=True, exist_ok=True)
    log(f"GPU check: results in {args.out}, work files in {check.work}, budget {args.budget:.0f} s")
    check.environment()
    check.wheels()
    check.prerequisites()
    check.pycuda()
    check.nvrtc()
    check.tests()
    check.prepare_models()
    check.torch()
    check.engines()
    check.daemon()
    status = exit_status(check.runner.results)
    check.results["exit_status"] = status
    check.save()
    log(f"done: exit {status} ({report.SUMMARY_MD} and {report.RESULTS_JSON} in {args.out})")
    return status
