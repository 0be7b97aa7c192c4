"""Which CUDA device the backend builds for and runs on, and its fingerprint.

A device is named ``"emu"`` (the emulator: :class:`~edge_infer.cuda.emu_device.EmuDevice`,
an emulated sm_87 integrated GPU) or by a GPU index (``0``, ``1``, …: a
:class:`~edge_infer.cuda.pycuda_device.PycudaDevice`). With no name, GPU 0 — which needs
pycuda and an NVIDIA driver; without them the error says to install ``edge-infer[cuda]`` or
pass ``--device emu``. Devices are opened once per process and kept.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from edge_infer.cuda.device import Device
from edge_infer.errors import BackendError

#: where a Jetson's L4T (JetPack) release is written
TEGRA_RELEASE = Path("/etc/nv_tegra_release")

_open: dict[str, Device] = {}
_lock = threading.Lock()


def parse_device(spec: Any) -> str:
    """``"emu"`` or a GPU index as a string; a one-line error for anything else."""
    if isinstance(spec, bool):
        raise BackendError(f"CUDA device must be 'emu' or a GPU index, got {spec!r}")
    if isinstance(spec, int):
        if spec < 0:
            raise BackendError(f"CUDA device must be 'emu' or a GPU index >= 0, got {spec}")
        return str(spec)
    text = str(spec).strip().lower()
    if text == "emu" or (text.isdigit() and text == str(int(text))):
        return text
    raise BackendError(f"CUDA device must be 'emu' or a GPU index (0, 1, ...), got {spec!r}")


def open_device(spec: str) -> Device:
    """The process's device for ``spec`` (opened on first use)."""
    spec = parse_device(spec)
    with _lock:
        device = _open.get(spec)
        if device is None:
            if spec == "emu":
                from edge_infer.cuda.emu_device import EmuDevice

                device = EmuDevice()
            else:
                from edge_infer.cuda.pycuda_device import PycudaDevice

                device = PycudaDevice(int(spec))
            _open[spec] = device
        return device


def l4t_release(path: Path = TEGRA_RELEASE) -> str | None:
    """The L4T release line of a Jetson (e.g. ``"R36 (release), REVISION: 3.0"``), or None."""
    try:
        first = path.read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return None
    return first.lstrip("# ").strip() or None


def fingerprint(device: Device) -> dict[str, Any]:
    """What an engine built for ``device`` is tied to: GPU name, SM, CUDA driver and runtime
    versions and, on a Jetson, the L4T release. The emulator names itself ``emulated sm_XY``."""
    p = device.properties
    if p.emulated:
        return {"gpu": f"emulated {p.arch}", "sm": p.arch, "driver": 0, "runtime": 0}
    fp: dict[str, Any] = {
        "gpu": p.name,
        "sm": p.arch,
        "driver": p.driver_version,
        "runtime": p.runtime_version,
    }
    release = l4t_release()
    if release:
        fp["l4t"] = release
    return fp
