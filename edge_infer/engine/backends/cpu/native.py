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

import contextlib
import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from edge_infer.atomic import atomic_path
from edge_infer.engine.backends.cpu.native_args import ARGS, Activation

log = logging.getLogger(__name__)

KERNELS = Path(__file__).with_name("kernels")

_L = ctypes.c_long
_P = ctypes.c_void_p


def cache_dir() -> Path:
    root = (
        os.environ.get("EDGE_INFER_CACHE")
        or os.environ.get("CACHE_DIRECTORY", "").split(":")[0]
        or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edge_infer"
        )
    )
    return Path(root) / "kernels"


def _flags() -> list[str]:
    arch = platform.machine().lower()
    cpu = ["-mcpu=native"] if arch in ("aarch64", "arm64") else ["-march=native"]
    return [
        "-O3",
        *cpu,
        "-ffp-contract=fast",
        "-fno-math-errno",
        "-fPIC",
        "-shared",
        "-std=c11",
        "-pthread",
    ]


def _cpu_id() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    keep = [
        line
        for line in text.splitlines()
        if line.split(":")[0].strip() in ("model name", "flags", "Features", "CPU part")
    ]
    return "\n".join(sorted(set(keep)))


def _compiler() -> str | None:
    cc = os.environ.get("EDGE_INFER_CC", "cc")
    return shutil.which(cc)


@functools.cache
def _sources(folder: Path) -> tuple[tuple[str, bytes], ...]:
    """``folder``'s kernel sources then headers, (name, bytes), read once: the library's
    key hashes these bytes and the library is compiled from copies of them, so a file edited
    in between (a tree someone is working in) cannot give a library the key of sources it
    was not built from."""
    files = sorted(folder.glob("*.c")) + sorted(folder.glob("*.h"))
    return tuple((f.name, f.read_bytes()) for f in files)


@functools.cache
def _library_key(cc: str) -> str:
    """The kernel library's build key: its sources and headers, flags, compiler and CPU."""
    try:
        version = subprocess.run(
            [cc, "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    key = hashlib.sha256()
    for part in [
        *(data for _, data in _sources(KERNELS)),
        " ".join(_flags()).encode(),
        version.encode(),
        _cpu_id().encode(),
    ]:
        key.update(part)
        key.update(b"\0")
    return key.hexdigest()[:20]


def library_id() -> str:
    """The loaded kernel library's build key (``kernels-<key>.so``), "" without one: what
    tactic timings were measured with (the timing cache keeps them for the same key)."""
    cc = _compiler()
    return _library_key(cc) if cc is not None and library() is not None else ""


@functools.cache
def library() -> Any | None:
    """The compiled kernel library (ctypes), or None when native kernels are unavailable."""
    if os.environ.get("EDGE_INFER_NATIVE", "1") == "0":
        return None
    cc = _compiler()
    if cc is None:
        log.warning("no C compiler found (set EDGE_INFER_CC): native CPU kernels disabled")
        return None
    target = cache_dir() / f"kernels-{_library_key(cc)}.so"
    if not target.is_file():
        try:
            _compile(cc, _sources(KERNELS), target)
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
            log.warning("native CPU kernels not compiled (%s): using numpy/BLAS tactics", exc)
            return None
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:
        log.warning("native CPU kernels not loaded (%s)", exc)
        return None
    try:
        declare(lib)
    except AttributeError as exc:  # a kernel missing from the sources
        log.warning("native CPU kernels not loaded (%s)", exc)
        return None
    problems = layout_mismatches(lib)
    if problems:
        # a mismatch would make kernels read the wrong fields: refuse them (the numpy/BLAS
        # tactics still build a correct engine) and say where
        log.warning(
            "native CPU kernels disabled: kernels/args.h and native.py disagree (%s); "
            "make the struct and its ctypes mirror the same",
            "; ".join(problems),
        )
        return None
    return lib


@contextlib.contextmanager
def kernels_from(folder: Path) -> Iterator[Any]:
    """Within the block, :func:`library` is the one compiled from the kernel sources in
    ``folder`` (e.g. ``backends/cpu/kernels`` of an older commit): benches bind one side of
    a before/after with it, in the same process as the other. Its build key is that of
    ``folder``'s sources, so both caches (key and library) are cleared on the way in and out."""
    global KERNELS
    saved = KERNELS
    KERNELS = Path(folder)
    _sources.cache_clear()
    _library_key.cache_clear()
    library.cache_clear()
    try:
        yield library()
    finally:
        KERNELS = saved
        _sources.cache_clear()
        _library_key.cache_clear()
        library.cache_clear()


class _FieldLayout(ctypes.Structure):
    _fields_ = [
        ("kernel", ctypes.c_char_p),
        ("field", ctypes.c_char_p),
        ("offset", _L),
        ("size", _L),
    ]


class _ActivationCode(ctypes.Structure):
    _fields_ = [("attr", ctypes.c_char_p), ("code", _L)]


def declare(lib: Any) -> None:
    """Set the argument and result types of a kernel library's exported functions."""
    for name, args in ARGS.items():
        fn = getattr(lib, name)
        fn.restype = None
        fn.argtypes = [ctypes.POINTER(args)]
    lib.winograd_work_f32.restype = _L
    lib.winograd_work_f32.argtypes = [_L, _L]
    lib.winograd_v_f32.restype = _L
    lib.winograd_v_f32.argtypes = [_L, _L]
    lib.qconv_int8_path.restype = _L
    lib.qconv_int8_path.argtypes = []
    lib.conv_int8_dw_group.restype = _L
    lib.conv_int8_dw_group.argtypes = []
    lib.qpw_int8_path.restype = _L
    lib.qpw_int8_path.argtypes = []
    lib.pool_create.restype = _P
    lib.pool_create.argtypes = [_L, _L]
    lib.pool_run.restype = None
    lib.pool_run.argtypes = [_P, _P, _L]
    for name in ("pool_wake", "pool_rest"):  # kernels before them still load in benches' A/Bs
        if hasattr(lib, name):
            getattr(lib, name).restype = None
            getattr(lib, name).argtypes = [_P]
    if hasattr(lib, "pool_program"):
        lib.pool_program.restype = None
        lib.pool_program.argtypes = [_P, _P, _L]
    lib.pool_destroy.restype = None
    lib.pool_destroy.argtypes = [_P]
    lib.pool_set_shared_only.restype = None
    lib.pool_set_shared_only.argtypes = [_P, _L]
    lib.ei_arg_layouts.restype = ctypes.POINTER(_FieldLayout)
    lib.ei_arg_layouts.argtypes = []
    lib.ei_activation_codes.restype = ctypes.POINTER(_ActivationCode)
    lib.ei_activation_codes.argtypes = []


def python_layouts() -> dict[str, dict[str, tuple[int, int]]]:
    """kernel → field → (offset, size) of the ctypes mirrors; field "" is the struct's size."""
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for name, struct in ARGS.items():
        fields = {"": (0, ctypes.sizeof(struct))}
        for field, _ in struct._fields_:
            d = getattr(struct, field)
            fields[field] = (d.offset, d.size)
        out[name] = fields
    return out


def library_layouts(lib: Any) -> dict[str, dict[str, tuple[int, int]]]:
    """The same as :func:`python_layouts`, as the compiled library lays its structs out."""
    out: dict[str, dict[str, tuple[int, int]]] = {}
    rows = lib.ei_arg_layouts()
    i = 0
    while rows[i].kernel is not None:
        row = rows[i]
        out.setdefault(row.kernel.decode() + "_f32", {})[row.field.decode()] = (
            row.offset,
            row.size,
        )
        i += 1
    return out


def layout_mismatches(lib: Any) -> list[str]:
    """Where the library's argument structs or activation codes differ from this module's
    mirrors, one line each (empty when they agree)."""
    ours, theirs = python_layouts(), library_layouts(lib)
    problems = []
    for name in sorted(set(ours) | set(theirs)):
        a, b = ours.get(name), theirs.get(name)
        if a is None or b is None:
            problems.append(f"{name}: only in {'the library' if a is None else 'native.py'}")
            continue
        for field in sorted(set(a) | set(b), key=lambda f: (a.get(f) or b.get(f) or (0,))[0]):
            if a.get(field) != b.get(field):
                problems.append(
                    f"{name}.{field or 'sizeof'}: native.py (offset, size) "
                    f"{a.get(field)}, library {b.get(field)}"
                )
    rows = lib.ei_activation_codes()
    codes, i = {}, 0
    while rows[i].attr is not None:
        codes[rows[i].attr.decode()] = rows[i].code
        i += 1
    if codes != {a.attr: int(a) for a in Activation}:
        problems.append(
            f"activation codes: library {codes}, native.Activation "
            f"{ {a.attr: int(a) for a in Activation} }"
        )
    return problems


def task_address(kernel: str, lib: Any = None) -> int:
    """Address of kernel ``<name>_f32``'s ``<name>_task`` wrapper (its argument is the
    struct's address), for the pool: in ``lib``, by default the library loaded now."""
    lib = lib if lib is not None else library()
    assert lib is not None
    wrapper = kernel.removesuffix("_f32") + "_task"
    return ctypes.cast(getattr(lib, wrapper), ctypes.c_void_p).value or 0


class NativeCall:
    """A bound call of a native kernel: its argument struct filled by field name (``fields``:
    every field of ``ARGS[name]``; pointers as addresses or None). Run it here
    (``__call__``) or hand ``task`` (wrapper address, struct address) to the native pool.
    Keeps what the pointers point into alive (``keep``)."""

    def __init__(self, name: str, fields: Mapping[str, Any], keep: tuple[Any, ...]) -> None:
        lib = library()
        assert lib is not None
        self.name = name
        self._lib = lib
        self._fn = getattr(lib, name)
        self.args = ARGS[name](**fields)
        self._ref = ctypes.byref(self.args)
        self.keep = keep

    @functools.cached_property
    def task(self) -> tuple[int, int]:
        """The pool's (wrapper address, struct address), from the library the call was bound
        with: a program fuses its calls at its first run, maybe after ``kernels_from`` has
        switched back to another library (a bench's old side then ran the new kernels)."""
        return task_address(self.name, self._lib), ctypes.addressof(self.args)

    def __call__(self) -> None:
        self._fn(self._ref)


#: seconds one source may take to compile (a busy 2-core machine took 4 minutes for the
#: slowest at -O3; past this the build runs without native kernels, with a warning)
COMPILE_TIMEOUT_S = 1200


def _compile(cc: str, files: tuple[tuple[str, bytes], ...], target: Path) -> None:
    """The sources of ``files`` (:func:`_sources`: written to a temporary folder with the
    headers) compiled one object each, as many at once as this process may use cores (the
    slowest file, not their sum, is the wait), then linked into ``target`` atomically."""
    flags = _flags()
    objects_flags = [f for f in flags if f != "-shared"]
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1

    def run(args: list[str]) -> None:
        # its own process group: a timeout kills the driver's cc1/as/ld too, not only cc
        with subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        ) as proc:
            try:
                _, err = proc.communicate(timeout=COMPILE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                raise
        if proc.returncode != 0:
            raise RuntimeError(f"{cc} failed: {err.strip()[:500]}")

    with tempfile.TemporaryDirectory(prefix="ei-kernels-") as tmpdir:
        for name, data in files:
            (Path(tmpdir) / name).write_bytes(data)
        sources = [Path(tmpdir) / name for name, _ in files if name.endswith(".c")]
        objs = [Path(tmpdir) / f"{src.stem}.o" for src in sources]
        with ThreadPoolExecutor(max(1, min(cores, len(sources)))) as ex:
            jobs = [
                ex.submit(run, [cc, *objects_flags, "-c", "-o", str(obj), str(src)])
                for src, obj in zip(sources, objs, strict=True)
            ]
            try:
                for job in jobs:
                    job.result()
            except BaseException:
                for job in jobs:  # the rest would fail the same way: not started
                    job.cancel()
                raise
        with atomic_path(target) as tmp:
            run([cc, *flags, "-o", str(tmp), *map(str, objs)])


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
