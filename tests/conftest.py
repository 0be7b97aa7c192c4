"""Session-wide setup for runs under pytest-xdist (``pytest -n``; ``make test`` runs serially).

- A worker builds the device kernel library (``native.library()``) under a file lock before
  its first test: the first worker compiles it (one object per core), the others wait and load
  it, instead of every worker compiling the same library at the same time.
- The test-built kernel objects need nothing here: isa_builds keeps them in one folder for
  every process, a lock per object (``isa_builds.SHARED_ENV`` names another folder).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from pathlib import Path

import pytest


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
