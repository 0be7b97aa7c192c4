"""Session-wide setup: the background compile of a full run, and runs under pytest-xdist
(``pytest -n``; ``make test`` runs serially).

- With ``EI_PREWARM=1`` (``make test`` sets it) the session starts ``python -m tests.prewarm``
  at nice 19, which compiles the cold kernel objects the run will need while the tests leave
  a core idle, and stops it when the session ends (see tests/prewarm.py).

- A worker builds the device kernel library (``native.library()``) under a file lock before
  its first test: the first worker compiles it (one object per core), the others wait and load
  it, instead of every worker compiling the same library at the same time.
- The test-built kernel objects need nothing here: isa_builds keeps them in one folder for
  every process, a lock per object (``isa_builds.SHARED_ENV`` names another folder).
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_prewarm: subprocess.Popen[bytes] | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _prewarm
    if os.environ.get("EI_PREWARM") == "1" and not hasattr(session.config, "workerinput"):
        _prewarm = subprocess.Popen(
            [sys.executable, "-m", "tests.prewarm"],
            cwd=Path(__file__).resolve().parents[1],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its compilers are stopped with it
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _prewarm is not None and _prewarm.poll() is None:
        os.killpg(_prewarm.pid, signal.SIGTERM)
        _prewarm.wait()


@pytest.fixture(scope="session", autouse=True)
def _native_library_once(request: pytest.FixtureRequest) -> Iterator[None]:
    """In an xdist worker: the device kernel library, compiled by one worker at a time."""
    if hasattr(request.config, "workerinput"):
        from edge_infer.engine.backends.cpu import native

        folder = native.cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        with open(Path(folder) / ".test-session.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            native.library()
    yield
