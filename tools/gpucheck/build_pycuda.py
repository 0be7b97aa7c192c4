"""Build a pycuda wheel from its source distribution, offline, with every core.

pycuda's setup.py compiles ~40 C++ files (its Boost.Python subset and the driver wrapper)
into one extension, and setuptools compiles an extension's files one after another: minutes
on one core, most of the GPU check's budget. Here the same setup.py runs with the compiler's
per-file step spread over a thread pool (each file is its own g++ process, so threads
suffice). Configuration goes into pycuda's ``siteconf.py`` (what its configure.py writes):
this toolkit's headers, the driver library to link against, CURAND off (edge_infer does not
use it, and a toolkit may lack it).

    python tools/gpucheck/build_pycuda.py --sdist vendor/pycuda/pycuda-V.tar.gz \
        --cuda-root /usr/local/cuda --work /tmp/w --wheelhouse /tmp/w/wheels

Standard library + setuptools/wheel/numpy only: it runs before edge_infer's deps are checked.
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import runpy
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def driver_lib_dirs(cuda_root: Path, work: Path) -> list[str]:
    """Folders holding a linkable ``libcuda.so``: the toolkit's stubs, else a folder here with a
    ``libcuda.so`` link to the driver's ``libcuda.so.1`` (drivers ship only the .so.1, and
    pip-installed toolkits carry no stubs)."""
    arch = platform.machine()
    stubs = [
        cuda_root / "lib64" / "stubs",
        cuda_root / "lib" / "stubs",
        *map(Path, glob.glob(str(cuda_root / "targets" / "*" / "lib" / "stubs"))),
    ]
    found = [str(d) for d in stubs if (d / "libcuda.so").exists()]
    if found:
        return found
    driver_dirs = [
        f"/usr/lib/{arch}-linux-gnu",
        f"/usr/lib/{arch}-linux-gnu/tegra",
        "/usr/local/nvidia/lib64",
        "/usr/lib64",
        "/usr/lib",
    ]
    for d in driver_dirs:
        if (Path(d) / "libcuda.so").exists():
            return [d]
    for d in driver_dirs:
        lib = Path(d) / "libcuda.so.1"
        if lib.exists():
            link_dir = work / "libcuda"
            link_dir.mkdir(parents=True, exist_ok=True)
            link = link_dir / "libcuda.so"
            if not link.exists():
                link.symlink_to(lib)
            return [str(link_dir)]
    raise SystemExit(
        "build_pycuda: no libcuda.so (toolkit stubs) or libcuda.so.1 (driver) "
        f"found under {cuda_root} or {', '.join(driver_dirs)}"
    )


def write_siteconf(src: Path, cuda_root: Path, lib_dirs: list[str]) -> None:
    conf = {
        "BOOST_INC_DIR": [],
        "BOOST_LIB_DIR": [],
        "BOOST_COMPILER": "gcc43",
        "USE_SHIPPED_BOOST": True,
        "BOOST_PYTHON_LIBNAME": [],
        "BOOST_THREAD_LIBNAME": [],
        "CUDA_TRACE": False,
        "CUDA_ROOT": str(cuda_root),
        "CUDA_INC_DIR": [str(cuda_root / "include")],
        "CUDA_ENABLE_GL": False,
        "CUDA_ENABLE_CURAND": False,
        "CUDADRV_LIB_DIR": lib_dirs,
        "CUDADRV_LIBNAME": ["cuda"],
        "CUDART_LIB_DIR": lib_dirs,
        "CUDART_LIBNAME": ["cudart"],
        "CURAND_LIB_DIR": [],
        "CURAND_LIBNAME": [],
        "CXXFLAGS": [],
        "LDFLAGS": [],
    }
    text = "".join(f"{k} = {v!r}\n" for k, v in conf.items())
    (src / "siteconf.py").write_text(text)


def parallel_compile(jobs: int) -> None:
    """Spread each extension's source files over ``jobs`` threads (the distutils recipe)."""
    try:
        from setuptools._distutils import ccompiler
    except ImportError:  # an old setuptools: keep its serial compile
        return
    base = ccompiler.CCompiler
    if not hasattr(base, "_setup_compile") or not hasattr(base, "_get_cc_args"):
        return

    def compile_(
        self,
        sources,
        output_dir=None,
        macros=None,
        include_dirs=None,
        debug=0,
        extra_preargs=None,
        extra_postargs=None,
        depends=None,
    ):
        macros, objects, extra_postargs, pp_opts, build = self._setup_compile(
            output_dir, macros, include_dirs, sources, depends, extra_postargs
        )
        cc_args = self._get_cc_args(pp_opts, debug, extra_preargs)

        def one(obj: str) -> None:
            if obj in build:
                src, ext = build[obj]
                self._compile(obj, src, ext, cc_args, extra_postargs, pp_opts)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, objects))  # list(): re-raises the first CompileError
        return objects

    base.compile = compile_


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sdist", required=True, type=Path)
    p.add_argument("--cuda-root", required=True, type=Path)
    p.add_argument("--work", required=True, type=Path)
    p.add_argument("--wheelhouse", required=True, type=Path)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    with tarfile.open(args.sdist) as tar:
        try:
            tar.extractall(args.work, filter="data")
        except TypeError:  # a Python before the extraction filters (3.10.11 and older)
            tar.extractall(args.work)  # our own vendored file, hash-checked before
    src = args.work / args.sdist.name.removesuffix(".tar.gz")
    write_siteconf(src, args.cuda_root, driver_lib_dirs(args.cuda_root, args.work))
    parallel_compile(max(1, args.jobs))
    args.wheelhouse.mkdir(parents=True, exist_ok=True)
    os.chdir(src)
    sys.path.insert(0, str(src))  # setup.py imports aksetup_helper from its own folder
    sys.argv = ["setup.py", "--quiet", "bdist_wheel", "--dist-dir", str(args.wheelhouse)]
    runpy.run_path("setup.py", run_name="__main__")
    wheels = sorted(args.wheelhouse.glob("pycuda-*.whl"))
    if not wheels:
        raise SystemExit("build_pycuda: setup.py finished but wrote no wheel")
    print(f"built {wheels[-1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
