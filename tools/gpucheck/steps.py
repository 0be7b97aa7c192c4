"""Steps with their own timeouts inside one overall budget, and their recorded results.

A step is a subprocess (so a hang in pycuda, the driver or a kernel cannot take the driver
with it): it runs in its own process group and the whole group is killed at its timeout.
Each step's timeout is cut to what is left of the budget, less a reserve for writing the
results; a step that would get less than its minimum is skipped as out of time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

OK, FAILED, SKIPPED, TIMEOUT = "ok", "failed", "skipped", "timeout"
#: characters of a step's stdout/stderr kept in the results (the end: errors come last)
TAIL_CHARS = 4000


@dataclasses.dataclass
class StepResult:
    """One step's outcome, as written to the results file."""

    name: str
    status: str
    reason: str = ""
    seconds: float = 0.0
    command: list[str] | None = None
    returncode: int | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: the whole stdout, for parsing a step's own report; only the tail is written
    stdout: str = dataclasses.field(default="", repr=False)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        del out["stdout"]
        return out

    def line(self) -> str:
        """The one progress line: ``[status] name (12.3 s): reason``."""
        why = f": {self.reason}" if self.reason else ""
        return f"[{self.status}] {self.name} ({self.seconds:.1f} s){why}"


def tail(text: str, limit: int = TAIL_CHARS) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


class Runner:
    """Runs steps against one deadline, records every result and prints progress."""

    def __init__(
        self,
        budget_s: float,
        *,
        reserve_s: float = 15.0,
        log: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._deadline = clock() + budget_s
        self._reserve = reserve_s
        self.log = log
        self.results: list[StepResult] = []
        #: seconds kept back for a later step (see :meth:`holding`)
        self.held_s = 0.0

    def left(self) -> float:
        """Seconds left for steps (the reserve for writing results and the time held for a
        later step excluded)."""
        return self._deadline - self._reserve - self.held_s - self._clock()

    @contextlib.contextmanager
    def holding(self, seconds: float) -> Iterator[None]:
        """Keep ``seconds`` of the budget back for a later step while the block's steps run
        (their timeouts are cut, and they are skipped as out of time, to leave it)."""
        before, self.held_s = self.held_s, self.held_s + max(0.0, seconds)
        try:
            yield
        finally:
            self.held_s = before

    def timeout_for(self, wanted_s: float) -> float:
        return max(0.0, min(wanted_s, self.left()))

    def record(self, result: StepResult) -> StepResult:
        self.results.append(result)
        self.log(result.line())
        return result

    def skip(self, name: str, reason: str, **data: Any) -> StepResult:
        return self.record(StepResult(name, SKIPPED, reason, data=dict(data)))

    def run(
        self,
        name: str,
        command: Sequence[str],
        *,
        timeout_s: float,
        min_s: float = 5.0,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> StepResult:
        """Run ``command``; ``failed`` on a non-zero exit, ``timeout`` past its time."""
        limit = self.timeout_for(timeout_s)
        if limit < min_s:
            held = f", {self.held_s:.0f} s more kept for later steps" if self.held_s else ""
            return self.skip(
                name,
                f"out of time ({self.left():.0f} s of the budget left{held}, "
                f"the step needs at least {min_s:.0f} s)",
            )
        self.log(f"[run] {name} (timeout {limit:.0f} s)")
        started = self._clock()
        out, err, code, timed_out = run_group(list(command), limit, env=env, cwd=cwd)
        result = StepResult(
            name,
            OK,
            seconds=round(self._clock() - started, 2),
            command=list(command),
            returncode=code,
            stdout_tail=tail(out),
            stderr_tail=tail(err),
            stdout=out,
        )
        if timed_out:
            result.status, result.reason = TIMEOUT, f"killed after {limit:.0f} s"
        elif code != 0:
            last = (err.strip() or out.strip()).splitlines()[-1:] or ["no output"]
            result.status, result.reason = FAILED, f"exit {code}: {last[0][:300]}"
        return self.record(result)


def run_group(
    command: list[str],
    timeout_s: float,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[str, str, int | None, bool]:
    """(stdout, stderr, returncode, timed_out). The command runs in a new session, and the
    whole process group is killed at the timeout (its children too: pip's compiler, pytest's
    workers), so nothing of it outlives the step."""
    try:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:  # the program itself is missing
        return "", f"cannot start {command[0]}: {exc}", 127, False
    try:
        out, err = proc.communicate(timeout=timeout_s)
        return out, err, proc.returncode, False
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, err = proc.communicate()
        return out, err, None, True


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group ended by itself meanwhile
        os.killpg(pid, signal.SIGKILL)
