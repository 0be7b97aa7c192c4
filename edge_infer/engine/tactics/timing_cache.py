"""The timing cache: tactic timings keyed by layer signature, for one device and version.

A cache is a hint, never an input the build depends on: a file that cannot be used (not a
regular file — a directory or a FIFO is never opened for reading, so nothing blocks —, not
UTF-8 JSON, nested absurdly deep, of another format, with a time that is not a number) is
ignored with a warning and the build starts a fresh cache.

A cache of other kernels (the backend's ``kernels_identity``: the CPU's native kernel
library's build key, which changes with any kernel source, the compiler or its flags) or of
another edge_infer version is ignored and rewritten: its timings are not of these kernels.
A cache written on another device is ignored too, and is not overwritten: this device's
timings go to a file beside it with the device in its name (``timing.json`` →
``timing.cpu-1a2b3c4d5e6f.json``), which the next build on this device reads. So one cache
path can be shared by the builds of several devices. Saving is atomic; a save that fails (a
read-only folder) is a warning, not a failed build.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import stat
from pathlib import Path
from typing import Any

from edge_infer._version import __version__
from edge_infer.atomic import write_text_atomic

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
#: a cache larger than this is not read (it would be millions of layers)
MAX_CACHE_BYTES = 64 << 20


class TimingCache:
    """Tactic timings keyed by layer signature, valid for one device, edge_infer version and
    kernel build (``kernels``; see the module docstring for what is ignored and where it is
    saved)."""

    def __init__(
        self, device: dict[str, Any], path: str | os.PathLike | None = None, kernels: str = ""
    ) -> None:
        self.device = device
        self.kernels = kernels
        self.path = Path(path) if path else None
        self.entries: dict[str, dict[str, Any]] = {}
        self.hits = 0
        self.misses = 0
        if self.path is not None:
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        data = _read_json(self.path)
        if data is not None and data.get("device") != self.device:
            beside = device_path(self.path, self.device)
            log.warning("timing cache %s was written on another device; ignoring it and "
                        "leaving it as it is: this device's timings are read from and saved "
                        "to %s", self.path, beside)  # fmt: skip
            self.path = beside
            data = _read_json(beside)
            if data is not None and data.get("device") != self.device:
                log.warning("timing cache %s is another device's too; ignoring it", beside)
                return
        if data is None or not _this_version(data, self.path):
            return
        if data.get("kernels", "") != self.kernels:
            theirs, ours = data.get("kernels") or "none named", self.kernels or "none named"
            log.warning("timing cache %s timed other kernels (%s; these are %s); ignoring its "
                        "timings (a fresh cache is written)", self.path, theirs, ours)  # fmt: skip
            return
        entries = _entries(data["entries"])
        if entries is None:
            log.warning("timing cache %s has an entry that is not a tactic with numeric times;"
                        " ignoring it (a fresh cache is written)", self.path)  # fmt: skip
            return
        self.entries = entries

    def get(self, signature: str, names: list[str]) -> dict[str, Any] | None:
        entry = self.entries.get(signature)
        # a hit needs a timing for every candidate: a tactic added since (a new kernel, a
        # compiler installed) is timed rather than never considered
        timed = entry.get("times_us") if entry is not None else None
        if (entry is not None and entry["tactic"] in names and isinstance(timed, dict)
                and set(names) <= set(timed)):  # fmt: skip
            self.hits += 1
            return entry
        self.misses += 1
        return None

    def put(self, signature: str, tactic: str, times: dict[str, float]) -> None:
        self.entries[signature] = {"tactic": tactic, "times_us": times}

    def save(self) -> None:
        if self.path is None:
            return
        if _exists_not_regular(self.path):
            log.warning("timing cache %s is not a regular file; the timings are not saved",
                        self.path)  # fmt: skip
            return
        data = {"format": CACHE_FORMAT, "edge_infer_version": __version__,
                "device": self.device, "kernels": self.kernels,
                "entries": self.entries}  # fmt: skip
        try:
            write_text_atomic(self.path, json.dumps(data, indent=1, sort_keys=True))
        except OSError as exc:
            log.warning("timing cache %s cannot be written (%s); the timings are not saved",
                        self.path, exc.strerror or exc)  # fmt: skip


def device_path(path: Path, device: dict[str, Any]) -> Path:
    """The cache path of ``device`` beside ``path``: its kind and a hash of its fingerprint."""
    digest = hashlib.sha256(json.dumps(device, sort_keys=True).encode()).hexdigest()[:12]
    kind = "".join(c for c in str(device.get("kind", "device")) if c.isalnum())[:16] or "device"
    return path.with_name(f"{path.stem}.{kind}-{digest}{path.suffix or '.json'}")


def _exists_not_regular(path: Path) -> bool:
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False  # absent (or unreadable: the write will say)


def _read_json(path: Path) -> dict[str, Any] | None:
    """The cache file's JSON object, or None (absent; else a warning says why not)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: opening a FIFO does not wait for a writer
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("timing cache %s is unreadable (%s); ignoring it", path, exc.strerror or exc)
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            log.warning("timing cache %s is not a regular file; ignoring it", path)
            return None
        if st.st_size > MAX_CACHE_BYTES:
            log.warning("timing cache %s is %d bytes (over %d); ignoring it", path,
                        st.st_size, MAX_CACHE_BYTES)  # fmt: skip
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            raw = f.read(MAX_CACHE_BYTES + 1)
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError: a ValueError
        why = str(exc)[:200] if not isinstance(exc, RecursionError) else "nested too deep"
        log.warning("timing cache %s is unreadable (%s); ignoring it", path, why)
        return None
    finally:
        os.close(fd)
    if not (isinstance(data, dict) and data.get("format") == CACHE_FORMAT
            and isinstance(data.get("entries"), dict)):  # fmt: skip
        log.warning("timing cache %s has an unknown format; ignoring it", path)
        return None
    return data


def _this_version(data: dict[str, Any], path: Path) -> bool:
    if data.get("edge_infer_version") != __version__:
        log.warning("timing cache %s was written by edge_infer %s (this is %s); ignoring it",
                    path, data.get("edge_infer_version"), __version__)  # fmt: skip
        return False
    return True


def _entries(raw: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The entries, if every one is a tactic name with finite, non-negative times."""
    for entry in raw.values():
        if not isinstance(entry, dict) or not isinstance(entry.get("tactic"), str):
            return None
        times = entry.get("times_us", {})
        if not isinstance(times, dict) or not all(_is_time(t) for t in times.values()):
            return None
    return raw


def _is_time(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and value >= 0


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
