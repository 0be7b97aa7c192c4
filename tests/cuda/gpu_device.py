"""The ``gpu`` side of the ``device`` fixture: the same KernelCalls on a real GPU (pycuda)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from edge_infer.cuda.library import KernelCall


class GpuDevice:
    """Kernels loaded from the NVRTC cubins of this GPU's SM, launched with pycuda."""

    name = "gpu"
    _instance: GpuDevice | None = None

    @classmethod
    def open_or_skip(cls) -> GpuDevice:
        if cls._instance is None:
            try:
                import pycuda.autoinit  # noqa: F401  (creates the context)
                import pycuda.driver as drv
            except Exception as exc:  # ImportError, or no device / driver
                pytest.skip(f"no GPU through pycuda here: {exc}")
            cls._instance = cls(drv)
        return cls._instance

    def __init__(self, drv: Any):
        from edge_infer.cuda.compile import compile_library

        self.drv = drv
        major, minor = drv.Context.get_device().compute_capability()
        self.sm = major * 10 + minor
        self._cubins = compile_library(sm=self.sm)
        self._modules: dict[str, Any] = {}

    def to_device(self, host: np.ndarray) -> Any:
        import pycuda.gpuarray as ga

        return ga.to_gpu(np.ascontiguousarray(host))

    def empty(self, shape: Sequence[int] | int, dtype: Any) -> Any:
        import pycuda.gpuarray as ga

        out = ga.empty(shape, dtype)
        self.drv.memset_d8(out.gpudata, 0xFF, out.nbytes)
        return out

    def to_host(self, array: Any) -> np.ndarray:
        return array.get()

    def run(self, call: KernelCall) -> None:
        func = self._function(call.entry)
        if call.shared_bytes > 48 * 1024:  # above 48 KiB a kernel must opt in
            func.set_attribute(
                self.drv.function_attribute.MAX_DYNAMIC_SHARED_SIZE_BYTES, call.shared_bytes
            )
        # the one by-value params struct, passed as its raw bytes (numpy void scalar)
        raw = bytes(call.params)
        arg = np.frombuffer(raw, dtype=np.dtype((np.void, len(raw))))[0]
        func(arg, grid=call.grid, block=call.block, shared=call.shared_bytes)
        self.drv.Context.synchronize()

    def _function(self, entry: str) -> Any:
        from edge_infer.cuda.library import get

        source = get(entry).source
        module = self._modules.get(source)
        if module is None:
            module = self._modules[source] = self.drv.module_from_buffer(
                self._cubins[source].read_bytes()
            )
        return module.get_function(entry)
