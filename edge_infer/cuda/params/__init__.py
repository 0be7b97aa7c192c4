"""ctypes mirrors of the kernels' params structs, one module per kernel concept.

Each module ``edge_infer.cuda.params.<concept>`` mirrors the structs of
``kernels/<concept>.cu`` field for field (same order, same fixed-width types; pointers as
``ctypes.c_void_p`` holding device addresses, host addresses in emulation) and exports
``SPECS: tuple[KernelSpec, ...]``, the entry points of that file. The emulator checks every
mirror's size against the compiled struct (``<entry>__params_size``) before a launch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_infer.errors import BackendError


def ptr(array: Any) -> int | None:
    """The address of ``array``'s first element for a pointer field (``None``: null).

    A numpy array (host memory: the emulator's device memory) or a pycuda ``GPUArray``.
    """
    if array is None:
        return None
    if isinstance(array, np.ndarray):
        return int(array.ctypes.data)
    gpudata = getattr(array, "gpudata", None)
    if gpudata is None:
        raise BackendError(
            f"cannot take the device address of a {type(array).__name__}; "
            f"pass a numpy array (emulator) or a pycuda GPUArray"
        )
    return int(gpudata)


def image_batch_stride(op: str, name: str, a: Any) -> int:
    """Elements between the images of an NCHW array whose images are each C-contiguous (a
    batch stride of its own is allowed: ``a`` may be a slice of a larger batch buffer)."""
    dtype = np.dtype(a.dtype)
    h, w = (int(d) for d in a.shape[2:])
    if (
        tuple(a.strides[1:]) != (h * w * dtype.itemsize, w * dtype.itemsize, dtype.itemsize)
        or a.strides[0] % dtype.itemsize
    ):
        raise BackendError(
            f"{op}: each image of {name} must be C-contiguous (a batch stride "
            f"is allowed), got strides {a.strides} for shape {tuple(a.shape)}"
        )
    return int(a.strides[0]) // dtype.itemsize
