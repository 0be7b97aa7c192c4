"""Session-wide setup shared by pytest-xdist's workers (``make test`` runs ``-n``).

- The main process makes one folder for the test-built kernel objects
  (``isa_builds.SHARED_ENV``) before the workers start: an object one worker compiles, the
  others find instead of compiling it again; removed when the session ends.
- A worker builds the device kernel library (``native.library()``) under a file lock before
  its first test: the first worker compiles it (one object per core), the others wait and load
  it, instead of every worker compiling the same library at the same time.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.backends.cpu.isa_builds import SHARED_ENV

#: the main process's shared objects folder (removed at the end of the session)
_FOLDER = pytest.StashKey[str]()


def _xdist_main(config: pytest.Config) -> bool:
    """True in the main process of a run with xdist workers."""
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if _xdist_main(config) and not os.environ.get(SHARED_ENV):
        folder = tempfile.mkdtemp(prefix="ei-test-objects-")
        os.environ[SHARED_ENV] = folder  # the workers, started after this, inherit it
        config.stash[_FOLDER] = folder


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_FOLDER, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop(SHARED_ENV, None)


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
