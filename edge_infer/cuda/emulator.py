"""The CUDA emulator: the kernel sources built with the host C++ compiler and run on the CPU.

Every ``.cu`` file is compiled with ``-DEI_EMULATE`` against ``kernels/emu/ei_emu.h`` (the
CUDA subset on the host: every CUDA thread a fiber or an OS thread, real barriers, see
``docs/cuda-kernels.md``) and linked with the emulator runtime into one shared library, loaded
with ctypes. Three variants: ``plain`` (-O2), ``asan`` (AddressSanitizer) and ``tsan``
(ThreadSanitizer). A sanitized library only loads into a process started with its runtime
preloaded (:func:`sanitizer_env` gives the environment for such a subprocess).

Objects and libraries are cached on disk, keyed by the source, every header, the flags and
the compiler's version, and written atomically (a temporary file renamed into place), so
concurrent test processes share one cache safely and an edited kernel rebuilds only its file.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from edge_infer.cuda import library
from edge_infer.cuda.library import KERNELS_DIR, Dim3, KernelCall, KernelSpec
from edge_infer.errors import BackendError, KernelCompileError, KernelLaunchError

VARIANTS = ("plain", "asan", "tsan")

_COMMON = (
    "-std=c++17",
    "-pthread",
    "-fPIC",
    "-DEI_EMULATE",
    "-Wall",
    "-Wno-unused-function",
    "-Wno-unknown-pragmas",
)
#: compile flags per variant; the sanitized builds keep frames for readable reports
FLAGS: dict[str, tuple[str, ...]] = {
    "plain": ("-O2",),
    "asan": ("-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer"),
    "tsan": ("-O1", "-g", "-fsanitize=thread"),
}
_RUNTIME = {"asan": "libasan.so", "tsan": "libtsan.so"}
#: the emulator runtime, linked into every library
RUNTIME_SOURCE = KERNELS_DIR / "emu" / "ei_emu.cpp"


def default_cache_dir() -> Path:
    """Where built objects and libraries are kept between runs."""
    return Path.home() / ".cache" / "edge_infer" / "cuda-emu"


@functools.cache
def compiler_version(compiler: str = "g++") -> str:
    """The first line of ``compiler --version`` (part of every cache key)."""
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise KernelCompileError(
            f"the host C++ compiler {compiler!r} does not run ({exc}); "
            f"install g++ (tools/install_system_deps.sh)"
        ) from None
    return out.stdout.splitlines()[0].strip()


def sanitizer_runtime(variant: str, compiler: str = "g++") -> Path:
    """The sanitizer runtime library that a process must preload to load ``variant``."""
    if variant not in _RUNTIME:
        raise BackendError(
            f"variant {variant!r} has no sanitizer runtime; one of {sorted(_RUNTIME)}"
        )
    out = subprocess.run(
        [compiler, f"-print-file-name={_RUNTIME[variant]}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    path = Path(out)
    if not path.is_absolute() or not path.exists():
        raise BackendError(
            f"{compiler} has no {_RUNTIME[variant]}; install the compiler's "
            f"sanitizer runtimes (libasan, libtsan)"
        )
    return path.resolve()


def sanitizer_env(variant: str, compiler: str = "g++") -> dict[str, str]:
    """Environment entries for a subprocess that loads the ``variant`` library.

    Leak checking is off (the Python interpreter is not built for it); any report makes the
    process exit with status 66 so a test sees it.
    """
    # libstdc++ loaded at start too: the runtime binds its __cxa_throw interceptor then, and a
    # trapping kernel (ei_emu::trap) throws
    stdcxx = subprocess.run(
        [compiler, "-print-file-name=libstdc++.so.6"], capture_output=True, text=True, check=False
    ).stdout.strip()
    preload = [str(sanitizer_runtime(variant, compiler))]
    if Path(stdcxx).is_absolute() and Path(stdcxx).exists():
        preload.append(str(Path(stdcxx).resolve()))
    env = {"LD_PRELOAD": " ".join(preload)}
    if variant == "asan":
        env["ASAN_OPTIONS"] = "detect_leaks=0:halt_on_error=1:exitcode=66"
    else:
        env["TSAN_OPTIONS"] = "halt_on_error=1:exitcode=66:report_signal_unsafe=0"
    return env


def _runtime_loaded(variant: str) -> bool:
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return False
    return _RUNTIME[variant].removesuffix(".so") in maps


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:24]


def _headers_digest(include_dirs: Sequence[Path]) -> str:
    """One digest over every header a source may include (conservative: all of them)."""
    files = sorted(
        {f for d in include_dirs for pattern in ("*.cuh", "*.h") for f in d.rglob(pattern)}
    )
    return _digest(*(f"{f.name}:{hashlib.sha256(f.read_bytes()).hexdigest()}" for f in files))


def _atomic_run(cmd: list[str], target: Path, what: str) -> None:
    """Run ``cmd`` with ``{out}`` set to a temporary file, then rename it to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        proc = subprocess.run(
            [tmp if c == "{out}" else c for c in cmd], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            first = next((ln for ln in lines if "error" in ln), lines[0] if lines else "")
            raise KernelCompileError(
                f"{what} failed for the emulator: {first.strip()} ({len(lines)} lines of "
                f"diagnostics; rerun: {' '.join(cmd)})"
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build(
    sources: Iterable[Path],
    variant: str = "plain",
    *,
    include_dirs: Sequence[Path] = (),
    cache_dir: Path | None = None,
    compiler: str = "g++",
) -> Path:
    """Compile ``sources`` and the emulator runtime into one shared library; its path.

    Each object is cached under a key of its source, all headers, the flags and the compiler
    version; the library under the keys of its objects. Nothing is rebuilt that is cached.
    """
    if variant not in VARIANTS:
        raise BackendError(f"unknown emulator variant {variant!r}; one of {VARIANTS}")
    cache = (cache_dir or default_cache_dir()) / variant
    includes = [KERNELS_DIR, *include_dirs]
    flags = [*_COMMON, *FLAGS[variant], *(f"-I{d}" for d in includes)]
    version = compiler_version(compiler)
    headers = _headers_digest(includes)
    objects = []
    for source in [*sorted(set(sources)), RUNTIME_SOURCE]:
        key = _digest(version, " ".join(flags), headers, source.read_bytes())
        obj = cache / "obj" / f"{source.stem}-{key}.o"
        if not obj.exists():
            lang = ["-x", "c++"] if source.suffix == ".cu" else []
            _atomic_run(
                [compiler, *flags, *lang, "-c", str(source), "-o", "{out}"],
                obj,
                f"compiling {source.name}",
            )
        objects.append(obj)
    lib = cache / f"libei_emu-{_digest(version, *(o.name for o in objects))}.so"
    if not lib.exists():
        _atomic_run(
            [compiler, *FLAGS[variant], "-pthread", "-shared", *map(str, objects), "-o", "{out}"],
            lib,
            "linking the emulator library",
        )
    return lib


@dataclass
class LaunchStats:
    """What one entry point's emulated launches took."""

    launches: int = 0
    seconds: float = 0.0
    block_threads: set[int] = field(default_factory=set)
    max_dynamic_shared: int = 0

    def add(self, seconds: float, threads: int, shared_bytes: int) -> None:
        self.launches += 1
        self.seconds += seconds
        self.block_threads.add(threads)
        self.max_dynamic_shared = max(self.max_dynamic_shared, shared_bytes)


class EmuLibrary:
    """A built emulator library: launch kernels by entry point name with their params struct.

    ``launch`` runs the kernel to completion on the calling thread's behalf (launches are
    serialized inside the library) and raises :class:`KernelLaunchError` if the launch is
    refused or the kernel traps.
    """

    _loaded: ClassVar[dict[tuple[str, Path], EmuLibrary]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: Path, variant: str, kernels: Mapping[str, KernelSpec]):
        if variant != "plain" and not _runtime_loaded(variant):
            raise BackendError(
                f"the {variant} emulator library loads only in a process started with its "
                f"runtime preloaded: run it in a subprocess with "
                f"edge_infer.cuda.emulator.sanitizer_env({variant!r})"
            )
        self.path = path
        self.variant = variant
        self.kernels = dict(kernels)
        self._dll = ctypes.CDLL(str(path))
        self._dll.ei_emu_last_error.restype = ctypes.c_char_p
        self._dll.ei_emu_scheduler.restype = ctypes.c_char_p
        self._checked: set[str] = set()
        #: per entry point: launches, seconds spent in them, block sizes and largest dynamic
        #: shared memory seen (for bench/cuda_kernels.py's table)
        self.stats: dict[str, LaunchStats] = {}

    @classmethod
    def get(cls, variant: str = "plain", *, cache_dir: Path | None = None) -> EmuLibrary:
        """The library of every registered kernel (built once, cached on disk and in-process)."""
        return cls.load(library.sources(), library.specs(), variant, cache_dir=cache_dir)

    @classmethod
    def load(
        cls,
        sources: Iterable[Path],
        kernels: Mapping[str, KernelSpec],
        variant: str = "plain",
        *,
        include_dirs: Sequence[Path] = (),
        cache_dir: Path | None = None,
    ) -> EmuLibrary:
        """Build (or find cached) and load the library of ``sources`` exposing ``kernels``."""
        with cls._lock:
            path = build(sources, variant, include_dirs=include_dirs, cache_dir=cache_dir)
            lib = cls._loaded.get((variant, path))
            if lib is None:
                lib = cls._loaded[(variant, path)] = cls(path, variant, kernels)
            else:
                lib.kernels.update(kernels)
            return lib

    @property
    def scheduler(self) -> str:
        """How a block's CUDA threads run: ``"fibers"`` (the default: user-space switches at
        barriers, on the launching thread) or ``"threads"`` (one OS thread each, in a process
        started with ``EI_EMU_THREADS=1``). docs/cuda-kernels.md, "Two schedulers"."""
        return self._dll.ei_emu_scheduler().decode()

    def set_hang_timeout(self, seconds: int) -> None:
        """With OS threads: report a launch that makes no progress (no barrier opens, no block
        ends) for ``seconds`` as hung (default 120): :class:`KernelLaunchError` instead of a
        test run that never ends. The hung threads stay blocked, so the library refuses later
        launches. With fibers a deadlock is reported at once and the library stays usable."""
        self._dll.ei_emu_set_hang_seconds(int(seconds))

    def params_size(self, entry: str) -> int:
        """``sizeof`` the params struct of ``entry`` as the compiled source has it."""
        func = getattr(self._dll, f"{entry}__params_size")
        func.restype = ctypes.c_size_t
        return int(func())

    def launch(
        self,
        entry: str,
        grid: Sequence[int] | int,
        block: Sequence[int] | int,
        params: ctypes.Structure,
        shared_bytes: int = 0,
    ) -> None:
        """Run ``entry`` over ``grid`` blocks of ``block`` threads to completion."""
        spec = self.kernels.get(entry)
        if spec is None:
            raise KernelLaunchError(
                f"no kernel named {entry!r} in this library; registered: {sorted(self.kernels)}"
            )
        if not isinstance(params, spec.params):
            raise KernelLaunchError(
                f"{entry} takes {spec.params.__name__}, got {type(params).__name__}"
            )
        if entry not in self._checked:
            compiled = self.params_size(entry)
            if compiled != ctypes.sizeof(params):
                raise KernelLaunchError(
                    f"{entry}: the ctypes mirror {spec.params.__name__} is "
                    f"{ctypes.sizeof(params)} bytes but the struct in {spec.source} is "
                    f"{compiled}; make the mirror's fields match the .cu struct"
                )
            self._checked.add(entry)
        g, b = _dim3(grid, "grid"), _dim3(block, "block")
        func = getattr(self._dll, f"{entry}__launch")
        func.restype = ctypes.c_int
        func.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_uint * 3),
            ctypes.POINTER(ctypes.c_uint * 3),
            ctypes.c_size_t,
        ]
        start = time.perf_counter()
        rc = func(
            ctypes.addressof(params),
            ctypes.byref((ctypes.c_uint * 3)(*g)),
            ctypes.byref((ctypes.c_uint * 3)(*b)),
            int(shared_bytes),
        )
        stats = self.stats.setdefault(entry, LaunchStats())
        stats.add(time.perf_counter() - start, b[0] * b[1] * b[2], int(shared_bytes))
        if rc != 0:
            message = (self._dll.ei_emu_last_error() or b"").decode(errors="replace")
            raise KernelLaunchError(f"{entry} grid={g} block={b} shared={shared_bytes}: {message}")

    def run(self, call: KernelCall) -> None:
        """Launch a planned :class:`KernelCall`."""
        self.launch(call.entry, call.grid, call.block, call.params, call.shared_bytes)


def _dim3(value: Sequence[int] | int, what: str) -> Dim3:
    dims = [int(value)] if isinstance(value, int) else [int(v) for v in value]
    if not 1 <= len(dims) <= 3 or any(d < 1 or d >= 2**32 for d in dims):
        raise KernelLaunchError(f"{what} must be 1 to 3 positive sizes, got {value!r}")
    dims += [1] * (3 - len(dims))
    return dims[0], dims[1], dims[2]
