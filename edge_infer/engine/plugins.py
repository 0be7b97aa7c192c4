"""Custom layers (plugins): user ops the importer resolves like built-in ones.

A plugin is registered for a ``(domain, op_type)`` with a shape function and one kernel per
backend. The CPU kernel follows the op contract (a pure numpy function: inputs positionally,
attributes as keyword arguments); other backends find theirs with :func:`plugin_kernel`.

Example (see ``docs/plugins.md``)::

    from edge_infer.engine import plugins
    from edge_infer.engine.ops.registry import same_as_input

    def swish_beta(x, beta=1.0):
        return (x / (1.0 + np.exp(-beta * x))).astype(x.dtype)

    plugins.register_plugin("SwishBeta", domain="com.example",
                            infer=same_as_input(0), kernels={"cpu": swish_beta})

Engines built with a plugin need the same registration in the process that loads them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from edge_infer.engine.ops import get_registry
from edge_infer.engine.ops.registry import Infer, OpDef
from edge_infer.errors import PluginError

_kernels: dict[tuple[str, str], dict[str, Callable[..., Any]]] = {}
_lock = threading.Lock()


def register_plugin(
    op_type: str,
    *,
    domain: str,
    infer: Infer,
    kernels: Mapping[str, Callable[..., Any]],
    since_version: int = 1,
    defaults: Mapping[str, Any] | None = None,
    foldable: bool = False,
) -> None:
    """Register a custom op; a second registration of the same key raises PluginError."""
    if not op_type or not op_type.isidentifier():
        raise PluginError(f"plugin op_type must be an identifier, got {op_type!r}")
    if domain in ("", "ai.onnx"):
        raise PluginError(
            f"plugin '{op_type}' must use its own domain (e.g. 'com.yourcompany'), not the "
            "ONNX default domain, so it can never shadow a built-in op"
        )
    if "cpu" not in kernels:
        raise PluginError(
            f"plugin '{domain}::{op_type}' needs at least a 'cpu' kernel (the numeric reference)"
        )
    unknown = set(kernels) - {"cpu", "cuda"}
    if unknown:
        raise PluginError(f"plugin '{domain}::{op_type}': unknown backends {sorted(unknown)}")
    with _lock:
        get_registry().register(
            OpDef(
                op_type,
                since_version,
                kernels["cpu"],
                infer,
                domain,
                dict(defaults or {}),
                foldable,
            )
        )
        _kernels[(domain, op_type)] = dict(kernels)


def unregister_plugin(op_type: str, *, domain: str) -> None:
    """Remove a plugin (all its versions)."""
    with _lock:
        if (domain, op_type) not in _kernels:
            raise PluginError(f"no plugin '{domain}::{op_type}' is registered")
        get_registry().unregister(domain, op_type)
        del _kernels[(domain, op_type)]


def plugin_kernel(domain: str, op_type: str, backend: str) -> Callable[..., Any] | None:
    """The plugin's kernel for ``backend``, or ``None``."""
    return _kernels.get((domain, op_type), {}).get(backend)


def registered_plugins() -> list[tuple[str, str]]:
    return sorted(_kernels)
