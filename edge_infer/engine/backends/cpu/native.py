"""Native CPU kernels, compiled on this device for this CPU (``-march=native``).

The builder runs on the target device, like TensorRT's; so do our C kernels' compiles. The
shared object is cached per (source, compiler, flags, CPU) under the user cache folder,
written atomically; concurrent first uses race harmlessly (the last rename wins, both files
are identical). Without a C compiler, or when compiling fails, :func:`library` returns None
and the tactics that need it are simply not candidates — the engine still builds.

``EDGE_INFER_CC`` picks the compiler (default ``cc``); ``EDGE_INFER_NATIVE=0`` disables
native kernels; ``EDGE_INFER_CACHE`` moves the cache folder (default: systemd's
``$CACHE_DIRECTORY`` when the unit has ``CacheDirectory=``, else ``~/.cache/edge_infer``).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from edge_infer.atomic import atomic_path

log = logging.getLogger(__name__)

KERNELS = Path(__file__).with_name("kernels")
_L = ctypes.c_long
_P = ctypes.c_void_p
_F = ctypes.c_float

#: exported symbol → argument types
_SIGNATURES: dict[str, list[Any]] = {
    "conv_direct_f32": [_P, _P, _L, _P, _P, _L, _L, _L, _L, _L, _L, _L, _L, _P, _L, _L, _F, _F,
                        _L, _P, _L, _P],
    "unary_f32": [_P, _P, _L, _L],
    "softmax_f32": [_P, _P, _L, _L, _L],
    "upsample_nearest_f32": [_P, _P, *[_L] * 10],
    "maxpool_f32": [_P, _P, *[_L] * 13],
    "pack_positions_f32": [_P, _P, _L, _P, _L, _L, _L, _P],
    "conv_ocvec_f32": [_P, _L, _L, _P, _P, _L, _L, _L, _L, _P, _L, _L, _F, _F, _L, _P, _L],
    "split_phases_f32": [_P, _L, _L, _L, _L, _L, _L, _L, _L, _L, _L, _L, _L, _L, _P],
    "conv_banded_f32": [_P, *[_L] * 14, _P, _L, _P, _P, _L, _L, _P, _L, _L, _F, _F, _L, _P, _L,
                        _P, _P],
    "conv_depthwise_f32": [_P, _L, _L, _L, _L, _L, _L, _L, _L, _L, _L, _P, _P, _L, _P, _P,
                           _L, _L, _L, _L, _P, _L, _L, _F, _F, _L, _P, _L],
    "conv_winograd_f32": [_P, *[_L] * 8, _P, _P, *[_L] * 5, _P, _L, _L, _L, _F, _F, _L, _P,
                          _L, _L, _P],
}


def cache_dir() -> Path:
    root = (os.environ.get("EDGE_INFER_CACHE")
            or os.environ.get("CACHE_DIRECTORY", "").split(":")[0]
            or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                            "edge_infer"))
    return Path(root) / "kernels"


def _flags() -> list[str]:
    arch = platform.machine().lower()
    cpu = ["-mcpu=native"] if arch in ("aarch64", "arm64") else ["-march=native"]
    return ["-O3", *cpu, "-ffp-contract=fast", "-fno-math-errno", "-fPIC", "-shared",
            "-std=c11", "-pthread"]


def _cpu_id() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    keep = [line for line in text.splitlines()
            if line.split(":")[0].strip() in ("model name", "flags", "Features", "CPU part")]
    return "\n".join(sorted(set(keep)))


def _compiler() -> str | None:
    cc = os.environ.get("EDGE_INFER_CC", "cc")
    return shutil.which(cc)


@functools.cache
def library() -> Any | None:
    """The compiled kernel library (ctypes), or None when native kernels are unavailable."""
    if os.environ.get("EDGE_INFER_NATIVE", "1") == "0":
        return None
    cc = _compiler()
    if cc is None:
        log.warning("no C compiler found (set EDGE_INFER_CC): native CPU kernels disabled")
        return None
    sources = sorted(KERNELS.glob("*.c"))
    headers = sorted(KERNELS.glob("*.h"))
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    key = hashlib.sha256()
    for part in [*(p.read_bytes() for p in sources + headers), " ".join(_flags()).encode(),
                 version.encode(), _cpu_id().encode()]:
        key.update(part)
        key.update(b"\0")
    target = cache_dir() / f"kernels-{key.hexdigest()[:20]}.so"
    if not target.is_file():
        try:
            _compile(cc, sources, target)
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
            log.warning("native CPU kernels not compiled (%s): using numpy/BLAS tactics", exc)
            return None
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:
        log.warning("native CPU kernels not loaded (%s)", exc)
        return None
    for name, argtypes in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype = None
        fn.argtypes = argtypes
    lib.winograd_work_f32.restype = _L
    lib.winograd_work_f32.argtypes = [_L, _L]
    lib.pool_create.restype = _P
    lib.pool_create.argtypes = [_L, _L]
    lib.pool_run.restype = None
    lib.pool_run.argtypes = [_P, _P, _L]
    lib.pool_destroy.restype = None
    lib.pool_destroy.argtypes = [_P]
    return lib


def task_address(kernel: str) -> int:
    """Address of kernel ``<name>_f32``'s ``<name>_task`` wrapper (arguments as 64-bit
    slots), for the pool."""
    lib = library()
    assert lib is not None
    wrapper = kernel.removesuffix("_f32") + "_task"
    return ctypes.cast(getattr(lib, wrapper), ctypes.c_void_p).value or 0


def slot(value: Any) -> int:
    """One argument as a 64-bit slot: pointers and ints as they are, floats as float32 bits,
    None as a null pointer."""
    if value is None:
        return 0
    if isinstance(value, float):
        return int(np.frombuffer(np.float32(value).tobytes(), np.int32)[0])
    return int(value)


class NativeCall:
    """A bound call of a native kernel: run it here (``__call__``) or hand ``task`` (function
    address, argument slots; for kernels with a ``_task`` wrapper) to the native pool. Keeps
    what the pointers point into alive."""

    def __init__(self, name: str, args: tuple[Any, ...], keep: tuple[Any, ...]) -> None:
        lib = library()
        assert lib is not None
        self.name = name
        self._fn = getattr(lib, name)
        self._args = tuple(ctypes.c_void_p(a) if a is None else a for a in args)
        self._raw = args
        self.keep = keep

    @functools.cached_property
    def task(self) -> tuple[int, int]:
        self.slots = np.array([slot(a) for a in self._raw], np.int64)
        return task_address(self.name), self.slots.ctypes.data

    def __call__(self) -> None:
        self._fn(*self._args)


def _compile(cc: str, sources: list[Path], target: Path) -> None:
    with atomic_path(target) as tmp:
        proc = subprocess.run([cc, *_flags(), "-o", str(tmp), *map(str, sources)],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"{cc} failed: {proc.stderr.strip()[:500]}")


def available() -> bool:
    return library() is not None


class NativeSequence:
    """Native calls run one after another as a single pool task (``seq_task`` in pool.c)."""

    def __init__(self, calls: list[NativeCall]) -> None:
        self.calls = calls
        lib = library()
        assert lib is not None
        seq = ctypes.cast(lib.seq_task, ctypes.c_void_p).value or 0
        self.slots = np.array([len(calls), *(v for c in calls for v in c.task)], np.int64)
        self.task = (seq, self.slots.ctypes.data)

    def __call__(self) -> None:
        for call in self.calls:
            call()
