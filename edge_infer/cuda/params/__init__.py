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
