"""The commands the GPU documentation gives exist and take the options it shows.

Every shell line in the fenced ``sh`` blocks of ``docs/daemon.md``, ``BENCHMARKS.md``,
``deploy/jetson/README.md`` and ``deploy/jetson/gpu-check.md`` that runs one of ours is
checked: ``edge-infer …`` through the CLI's own parser, ``bench/daemon.py …`` through the
benchmark's, ``tools/gpu_check.sh …`` through the GPU check's, ``deploy/jetson/install.sh``
against the options its ``case`` handles, and any other script of the repository by its
path. System tools (``tegrastats``, ``systemctl``, …) are left alone."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import daemon as bench_daemon
from edge_infer.cli import make_parser
from tools.gpucheck import cli as gpucheck_cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = [
    ROOT / "docs" / "daemon.md",
    ROOT / "BENCHMARKS.md",
    ROOT / "deploy" / "jetson" / "README.md",
    ROOT / "deploy" / "jetson" / "gpu-check.md",
]
PYTHONS = {".venv/bin/python", "$PY", "/opt/edge-infer/venv/bin/python", "python3", "python"}
EDGE_INFER = {"edge-infer", "$EI", "/opt/edge-infer/venv/bin/edge-infer", ".venv/bin/edge-infer"}


def shell_commands(text: str) -> Iterator[list[str]]:
    """Each command of each line of the ``sh`` blocks (continuations joined, comments cut,
    split at ``&&``, ``||``, ``|`` and ``;``), as words."""
    for block in re.findall(r"^```(?:sh|bash|shell)\n(.*?)^```", text, re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            command: list[str] = []
            for w in [*words, ";"]:
                if w in ("&&", "||", "|", ";"):
                    if command:
                        yield command
                    command = []
                else:
                    command.append(w)


def _program(words: list[str]) -> list[str]:
    """The command without ``sudo [-u USER]``, ``env [-u NAME]`` and ``NAME=value`` prefixes."""
    while words:
        if words[0] in ("sudo", "env"):
            words = words[1:]
            while words and words[0] == "-u":
                words = words[2:]
        elif re.match(r"^[A-Z_]+=", words[0]):
            words = words[1:]
        else:
            return words
    return words


def _check(words: list[str]) -> str | None:
    """None when the command is ours and valid or not ours; else what is wrong."""
    words = _program(words)
    if not words:
        return None
    prog, args = words[0], words[1:]
    try:
        if prog in EDGE_INFER:
            make_parser().parse_args(args)
        elif prog in PYTHONS and args and args[0] == "bench/daemon.py":
            bench_daemon.parse_args(args[1:])
        elif prog in PYTHONS and args and not args[0].startswith("-"):
            return None if (ROOT / args[0]).is_file() else f"no script {args[0]}"
        elif prog == "tools/gpu_check.sh":
            if "--python" in args:
                i = args.index("--python")
                args = args[:i] + args[i + 2 :]
            gpucheck_cli.parse_args(args)
        elif prog == "deploy/jetson/install.sh":
            script = (ROOT / prog).read_text()
            bad = [a for a in args if a.startswith("--") and f"    {a})" not in script]
            return f"install.sh has no option {bad}" if bad else None
        elif re.match(r"^(bench|tools|deploy)/", prog):
            return None if (ROOT / prog).is_file() else f"no script {prog}"
    except SystemExit as exc:
        return f"rejected (exit {exc.code})"
    return None


@pytest.mark.parametrize("doc", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_documented_commands_exist_and_parse(doc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    problems, checked = [], 0
    for words in shell_commands(doc.read_text()):
        checked += 1
        problem = _check(words)
        if problem:
            problems.append(f"{shlex.join(words)}: {problem} {capsys.readouterr().err.strip()}")
    assert checked > 0, f"{doc}: no sh blocks found"
    assert not problems, "\n".join(problems)


def test_the_checker_catches_wrong_commands() -> None:
    assert _check(["edge-infer", "run", "--config", "x.yaml", "--check"]) is None
    assert _check(["edge-infer", "doctor"]) is not None  # no such command
    assert _check(["sudo", "-u", "u", "$EI", "run", "--nope"]) is not None
    assert _check(["$PY", "bench/daemon.py", "--backend", "tpu"]) is not None
    assert _check(["$PY", "bench/daemon.py", "--backend", "cuda", "--device", "0"]) is None
    assert _check(["tools/gpu_check.sh", "--python", "p", "--out", "o", "--budget", "9"])
    assert _check(["tools/gpu_check.sh", "--python", "p", "--out", "o"]) is None
    assert _check(["deploy/jetson/install.sh", "--cuda", "--turbo"]) is not None
    assert _check(["bench/nothing.py"]) == "no script bench/nothing.py"
    assert _check(["tegrastats", "--interval", "1000"]) is None
