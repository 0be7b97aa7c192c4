"""The environment report: GPU, driver, SM, CUDA, Jetson/L4T, Python — and whether a GPU is
here at all, which every later step depends on."""

from __future__ import annotations

import os
import platform
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tools.gpucheck.steps import run_group

#: nvidia-smi's CSV query (compute_cap needs driver 510+; older drivers answer without it)
SMI_FIELDS = ("name", "driver_version", "memory.total", "compute_cap")


def find_cuda_root(env: Mapping[str, str], root: Path = Path("/")) -> Path | None:
    """The CUDA toolkit: $CUDA_ROOT / $CUDA_HOME / $CUDA_PATH, the folder above nvcc on PATH,
    else /usr/local/cuda (JetPack's place) — the first that has include/cuda.h."""
    candidates = [env[k] for k in ("CUDA_ROOT", "CUDA_HOME", "CUDA_PATH") if env.get(k)]
    nvcc = shutil.which("nvcc", path=env.get("PATH", ""))
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parent.parent))
    candidates.append(str(root / "usr/local/cuda"))
    for c in candidates:
        if (Path(c) / "include" / "cuda.h").is_file():
            return Path(c)
    return None


def find_nvrtc(cuda_root: Path | None, search: list[str]) -> Path | None:
    """A libnvrtc of this machine: the CUDA toolkit's, else a pip wheel's (``nvidia/*/lib``
    under ``search``, e.g. CUDA 13's ``nvidia/cu13/lib``)."""
    dirs: list[Path] = []
    if cuda_root is not None:
        dirs += [cuda_root / "lib64", cuda_root / "lib", *sorted(cuda_root.glob("targets/*/lib"))]
    for entry in search:
        dirs += sorted(Path(entry).glob("nvidia/*/lib"))
    for d in dirs:
        found = sorted(d.glob("libnvrtc.so*"))
        plain = [f for f in found if f.name == "libnvrtc.so"]
        versioned = [f for f in found if re.fullmatch(r"libnvrtc\.so\.\d+", f.name)]
        if plain or versioned:
            return (plain or versioned)[0]
    return None


def nvrtc_library_dirs(lib: Path, work: Path) -> list[str]:
    """Folders that make ``ctypes.CDLL("libnvrtc.so")`` (edge_infer.cuda.compile's lookup)
    find ``lib``: its own folder, and where it has only a versioned name (``.so.13``) a folder
    in ``work`` with a ``libnvrtc.so`` link to it."""
    if lib.name == "libnvrtc.so":
        return [str(lib.parent)]
    link_dir = work / "nvrtc"
    link_dir.mkdir(parents=True, exist_ok=True)
    link = link_dir / "libnvrtc.so"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(lib)
    return [str(link_dir), str(lib.parent)]  # the builtins library sits beside the real one


def query_smi(env: Mapping[str, str]) -> dict[str, Any]:
    """What nvidia-smi says: ``{"gpus": [...], "cuda_driver_api": "13.0"}`` or ``{"error"}``."""
    smi = shutil.which("nvidia-smi", path=env.get("PATH", ""))
    if smi is None:
        return {"error": "nvidia-smi not found on PATH"}
    fields = list(SMI_FIELDS)
    out, err, code, _ = run_group(
        [smi, f"--query-gpu={','.join(fields)}", "--format=csv,noheader"], 20, env=env
    )
    if code != 0:  # an old driver without compute_cap: ask again without it
        fields = fields[:-1]
        out, err, code, _ = run_group(
            [smi, f"--query-gpu={','.join(fields)}", "--format=csv,noheader"], 20, env=env
        )
    if code != 0:
        return {"error": f"nvidia-smi failed: {(err or out).strip()[:300]}"}
    gpus = [
        dict(zip(fields, (v.strip() for v in line.split(",")), strict=False))
        for line in out.splitlines()
        if line.strip()
    ]
    header, _, _, _ = run_group([smi], 20, env=env)
    match = re.search(r"CUDA Version:\s*([\d.]+)", header)
    return {
        "gpus": gpus,
        "cuda_driver_api": match.group(1) if match else None,
        "nvidia_smi": header[-3000:],
    }


def jetson_release(root: Path = Path("/")) -> dict[str, str] | None:
    """L4T release and board model on a Jetson (``/etc/nv_tegra_release``), else None."""
    release = root / "etc/nv_tegra_release"
    if not release.is_file():
        return None
    text = release.read_text(errors="replace").splitlines()
    model = root / "proc/device-tree/model"
    return {
        "l4t": text[0].strip("# ").strip() if text else "",
        "model": model.read_text(errors="replace").strip("\x00\n ")
        if model.is_file()
        else "unknown",
    }


def nvcc_release(cuda_root: Path | None, env: Mapping[str, str]) -> str | None:
    nvcc = (cuda_root / "bin" / "nvcc") if cuda_root else None
    if nvcc is None or not nvcc.exists():
        found = shutil.which("nvcc", path=env.get("PATH", ""))
        nvcc = Path(found) if found else None
    if nvcc is None:
        return None
    out, _, code, _ = run_group([str(nvcc), "--version"], 20, env=env)
    match = re.search(r"release ([\d.]+)", out)
    return match.group(1) if code == 0 and match else None


def collect(env: Mapping[str, str] | None = None, root: Path = Path("/")) -> dict[str, Any]:
    """Everything the report shows; ``gpu_present`` and ``why_no_gpu`` gate the GPU steps."""
    env = dict(os.environ if env is None else env)
    smi = query_smi(env)
    jetson = jetson_release(root)
    cuda_root = find_cuda_root(env, root)
    gpus = smi.get("gpus") or []
    sm = None
    if gpus and gpus[0].get("compute_cap"):
        sm = "sm_" + gpus[0]["compute_cap"].replace(".", "")
    present = bool(gpus) or jetson is not None
    why = (
        ""
        if present
        else (
            f"no NVIDIA GPU found ({smi.get('error', 'nvidia-smi lists none')}; not a Jetson: "
            "no /etc/nv_tegra_release)"
        )
    )
    return {
        "gpu_present": present,
        "why_no_gpu": why,
        "gpus": gpus,
        "gpu": gpus[0]["name"] if gpus else (jetson or {}).get("model"),
        "sm": sm,
        "driver": gpus[0].get("driver_version") if gpus else None,
        "cuda_driver_api": smi.get("cuda_driver_api"),
        "nvidia_smi_error": smi.get("error"),
        "jetson": jetson,
        "cuda_root": str(cuda_root) if cuda_root else None,
        "nvcc": nvcc_release(cuda_root, env),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "nproc": os.cpu_count(),
        "nvidia_smi": smi.get("nvidia_smi", ""),
    }
