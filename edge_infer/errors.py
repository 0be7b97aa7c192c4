"""The one exception hierarchy of edge_infer.

Every error a user can cause derives from :class:`EdgeInferError`; messages say where the
fault is (file, node, op, shapes) and how to fix it.
"""

from __future__ import annotations


class EdgeInferError(Exception):
    """Base class of every error edge_infer raises on purpose."""


class ModelLoadError(EdgeInferError):
    """The model file cannot be read or is not a valid ONNX model."""


class UnsupportedOpError(EdgeInferError):
    """One or more ops have no implementation; ``unsupported`` lists every one of them."""

    def __init__(self, message: str, unsupported: list[tuple[str, str, str]] | None = None):
        super().__init__(message)
        #: ``(node_name, domain, op_type)`` for every node that could not be resolved.
        self.unsupported = unsupported or []


class ExternalDataError(ModelLoadError):
    """External tensor data points outside the model's folder, or cannot be read."""


class GraphError(EdgeInferError):
    """The IR is inconsistent (verifier failure) or a graph edit is illegal."""


class ShapeInferenceError(EdgeInferError):
    """Shapes or dtypes of a node's inputs do not fit the op."""


class PassError(GraphError):
    """An optimization pass left the graph invalid; the message names the pass."""


class BuildError(EdgeInferError):
    """The builder could not produce an engine (bad options, shapes, profiles)."""


class EngineFileError(EdgeInferError):
    """An engine file is truncated, corrupt, of an unknown version, or not an engine."""


class EngineCompatibilityError(EngineFileError):
    """An engine file was built for another device, backend or edge_infer version."""


class BindingError(EdgeInferError):
    """Inputs given to an execution context do not match the engine's bindings."""


class BackendError(EdgeInferError):
    """A backend is unknown or unavailable on this machine."""


class KernelCompileError(BackendError):
    """A CUDA kernel source does not compile (for a device SM, or for the CPU emulator)."""


class KernelLaunchError(BackendError):
    """A kernel launch was refused (configuration, params) or the kernel trapped."""


class PluginError(EdgeInferError):
    """A custom layer (plugin) registration is invalid or conflicts with another."""


class CalibrationError(EdgeInferError):
    """INT8 calibration data or a calibration cache is unusable."""


class ConfigError(EdgeInferError):
    """A configuration file is invalid; the message carries the field path and the fix."""


class CudaError(EdgeInferError):
    """A CUDA device operation failed or was asked for something the device cannot do."""


class CudaUnavailableError(CudaError, BackendError):
    """pycuda or a usable NVIDIA GPU and driver is missing; the message says what to install."""


class CudaLaunchError(CudaError):
    """A kernel or copy failed on the device; raised at the next synchronize, as CUDA does."""


class CudaOutOfMemoryError(CudaError):
    """A device or pinned host allocation does not fit in the memory left."""


class HazardError(CudaError):
    """Two accesses to overlapping bytes, at least one a write, are not ordered by stream order,
    an event or a host synchronize; ``first`` and ``second`` describe the two operations."""

    def __init__(self, message: str, first: str = "", second: str = ""):
        super().__init__(message)
        self.first = first
        self.second = second
