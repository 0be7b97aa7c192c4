"""edge_infer.atomic: whole new file or the old one, never a torn one, no temp left behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from edge_infer.atomic import atomic_open, atomic_path, write_bytes_atomic, write_text_atomic


def test_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f.txt"
    write_text_atomic(path, "one")
    write_text_atomic(path, "two ✓")
    assert path.read_text(encoding="utf-8") == "two ✓"
    assert [p.name for p in path.parent.iterdir()] == ["f.txt"]


def test_failure_inside_the_block_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    write_bytes_atomic(path, b"old")
    with pytest.raises(KeyboardInterrupt), atomic_open(path) as f:
        f.write(b"half of the new")
        raise KeyboardInterrupt
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


@pytest.mark.parametrize("failure", ["fsync", "replace"])
def test_failed_fsync_or_rename_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    path = tmp_path / "f.bin"
    write_bytes_atomic(path, b"old")
    calls: list[str] = []

    def boom(*args: object) -> None:
        calls.append(failure)
        raise OSError(errno.EIO, "simulated I/O error")

    monkeypatch.setattr(os, failure, boom)
    with pytest.raises(OSError, match="simulated"):
        write_bytes_atomic(path, b"new")
    monkeypatch.undo()
    assert calls and path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_file_and_folder_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[bool] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.path.isdir(f"/proc/self/fd/{fd}") if os.path.isdir("/proc") else True)
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    write_bytes_atomic(tmp_path / "f.bin", b"x")
    assert len(synced) == 2 and synced[-1], "the file, then its folder (the rename)"


def test_atomic_path_commits_what_another_writer_made(tmp_path: Path) -> None:
    target = tmp_path / "lib.so"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_bytes(b"built")
    assert target.read_bytes() == b"built"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("compiler failed")
    assert target.read_bytes() == b"built"
    assert [p.name for p in tmp_path.iterdir()] == ["lib.so"]


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_next_write_removes_temps_left_by_a_killed_writer(tmp_path: Path) -> None:
    path = tmp_path / "m.engine"
    dead = tmp_path / f".m.engine.{_dead_pid()}.0123456789abcdef.tmp"  # writer died
    live = tmp_path / f".m.engine.{os.getpid()}.fedcba9876543210.tmp"  # being written now
    old = tmp_path / ".m.engine.00112233445566ff.tmp"  # pid-less, from an older version
    young = tmp_path / ".m.engine.aabbccddeeff0011.tmp"
    other = tmp_path / f".other.engine.{_dead_pid()}.0123456789abcdef.tmp"  # not this path's
    for p in (dead, live, old, young, other):
        p.write_bytes(b"partial")
    os.utime(old, (0, 0))
    write_bytes_atomic(path, b"engine")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["m.engine", live.name, young.name, other.name])
