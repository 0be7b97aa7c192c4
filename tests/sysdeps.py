"""System tools a test declares it needs: skipped on a developer's machine without them, a
failure under CI (``CI=true``), where ``make test`` installs them
(``tools/install_system_deps.sh``) and a missing one is a broken set-up, not a pass."""

from __future__ import annotations

import os
import shutil

import pytest

INSTALLER = "tools/install_system_deps.sh"


def missing(*tools: str) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def need(*tools: str) -> None:
    """Skip (locally) or fail (under CI) the calling test when a tool is missing."""
    absent = missing(*tools)
    if not absent:
        return
    reason = f"{', '.join(absent)} not installed ({INSTALLER} installs them)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI: {reason}", pytrace=False)
    pytest.skip(reason)
