"""Compilation of the kernel sources for a device SM with NVRTC, and the resource report.

Each ``.cu`` file becomes one cubin per SM (sm_72 Xavier, sm_87 Orin, sm_90), compiled by
NVRTC (the ``nvidia-cuda-nvrtc-cu12`` wheel on development machines and CI, JetPack's own
``libnvrtc`` on a Jetson) with ``-Xptxas -v``: ptxas's report of every entry point's
registers, static shared memory, stack frame and spill stores/loads is parsed into a manifest
(``manifest-sm_<N>.json``) written beside the cubins. Compiled cubins are cached on disk,
keyed by the source, every header, the options and the NVRTC version; writes are atomic.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.util
import json
import os
import re
import struct
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from edge_infer.cuda import library
from edge_infer.cuda.library import KERNELS_DIR, TARGET_SMS
from edge_infer.errors import BackendError, KernelCompileError

#: options of every compilation (the SM and include folders are added per call)
OPTIONS: tuple[str, ...] = ("--std=c++17", "-Xptxas", "-v", "--device-as-default-execution-space")


@dataclass(frozen=True)
class KernelResources:
    """ptxas's report for one entry point on one SM."""

    entry: str
    source: str
    registers: int
    shared_bytes: int  # static shared memory
    stack_bytes: int
    spill_stores: int
    spill_loads: int
    constant_bytes: int

    @property
    def spills(self) -> bool:
        return self.spill_stores > 0 or self.spill_loads > 0


def _wheel_dir(package: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def _nvrtc() -> ctypes.CDLL:
    """libnvrtc: the pip wheel's, else the system's (JetPack)."""
    candidates: list[str] = []
    wheel = _wheel_dir("nvidia.cuda_nvrtc")
    if wheel is not None:
        candidates += [str(p) for p in sorted((wheel / "lib").glob("libnvrtc.so*"))]
    candidates += ["libnvrtc.so", "libnvrtc.so.12"]
    errors = []
    for name in candidates:
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            errors.append(str(exc))
            continue
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        return lib
    raise BackendError(
        "NVRTC is not available: pip install nvidia-cuda-nvrtc-cu12 "
        f"(make setup does), or install JetPack's CUDA ({'; '.join(errors[-2:])})"
    )


@functools.cache
def nvrtc_version() -> str:
    """``"nvrtc <major>.<minor>"`` (part of every cache key and manifest)."""
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(_nvrtc().nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return f"nvrtc {major.value}.{minor.value}"


@functools.cache
def include_dirs() -> tuple[Path, ...]:
    """The kernels folder and the CUDA headers: cuda_fp16.h and mma.h from the runtime wheel,
    the crt/ headers mma.h includes from the nvcc wheel (or a CUDA toolkit's include/)."""
    wheels = [_wheel_dir("nvidia.cuda_runtime"), _wheel_dir("nvidia.cuda_nvcc")]
    found = [w / "include" for w in wheels if w is not None]
    if all((d / "mma.h").exists() or (d / "crt" / "mma.h").exists() for d in found) and (
        len(found) == 2
    ):
        return (KERNELS_DIR, *found)
    toolkit = Path("/usr/local/cuda/include")  # JetPack, or a CUDA toolkit install
    if (toolkit / "crt" / "mma.h").exists():
        return (KERNELS_DIR, toolkit)
    raise BackendError(
        "the CUDA headers (cuda_fp16.h, mma.h, crt/) are missing: pip install "
        "nvidia-cuda-runtime-cu12 nvidia-cuda-nvcc-cu12 (make setup does)"
    )


def _check(status: int, what: str, log: str = "") -> None:
    if status != 0:
        name = (_nvrtc().nvrtcGetErrorString(status) or b"?").decode()
        raise KernelCompileError(f"{what} failed: {name}{': ' + log if log else ''}")


def _log(prog: ctypes.c_void_p) -> str:
    size = ctypes.c_size_t()
    _nvrtc().nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    buf = ctypes.create_string_buffer(size.value)
    _nvrtc().nvrtcGetProgramLog(prog, buf)
    return buf.value.decode(errors="replace")


def nvrtc_compile(source: Path, sm: int, options: Sequence[str] = ()) -> tuple[bytes, str]:
    """Compile ``source`` to a cubin for ``sm``: ``(cubin, log)`` (the log has ptxas's report)."""
    lib = _nvrtc()
    prog = ctypes.c_void_p()
    text = source.read_bytes()
    _check(
        lib.nvrtcCreateProgram(ctypes.byref(prog), text, source.name.encode(), 0, None, None),
        "nvrtcCreateProgram",
    )
    try:
        opts = [
            f"--gpu-architecture=sm_{sm}",
            *OPTIONS,
            *options,
            *(f"-I{d}" for d in include_dirs()),
        ]
        arr = (ctypes.c_char_p * len(opts))(*(o.encode() for o in opts))
        status = lib.nvrtcCompileProgram(prog, len(opts), arr)
        log = _log(prog)
        if status != 0:
            errors = [ln for ln in log.splitlines() if "error" in ln] or log.splitlines()[:3]
            raise KernelCompileError(
                f"{source.name} for sm_{sm}: {'; '.join(errors[:3])} "
                f"({len(log.splitlines())} lines of log)"
            )
        size = ctypes.c_size_t()
        _check(lib.nvrtcGetCUBINSize(prog, ctypes.byref(size)), "nvrtcGetCUBINSize")
        cubin = ctypes.create_string_buffer(size.value)
        _check(lib.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
        return cubin.raw, log
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(sm_\d+)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")
_CMEM = re.compile(r"(\d+) bytes cmem\[0\]")


def parse_resources(log: str, source: str) -> dict[str, KernelResources]:
    """Every entry point's resources from a ptxas ``-v`` log."""
    found: dict[str, KernelResources] = {}
    blocks = re.split(r"(?=ptxas info\s*: Compiling entry function)", log)
    for block in blocks:
        entry = _ENTRY.search(block)
        used = _USED.search(block)
        if not entry or not used:
            continue
        frame = _FRAME.search(block)
        smem, cmem = _SMEM.search(block), _CMEM.search(block)
        stack, stores, loads = (int(g) for g in frame.groups()) if frame else (0, 0, 0)
        found[entry.group(1)] = KernelResources(
            entry=entry.group(1),
            source=source,
            registers=int(used.group(1)),
            shared_bytes=int(smem.group(1)) if smem else 0,
            stack_bytes=stack,
            spill_stores=stores,
            spill_loads=loads,
            constant_bytes=int(cmem.group(1)) if cmem else 0,
        )
    return found


@dataclass(frozen=True)
class CubinInfo:
    """What a cubin's ELF header and symbol table say."""

    sm: int
    functions: frozenset[str]  # global function symbols (the kernels' entry points)


def read_cubin(data: bytes) -> CubinInfo:
    """The target SM (ELF ``e_flags``) and global function symbols of a cubin.

    The SM is the low byte of ``e_flags`` up to ELF ABI version 7 (CUDA 12) and the second
    byte from version 8 (CUDA 13).
    """
    if data[:4] != b"\x7fELF" or data[4] != 2 or struct.unpack_from("<H", data, 18)[0] != 190:
        raise KernelCompileError("not a 64-bit CUDA ELF (EM_CUDA) cubin")
    flags = struct.unpack_from("<I", data, 48)[0]
    sm = (flags >> 8) & 0xFF if data[8] >= 8 else flags & 0xFF
    (shoff,) = struct.unpack_from("<Q", data, 40)
    shentsize, shnum = struct.unpack_from("<HH", data, 58)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)
    ]
    functions = set()
    for _name, kind, _f, _a, offset, size, link, _i, _al, entsize in sections:
        if kind != 2:  # SHT_SYMTAB
            continue
        str_off = sections[link][4]
        for at in range(offset, offset + size, entsize or 24):
            name, info = struct.unpack_from("<IB", data, at)
            if info >> 4 == 1 and info & 0xF == 2:  # STB_GLOBAL, STT_FUNC
                end = data.index(b"\0", str_off + name)
                functions.add(data[str_off + name : end].decode())
    return CubinInfo(sm, frozenset(functions))


def default_cache_dir() -> Path:
    """Where compiled cubins are kept between runs."""
    return Path.home() / ".cache" / "edge_infer" / "cuda-nvrtc"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _headers_digest() -> str:
    h = hashlib.sha256()
    for f in sorted(KERNELS_DIR.glob("*.cuh")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def compile_source(
    source: Path, sm: int, *, cache_dir: Path | None = None
) -> tuple[Path, dict[str, KernelResources]]:
    """The cached cubin of ``source`` for ``sm`` and its entry points' resources."""
    key = hashlib.sha256(
        "\0".join(
            [
                nvrtc_version(),
                str(sm),
                " ".join(OPTIONS),
                _headers_digest(),
                hashlib.sha256(source.read_bytes()).hexdigest(),
            ]
        ).encode()
    ).hexdigest()[:24]
    cache = (cache_dir or default_cache_dir()) / f"sm_{sm}"
    cubin_path = cache / f"{source.stem}-{key}.cubin"
    report_path = cache / f"{source.stem}-{key}.json"
    if not (cubin_path.exists() and report_path.exists()):
        cubin, log = nvrtc_compile(source, sm)
        report = {e: asdict(r) for e, r in parse_resources(log, source.name).items()}
        _write_atomic(cubin_path, cubin)
        _write_atomic(report_path, json.dumps({"log": log, "kernels": report}).encode())
    data = json.loads(report_path.read_text())
    return cubin_path, {e: KernelResources(**r) for e, r in data["kernels"].items()}


def compile_library(
    sm: int,
    *,
    out_dir: Path | None = None,
    cache_dir: Path | None = None,
    sources: Iterable[Path] | None = None,
    jobs: int = 1,
) -> dict[str, Path]:
    """Cubins of every kernel source for ``sm``, by source file name.

    ``jobs`` sources compile at once (NVRTC is thread-safe across programs and runs without
    the GIL). With ``out_dir`` the cubins are copied there with ``manifest-sm_<sm>.json``
    beside them: the compiler, and per entry point its source and ptxas resources.
    """
    if sm < min(TARGET_SMS):
        raise BackendError(f"sm_{sm} is older than the oldest target sm_{min(TARGET_SMS)}")
    todo = list(sources if sources is not None else library.sources())
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        done = list(pool.map(lambda s: compile_source(s, sm, cache_dir=cache_dir), todo))
    cubins: dict[str, Path] = {}
    kernels: dict[str, dict[str, object]] = {}
    for source, (path, resources) in zip(todo, done):
        cubins[source.name] = path
        kernels.update({e: asdict(r) for e, r in resources.items()})
    if out_dir is not None:
        placed = {}
        for name, path in cubins.items():
            target = out_dir / f"{Path(name).stem}.sm_{sm}.cubin"
            _write_atomic(target, path.read_bytes())
            placed[name] = target
        manifest = {
            "compiler": nvrtc_version(),
            "sm": sm,
            "options": list(OPTIONS),
            "cubins": {n: p.name for n, p in placed.items()},
            "kernels": kernels,
        }
        _write_atomic(
            out_dir / f"manifest-sm_{sm}.json",
            json.dumps(manifest, indent=1, sort_keys=True).encode(),
        )
        cubins = placed
    return cubins


def resources(sm: int, *, cache_dir: Path | None = None) -> dict[str, KernelResources]:
    """ptxas's report of every registered entry point for ``sm`` (compiling what is needed)."""
    out: dict[str, KernelResources] = {}
    for source in library.sources():
        out.update(compile_source(source, sm, cache_dir=cache_dir)[1])
    return out
