"""pycuda installed with no network: from the source distribution and wheels kept in
``vendor/pycuda/`` (PyPI has no pycuda wheels for Linux, so it is always built here against
this machine's CUDA).

The plan, each piece checked before anything runs:

1. every vendored file is the one the manifest names (size and SHA-256);
2. a wheel is built from the sdist with every core (``build_pycuda.py``: pycuda's own
   setup.py, its C++ sources compiled in parallel) against the CUDA toolkit's headers;
3. ``pip install --no-index --find-links vendor/pycuda --find-links WHEELHOUSE pycuda==V``:
   offline by construction — pip sees only those two folders.

Refresh the vendored files (with network): ``python -m tools.gpucheck.pycuda_install
--download`` then ``--write-manifest``; the README there has the commands.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edge_infer.atomic import write_text_atomic

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "vendor" / "pycuda"
MANIFEST = "MANIFEST.json"
#: the pinned versions; the compiled dependencies as wheels for CPython 3.10-3.13 on x86-64
#: and aarch64 (Jetson), since building them needs build backends a device may not have
PINS = {
    "pycuda": "2026.1",
    "pytools": "2026.1.1",
    "platformdirs": "4.14.9",
    "mako": "1.4.3",
    "typing_extensions": "4.16.0",
    "siphash24": "1.9",
    "markupsafe": "3.0.4",
}
COMPILED = ("siphash24", "markupsafe")
PYTHONS = ("3.10", "3.11", "3.12", "3.13")
ARCHES = ("x86_64", "aarch64")
#: what building the sdist needs already installed (--no-build-isolation: nothing fetched);
#: bdist_wheel is setuptools' own from 70.1, the ``wheel`` package's before
BUILD_CHECK = (
    "import importlib.util as u\n"
    "miss = [m for m in ('setuptools', 'numpy') if u.find_spec(m) is None]\n"
    "if 'setuptools' not in miss and u.find_spec('wheel') is None:\n"
    "    import setuptools.command as c, pathlib\n"
    "    if not (pathlib.Path(c.__file__).parent / 'bdist_wheel.py').exists():\n"
    "        miss.append('wheel')\n"
    "print(' '.join(miss))\n"
)


class VendorError(Exception):
    """The vendored files are missing or differ from the manifest."""


@dataclass(frozen=True)
class Plan:
    """What installing pycuda here would run, or why it cannot."""

    sdist: Path | None
    build: list[str] | None
    install: list[str] | None
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(vendor: Path = VENDOR) -> dict[str, dict[str, object]]:
    files = {
        p.name: {"sha256": sha256(p), "bytes": p.stat().st_size}
        for p in sorted(vendor.iterdir())
        if p.suffix in (".whl", ".gz")
    }
    write_text_atomic(vendor / MANIFEST, json.dumps({"files": files}, indent=1) + "\n")
    return files


def verify(vendor: Path = VENDOR) -> list[str]:
    """Problems with the vendored files (empty when every file matches the manifest)."""
    manifest = vendor / MANIFEST
    if not manifest.is_file():
        return [f"{manifest} is missing (vendor/pycuda/README.md says how to make it)"]
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError) as exc:
        return [f"{manifest} is not a manifest: {exc}"]
    problems = []
    for name, want in files.items():
        path = vendor / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != want["bytes"] or sha256(path) != want["sha256"]:
            problems.append(f"{name} differs from the manifest (size or SHA-256)")
    extra = sorted(
        p.name for p in vendor.iterdir() if p.suffix in (".whl", ".gz") and p.name not in files
    )
    problems += [f"{name} is not in the manifest" for name in extra]
    return problems


def sdist(vendor: Path = VENDOR) -> Path | None:
    found = sorted(vendor.glob(f"pycuda-{PINS['pycuda']}.tar.gz"))
    return found[0] if found else None


def missing_build_modules(python: str) -> list[str]:
    out = subprocess.run([python, "-c", BUILD_CHECK], capture_output=True, text=True, timeout=60)
    return out.stdout.split()


def plan(
    python: str,
    wheelhouse: Path,
    work: Path,
    env: Mapping[str, str],
    cuda_root: Path | None,
    *,
    vendor: Path = VENDOR,
    jobs: int = 0,
) -> Plan:
    """The commands that build and install pycuda offline, or the problems that stop it."""
    problems = verify(vendor)
    source = sdist(vendor)
    if source is None and not problems:
        problems.append(f"pycuda-{PINS['pycuda']}.tar.gz is not in {vendor}")
    if cuda_root is None:
        problems.append(
            "no CUDA toolkit headers (include/cuda.h) under $CUDA_ROOT, $CUDA_HOME, "
            "nvcc's folder or /usr/local/cuda: install the CUDA toolkit (JetPack: "
            "cuda-toolkit) or set CUDA_ROOT"
        )
    cxx = env.get("CXX") or "g++"
    if shutil.which(cxx, path=env.get("PATH", "")) is None:
        problems.append(f"no C++ compiler ({cxx}) on PATH: apt-get install g++")
    missing = missing_build_modules(python)
    if missing:
        problems.append(f"building pycuda needs {', '.join(missing)} in {python}")
    if problems or source is None or cuda_root is None:
        return Plan(source, None, None, problems)
    build = [
        python,
        str(Path(__file__).with_name("build_pycuda.py")),
        "--sdist",
        str(source),
        "--cuda-root",
        str(cuda_root),
        "--work",
        str(work),
        "--wheelhouse",
        str(wheelhouse),
    ]
    if jobs:
        build += ["--jobs", str(jobs)]
    return Plan(source, build, install_command(python, wheelhouse, vendor), [])


def install_command(python: str, wheelhouse: Path, vendor: Path = VENDOR) -> list[str]:
    """pip, offline: the index switched off, only the vendored folder and the new wheel."""
    return [
        python,
        "-m",
        "pip",
        "--isolated",  # no pip.conf or PIP_* variables: nothing but the two folders below
        "install",
        "--no-index",
        "--find-links",
        str(vendor),
        "--find-links",
        str(wheelhouse),
        "--no-build-isolation",
        "--disable-pip-version-check",
        f"pycuda=={PINS['pycuda']}",
    ]


def requirements_of_sdist(source: Path) -> list[str]:
    """The distribution names pycuda's sdist requires (its PKG-INFO Requires-Dist lines)."""
    import tarfile

    with tarfile.open(source) as tar:
        member = next(
            m for m in tar.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")
        )
        info = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
    names = re.findall(r"^Requires-Dist:\s*([A-Za-z0-9_.-]+)", info, re.M)
    return [n.lower().replace("-", "_") for n in names]


def download(vendor: Path = VENDOR) -> None:
    """Fetch the pinned files from PyPI (a machine with network; the manifest comes after)."""
    vendor.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(vendor)]
    subprocess.run([*pip, "--no-binary", ":all:", f"pycuda=={PINS['pycuda']}"], check=True)
    pure = [f"{n}=={v}" for n, v in PINS.items() if n != "pycuda" and n not in COMPILED]
    subprocess.run([*pip, "--only-binary", ":all:", *pure], check=True)
    compiled = [f"{n}=={PINS[n]}" for n in COMPILED]
    for version in PYTHONS:
        for arch in ARCHES:
            platforms = [
                f"--platform={p}_{arch}"
                for p in ("manylinux_2_28", "manylinux_2_17", "manylinux2014")
            ]
            subprocess.run(
                [
                    *pip,
                    "--only-binary",
                    ":all:",
                    "--implementation",
                    "cp",
                    "--python-version",
                    version,
                    *platforms,
                    *compiled,
                ],
                check=True,
            )


def install(work: Path, env: Mapping[str, str], vendor: Path = VENDOR) -> int:
    """Build and install pycuda into this Python, offline (``deploy/jetson/install.sh``)."""
    from tools.gpucheck.environment import find_cuda_root

    the_plan = plan(
        sys.executable, work / "wheels", work / "build", env, find_cuda_root(env), vendor=vendor
    )
    if not the_plan.ok or the_plan.build is None or the_plan.install is None:
        for line in the_plan.problems:
            print(f"pycuda_install: {line}", file=sys.stderr)
        return 1
    for command in (the_plan.build, the_plan.install):
        if subprocess.run(command, env=dict(env), check=False).returncode != 0:
            print(f"pycuda_install: failed: {' '.join(command)}", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="vendor/pycuda: verify; download, manifest, install")
    p.add_argument("--download", action="store_true", help="fetch the pinned files (network)")
    p.add_argument("--write-manifest", action="store_true")
    p.add_argument(
        "--install",
        metavar="WORK",
        type=Path,
        help="build pycuda in WORK and install it into this Python, offline",
    )
    args = p.parse_args(argv)
    if args.download:
        download()
    if args.write_manifest:
        write_manifest()
    problems = verify()
    for line in problems:
        print(f"vendor/pycuda: {line}", file=sys.stderr)
    if problems:
        return 1
    if args.install is not None:
        return install(args.install, os.environ)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
