"""edge_infer: an inference engine for edge devices and a multi-camera detection daemon.

``import edge_infer`` works on any machine: heavy dependencies (pycuda, cv2, zmq) are imported
only by the subpackages that need them, when they are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge_infer._version import __version__
from edge_infer.errors import EdgeInferError

if TYPE_CHECKING:
    from edge_infer.engine import BuildOptions, Engine, ExecutionContext, build

__all__ = ["BuildOptions", "EdgeInferError", "Engine", "ExecutionContext", "__version__", "build"]


def __getattr__(name: str) -> Any:
    # Lazy so that `import edge_infer` stays cheap and never pulls onnx in by itself.
    if name in ("build", "BuildOptions", "Engine", "ExecutionContext"):
        import edge_infer.engine

        return getattr(edge_infer.engine, name)
    raise AttributeError(f"module 'edge_infer' has no attribute {name!r}")
