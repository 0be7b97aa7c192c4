"""Backends, by name. The registry is explicit; a backend's module is imported when asked for."""

from __future__ import annotations

import importlib

from edge_infer.engine.backends.base import Backend
from edge_infer.errors import BackendError

#: backend name → "module:Class"
BACKENDS: dict[str, str] = {
    "cpu": "edge_infer.engine.backends.cpu.backend:CpuBackend",
    "cuda": "edge_infer.cuda.backend:CudaBackend",
}

#: the backend whose numbers are the reference (calibration, per-layer comparisons): every
#: backend must reproduce what it computes, within each precision's tolerance
REFERENCE_BACKEND = "cpu"

#: how to get what a backend needs
_INSTALL = {
    "cuda": "pip install 'edge-infer[cuda]' (pycuda) on a machine with an NVIDIA GPU "
    "and its driver; on a Jetson, deploy/jetson/install.sh"
}

_instances: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    """The backend called ``name``; a clear error if unknown or unavailable here."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend '{name}'; choose one of {sorted(BACKENDS)}")
    if name not in _instances:
        module_name, _, cls_name = BACKENDS[name].partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), cls_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # the backend itself, not one of its dependencies
                raise BackendError(
                    f"backend '{name}' is missing from this installation ({module_name} "
                    f"cannot be found): reinstall edge-infer, or build with --backend cpu"
                ) from None
            raise BackendError(
                f"backend '{name}' needs {exc.name}, which is not installed "
                f"here: {_INSTALL.get(name, 'install it')}"
            ) from None
        except ImportError as exc:
            raise BackendError(f"backend '{name}' is not available here: {exc}") from exc
        if not cls.is_available():
            why = cls.unavailable_reason() or "not available on this machine"
            raise BackendError(f"backend '{name}': {why}")
        _instances[name] = cls()
    return _instances[name]
