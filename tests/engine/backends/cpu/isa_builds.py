"""One kernel source built for the x86 vector paths other than this host's default, for the
tests that run the same bound calls through each (shared by the native kernel tests).

Builds are compiled per object file, each object once (see below): keyed by the
compiler, its flags, the source and every header it may include, so the tests that build the
same sources for the same path (args.c in nearly all of them, the half_io and FP32 tests of one
kernel, a module's parametrized cases) share the compile; the objects of one build compile in
parallel, one per core, together with those of the other builds of X86_BUILDS this host runs
(the parametrized test asks for them next; a build is often one large kernel beside args.c).
The objects are kept between test runs in the kernel cache's folder (``test-objects`` beside
native.py's ``kernels``), keyed also by the compiler's ``--version``: a run after one at the
same kernel sources links them instead of compiling every kernel for every build again (the
native library is kept there the same way); objects unused for ``KEEP_DAYS`` are removed.
``SHARED_ENV`` names another folder. An object one process compiles (a pytest-xdist worker,
another test run), the others find, or wait for while it compiles (a lock per object),
instead of compiling it again."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from edge_infer.engine.backends.cpu import native

#: the fallback builds' optimization (plain x86-64, plain armv8-a): they are here to run the
#: paths without vector extensions, which -O2 compiles as they are; -O3's vectorizing of
#: those scalar loops tripled their compile time (all kernels, one core: x86-64 92 -> 31 s,
#: armv8-a 93 -> 29 s) in a cold test run. The -O3 code is what the native library (every
#: engine test) and the AVX-512, AVX2 and cortex-a78ae builds run.
FALLBACK_OPT = "-O2"

#: build → (flags, the CPU features it needs on this host)
X86_BUILDS: dict[str, tuple[list[str], set[str]]] = {
    "avx512": (["-march=skylake-avx512"], {"avx512f", "avx512vl"}),
    "avx2": (["-march=haswell"], {"avx2", "fma"}),
    "x86-64": (["-march=x86-64", "-Wno-psabi", FALLBACK_OPT], set()),
}

#: names the folder of objects instead of the kernel cache's (kept as it is)
SHARED_ENV = "EI_TEST_OBJECTS"

#: objects and links unused (not compiled, found or linked) for this long are removed
KEEP_DAYS = 3

_cache: Path | None = None
_cache_lock = threading.Lock()


@functools.cache
def host_flags() -> frozenset[str]:
    """The CPU feature flags of this host (empty where /proc/cpuinfo is not)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    return frozenset(
        f for line in text.splitlines() if line.startswith("flags") for f in line.split()
    )


def need_features(needs: set[str]) -> None:
    """Skip when this host cannot run a build that needs ``needs``."""
    missing = needs - host_flags()
    if missing:
        pytest.skip(f"this CPU lacks {sorted(missing)}")


def cache_dir() -> Path:
    """The folder of compiled objects and libraries: ``SHARED_ENV``'s, else ``test-objects``
    in the kernel cache's folder (pruned of the files unused for KEEP_DAYS), else, where that
    cannot be made, this process's own (removed at exit)."""
    global _cache
    with _cache_lock:
        if _cache is None:
            shared = os.environ.get(SHARED_ENV)
            if shared:
                _cache = Path(shared)
                _cache.mkdir(parents=True, exist_ok=True)
            else:
                try:
                    _cache = native.cache_dir().parent / "test-objects"
                    _cache.mkdir(parents=True, exist_ok=True)
                    _prune(_cache)
                except OSError:  # no writable cache folder: this process's own
                    _cache = Path(tempfile.mkdtemp(prefix="ei-test-objects-"))
                    atexit.register(shutil.rmtree, _cache, True)
        return _cache


def _prune(folder: Path) -> None:
    """Remove the files of ``folder`` unused for KEEP_DAYS (kernel sources that changed)."""
    old = time.time() - KEEP_DAYS * 86400
    for p in folder.iterdir():
        with contextlib.suppress(OSError):
            if p.stat().st_mtime < old:
                p.unlink()


def _used(path: Path) -> None:
    """Mark ``path`` used now (kept by _prune)."""
    with contextlib.suppress(OSError):
        os.utime(path)


@functools.cache
def _compiler_id(cc: str) -> bytes:
    """``cc --version``: part of every key (a kept object is this compiler's)."""
    proc = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False)
    return f"{shutil.which(cc)}\n{proc.stdout}".encode()


def _tmp_name(target: Path) -> Path:
    """A temporary name beside ``target``, this thread's of this process."""
    return target.with_name(f"{target.name}.{os.getpid()}-{threading.get_ident()}.tmp")


def _key(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
        h.update(b"\0")
    return h.hexdigest()[:24]


def _headers(include: Sequence[Path]) -> list[bytes]:
    return [
        p.name.encode() + b"\0" + p.read_bytes()
        for d in include
        for p in sorted(Path(d).glob("*.h"))
    ]


def objects(
    cc: str,
    flags: Sequence[str],
    sources: Sequence[Path],
    include: Sequence[Path] = (),
    also: Sequence[Sequence[str]] = (),
) -> list[Path]:
    """``sources`` compiled (``cc -c flags``) to object files, each compiled once per
    process for the same compiler, flags, source text and headers (those beside it and in
    ``include``); the missing ones in parallel. Raises CalledProcessError (with the
    compiler's output) when one does not compile.

    ``also``: other flag sets the same sources will be built with later in this process (the
    other builds of a parametrized test), compiled in the same pool after these: one build's
    objects are often one large kernel and the small args.c, which would leave a core idle.
    Their failures are left to the call that asks for them (it compiles them again and
    raises)."""
    objs, todo = _plan(cc, flags, sources, include)
    extra = [job for other in also for job in _plan(cc, other, sources, include)[1]]
    jobs = todo + [job for job in extra if job not in todo]

    def compile_one(job: tuple[Path, Path, tuple[str, ...]]) -> BaseException | None:
        src, obj, args = job
        # another process of the session (an xdist worker) may be compiling it: wait for it
        with open(obj.with_name(obj.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if obj.is_file():
                return None
            tmp = _tmp_name(obj)
            proc = subprocess.run(
                [cc, *args, "-c", "-o", str(tmp), str(src)], capture_output=True, text=True
            )
            if proc.returncode:
                return subprocess.CalledProcessError(
                    proc.returncode, proc.args, proc.stdout, proc.stderr
                )
            tmp.replace(obj)
        return None

    if jobs:
        workers = min(len(jobs), len(os.sched_getaffinity(0)))
        with ThreadPoolExecutor(max(1, workers)) as pool:
            errors = list(pool.map(compile_one, jobs))
        for error in errors[: len(todo)]:
            if error is not None:
                raise error
    return objs


def _native_id(flags: Sequence[str]) -> bytes:
    """This CPU's feature flags where ``flags`` compile for it (-march=native / -mcpu=native):
    the kept objects outlive the machine they were built on (the same home folder on
    another CPU would otherwise link them)."""
    if not any(f.endswith("=native") for f in flags):
        return b""
    return " ".join(sorted(host_flags())).encode()


def _plan(
    cc: str, flags: Sequence[str], sources: Sequence[Path], include: Sequence[Path]
) -> tuple[list[Path], list[tuple[Path, Path, tuple[str, ...]]]]:
    """The objects of ``sources`` for ``flags`` and the (source, object, compiler arguments)
    of those not compiled yet in this process."""
    out = cache_dir()
    todo: list[tuple[Path, Path, tuple[str, ...]]] = []
    objs = []
    args = (*flags, *(f"-I{d}" for d in include))
    for src in sources:
        dirs = [Path(src).parent, *map(Path, include)]
        key = _key(
            _compiler_id(cc),
            " ".join(flags).encode(),
            _native_id(flags),
            Path(src).read_bytes(),
            *_headers(dirs),
        )
        obj = out / f"{Path(src).stem}-{key}.o"
        objs.append(obj)
        job = (Path(src), obj, args)
        if obj.is_file():
            _used(obj)
        elif job not in todo:
            todo.append(job)
    return objs, todo


def link(cc: str, objs: Sequence[Path], flags: Sequence[str], name: str) -> Path:
    """``objs`` linked (``cc flags``) once into ``name`` (cache_dir) with a key of the
    inputs added to its stem."""
    key = _key(_compiler_id(cc), " ".join(flags).encode(), *(o.name.encode() for o in objs))
    stem, dot, suffix = name.partition(".")
    target = cache_dir() / f"{stem}-{key}{dot}{suffix}"
    if target.is_file():
        _used(target)
    else:
        tmp = _tmp_name(target)
        proc = subprocess.run(
            [cc, *flags, "-o", str(tmp), *map(str, objs)], capture_output=True, text=True
        )
        if proc.returncode:
            raise subprocess.CalledProcessError(
                proc.returncode, proc.args, proc.stdout, proc.stderr
            )
        tmp.replace(target)
    return target


def object_flags(cpu: Sequence[str]) -> list[str]:
    """The flags build_kernels compiles its objects with for the CPU flags ``cpu``: the
    device compile's without its CPU option and -shared, -Wall -Werror (no warnings)."""
    keep = [f for f in native._flags() if not f.startswith(("-march", "-mcpu"))]
    return [f for f in keep if f != "-shared"] + ["-Wall", "-Werror", *cpu]


def build_kernels(
    out: Path,
    sources: Sequence[str],
    flags: Sequence[str],
    also: Sequence[Sequence[str]] = (),
) -> ctypes.CDLL:
    """``sources`` (names in kernels/) alone, with the device compile's flags but ``flags``
    for the CPU; -Werror: no warnings. Built once (cache_dir) for the same sources and flags
    (``out`` is unused, kept for the callers); each call returns its own CDLL object, so
    the restype/argtypes a test sets on its functions stay its own.

    ``also``: other CPU flag sets the caller builds the same sources with later (a test's
    own builds beyond X86_BUILDS, e.g. another tile size), compiled in the same pool."""
    del out
    keep = [f for f in native._flags() if not f.startswith(("-march", "-mcpu"))]
    # a build of X86_BUILDS asks for the others this host runs too: its parametrized test
    # asks for them next
    builds = [f for f, _ in X86_BUILDS.values()]
    others = [
        object_flags(f)
        for f, needs in X86_BUILDS.values()
        if list(flags) in builds and f != list(flags) and needs <= host_flags()
    ] + [object_flags(f) for f in also if list(f) != list(flags)]
    objs = objects("cc", object_flags(flags), [native.KERNELS / n for n in sources], also=others)
    lib = link("cc", objs, [*keep, *flags], f"{Path(sources[0]).stem}.so")
    return ctypes.CDLL(str(lib))
