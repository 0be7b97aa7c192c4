"""Ops: one registry keyed ``(domain, op_type, since_version)``, one module per op family.

``FAMILIES`` is the explicit list of modules whose ``OPS`` lists make up the default registry.
Custom layers (plugins) are added to the same registry through :mod:`edge_infer.engine.plugins`.
"""

from __future__ import annotations

import importlib
import threading

from edge_infer.engine.ops.registry import OpDef, OpList, OpRegistry

FAMILIES: tuple[str, ...] = (
    "elementwise",
    "activations",
    "reduce",
    "conv",
    "pool",
    "normalization",
    "linalg",
    "resize",
    "shape_ops",
    "slice_pad",
    "tensor_ops",
    "fused",
    "quantize",
    "recurrent",
    "integer",
)

_registry: OpRegistry | None = None
_lock = threading.Lock()


def get_registry() -> OpRegistry:
    """The process-wide registry of built-in ops (and registered plugins)."""
    global _registry
    if _registry is None:
        with _lock:
            if _registry is None:
                registry = OpRegistry()
                for family in FAMILIES:
                    module = importlib.import_module(f"edge_infer.engine.ops.{family}")
                    registry.register_all(module.OPS)
                _registry = registry
    return _registry


__all__ = ["FAMILIES", "OpDef", "OpList", "OpRegistry", "get_registry"]
