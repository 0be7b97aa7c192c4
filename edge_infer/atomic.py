"""Atomic, durable file writes: the one way edge_infer writes a file that matters.

A reader (another process, or this one after a power cut) sees either the old file or the
complete new one, never a torn write: the bytes go to a temporary file in the same folder,
which is flushed and fsynced, renamed over the target, and then the folder itself is fsynced
so the rename survives a crash. On any error (KeyboardInterrupt included) the temporary file
is removed and a file already at the target is left untouched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_open", "atomic_path", "commit", "write_bytes_atomic", "write_text_atomic"]


#: a temporary file older than this whose writer cannot be identified is abandoned
STALE_AFTER_S = 3600.0


def _temp_name(target: Path) -> Path:
    """``.NAME.<pid>.<random>.tmp``: the writer's pid tells a later writer whether the file
    is still being written or was left by a process that died mid-write."""
    _remove_stale_temps(target)
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _remove_stale_temps(target: Path) -> None:
    """Remove temporary files of ``target``'s own pattern left by writers that died (a build
    killed mid-write): those whose pid is gone, and pid-less ones older than an hour."""
    prefix = f".{target.name}."
    try:
        candidates = [
            p
            for p in target.parent.iterdir()
            if p.name.startswith(prefix) and p.name.endswith(".tmp")
        ]
    except OSError:  # no folder yet, or unreadable: nothing to clean
        return
    now = time.time()
    for tmp in candidates:
        parts = tmp.name[len(prefix) : -len(".tmp")].split(".")
        try:
            if len(parts) == 2 and parts[0].isdigit():
                stale = not _pid_alive(int(parts[0]))
            elif len(parts) == 1 and len(parts[0]) == 16:
                stale = now - tmp.lstat().st_mtime > STALE_AFTER_S
            else:
                continue  # not ours
            if stale and tmp.is_file() and not tmp.is_symlink():
                tmp.unlink()
        except OSError:
            continue  # raced with its writer or another cleaner: leave it


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows; the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; nothing more can be done
    finally:
        os.close(fd)


def commit(tmp: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Durably replace ``target`` with the finished file ``tmp`` (same folder)."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    fsync_dir(Path(target).parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh temporary path next to ``path`` for something else to fill (a compiler, a video
    encoder); when the block succeeds the file is committed over ``path``, else removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target)
    try:
        yield tmp
        commit(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "wb", encoding: str | None = None
) -> Iterator[IO]:
    """``open(path, mode)`` whose result replaces ``path`` only when the block succeeds."""
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', not {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target)
    created = False
    try:
        # O_EXCL never clobbers; mode 0o666 lets the umask decide, as for any new file
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        created = True
        if "b" not in mode and encoding is None:
            encoding = "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        created = False
        fsync_dir(target.parent)
    except BaseException:
        if created:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically and durably."""
    with atomic_open(path, "w") as f:
        f.write(text)
