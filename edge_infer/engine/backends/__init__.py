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

_instances: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    """The backend called ``name``; a clear error if unknown or unavailable here."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend '{name}'; choose one of {sorted(BACKENDS)}")
    if name not in _instances:
        module_name, _, cls_name = BACKENDS[name].partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), cls_name)
        except ImportError as exc:
            raise BackendError(f"backend '{name}' is not available here: {exc}") from exc
        if not cls.is_available():
            raise BackendError(f"backend '{name}' is not available on this machine")
        _instances[name] = cls()
    return _instances[name]
