"""The layering contracts of ``make lint`` hold, and a deliberate violation breaks them.

``lint-imports`` runs on a copy of the package (and of pyproject.toml's contracts) in a
temporary folder, once as it is and once with one forbidden import added, so the test shows
both that the tree keeps the contracts and that the contracts would catch a violation.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONTRACTS = {  # the names in pyproject.toml
    "no concrete": "The engine core imports no concrete backend (backends are found through "
    "the registry)",
    "daemon": "The engine imports none of the daemon, the synthetic world or the commands",
    "public": "The daemon, the commands and synth use the engine only through edge_infer.engine",
}


def _copy(tmp_path: Path) -> Path:
    work = tmp_path / "tree"
    shutil.copytree(
        ROOT / "edge_infer",
        work / "edge_infer",
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.cu", "*.c", "*.h"),
    )
    shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
    return work


def _lint(work: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(work)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", "pyproject.toml"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _add_import(work: Path, module: str, line: str) -> None:
    path = work / (module.replace(".", "/") + ".py")
    text = path.read_text()
    # after the module docstring and `from __future__`, so the file still compiles
    head, sep, tail = text.partition("from __future__ import annotations\n")
    path.write_text(head + sep + line + "\n" + tail if sep else line + "\n" + text)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not LINT_IMPORTS.exists():
        pytest.fail("lint-imports is missing: install the dev extra (pip install -e '.[dev]')")
    return _copy(tmp_path_factory.mktemp("layering"))


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Contracts: [4-9] kept, 0 broken", result.stdout), result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # the engine core reaching into the CPU backend (as runtime.py once did)
        (
            "edge_infer.engine.runtime",
            "from edge_infer.engine.backends.cpu.device import describe  # noqa",
            "no concrete",
        ),
        ("edge_infer.engine.memory", "import edge_infer.cuda  # noqa", "no concrete"),
        # the engine importing the daemon
        ("edge_infer.engine.builder", "import edge_infer.pipeline.config  # noqa", "daemon"),
        # the daemon importing an engine internal instead of the public API
        (
            "edge_infer.pipeline.daemon",
            "from edge_infer.engine.builder import build  # noqa",
            "public",
        ),
    ],
)
def test_a_forbidden_import_breaks_lint(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    work = _copy(tmp_path)
    _add_import(work, module, line)
    result = _lint(work)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout and "1 broken" in result.stdout, result.stdout
    # the contract's name (the report wraps long names) right before its verdict
    report = " ".join(result.stdout.split())
    name = CONTRACTS[contract]
    assert f"{name} BROKEN" in report or f"{name}BROKEN" in report, result.stdout
