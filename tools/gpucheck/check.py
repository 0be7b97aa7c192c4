"""One GPU check run: the steps' shared state and bookkeeping.

:class:`Check` holds the runner (the budget), the results being filled (written after every
step, so a run killed half-way leaves complete files), the environment the steps' children
get, and what is missing (``blocked``); the steps themselves are functions of it
(``setup_steps``, ``bench_steps``). Exit status: 0 every step passed; 1 a step failed or
timed out; 3 nothing failed but steps were skipped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.gpucheck import report
from tools.gpucheck.steps import FAILED, OK, SKIPPED, TIMEOUT, Runner, StepResult, run_group

ROOT = Path(__file__).resolve().parents[2]
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
    "daemon": 180,
}


class Check:
    """One run: the runner, the results being filled, the environment children get, and
    what is missing (``blocked``: capability -> why), which later steps consult."""

    def __init__(self, args: argparse.Namespace, log: Callable[[str], None]) -> None:
        self.args = args
        self.runner = Runner(args.budget, log=log)
        self.work = args.work or Path(tempfile.mkdtemp(prefix="edge-infer-gpu-check-"))
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

    def skip_ok(self, name: str, reason: str) -> None:
        self.runner.record(StepResult(name, OK, reason))
        self.save()

    def probe(self, code: str) -> str:
        """stdout of a short ``python -c`` (empty when it fails); not recorded as a step."""
        out, _, rc, _ = run_group(
            [self.py, "-c", code], min(60.0, max(1.0, self.runner.left())), env=self.env, cwd=ROOT
        )
        return out.strip() if rc == 0 else ""

    def gpu_needs(self, *more: str) -> tuple[str, ...]:
        """What a step on the device needs: with ``--device emu`` (the emulator: a smoke run
        of the commands, no GPU figures) only the Python packages."""
        return ("core", *more) if self.args.device == "emu" else ("gpu", "core", *more)


def exit_status(results: list[StepResult]) -> int:
    statuses = {r.status for r in results}
    if statuses & {FAILED, TIMEOUT}:
        return 1
    return 3 if SKIPPED in statuses else 0


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
