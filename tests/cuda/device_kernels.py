"""Small test kernels for the device layer, each written twice with the same params struct:
CUDA C (compiled for a real GPU) and a Python callable (run by EmuDevice on host memory).

- ``fill``: ``dst[i] = value`` after spinning ``spin`` cycles (the Python one sleeps
  ``spin`` ns): a slow producer.
- ``add``: ``dst[i] = src[i] + add``: a consumer that reads what a producer wrote.
- ``handshake``: raise ``flags[me]``, then wait (bounded) until ``flags[other]`` is raised;
  ``result[me]`` is 1 if it was, 0 on timeout. Two of them on two streams both succeed only
  if the streams run at the same time.
"""

from __future__ import annotations

import ctypes
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_infer.cuda.device import Device, Module
from edge_infer.cuda.emu_device import EmuDevice, PyModule


class FillParams(ctypes.Structure):
    _fields_ = [
        ("dst", ctypes.c_uint64),
        ("n", ctypes.c_int64),
        ("spin", ctypes.c_int64),
        ("value", ctypes.c_float),
        ("pad", ctypes.c_int32),
    ]


class AddParams(ctypes.Structure):
    _fields_ = [
        ("src", ctypes.c_uint64),
        ("dst", ctypes.c_uint64),
        ("n", ctypes.c_int64),
        ("add", ctypes.c_float),
        ("pad", ctypes.c_int32),
    ]


class HandshakeParams(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("result", ctypes.c_uint64),
        ("timeout", ctypes.c_int64),
        ("me", ctypes.c_int32),
        ("other", ctypes.c_int32),
    ]


CUDA_SOURCE = r"""
struct FillParams { float* dst; long long n; long long spin; float value; int pad; };
struct AddParams { const float* src; float* dst; long long n; float add; int pad; };
struct HandshakeParams { volatile int* flags; int* result; long long timeout; int me; int other; };

extern "C" __global__ void fill(FillParams p) {
    if (p.spin > 0) {
        long long start = clock64();
        while (clock64() - start < p.spin) { }
    }
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < p.n;
         i += (long long)gridDim.x * blockDim.x)
        p.dst[i] = p.value;
}

extern "C" __global__ void add(AddParams p) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < p.n;
         i += (long long)gridDim.x * blockDim.x)
        p.dst[i] = p.src[i] + p.add;
}

extern "C" __global__ void handshake(HandshakeParams p) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    p.flags[p.me] = 1;
    __threadfence_system();
    long long start = clock64();
    while (p.flags[p.other] == 0) {
        if (clock64() - start > p.timeout) { p.result[p.me] = 0; return; }
    }
    p.result[p.me] = 1;
}
"""

#: ~7 s of spinning on a ~1.5 GHz GPU, 10 s on the emulator (ns): only a failing run waits it out,
#: and a loaded 2-core CI machine may take seconds to schedule the second stream's thread
HANDSHAKE_TIMEOUT = 10_000_000_000


def _floats(ptr: int, n: int) -> np.ndarray:
    return np.ctypeslib.as_array((ctypes.c_float * n).from_address(ptr))


def _ints(ptr: int, n: int) -> np.ndarray:
    return np.ctypeslib.as_array((ctypes.c_int32 * n).from_address(ptr))


def _py_fill(grid, block, p: FillParams, shared: int) -> None:
    if p.spin > 0:
        time.sleep(p.spin * 1e-9)
    _floats(p.dst, p.n)[:] = p.value


def _py_add(grid, block, p: AddParams, shared: int) -> None:
    _floats(p.dst, p.n)[:] = _floats(p.src, p.n) + np.float32(p.add)


def _py_handshake(grid, block, p: HandshakeParams, shared: int) -> None:
    flags, result = _ints(p.flags, 2), _ints(p.result, 2)
    flags[p.me] = 1
    deadline = time.perf_counter() + p.timeout * 1e-9
    while flags[p.other] == 0:
        if time.perf_counter() > deadline:
            result[p.me] = 0
            return
        time.sleep(1e-4)
    result[p.me] = 1


PY_KERNELS = {"fill": _py_fill, "add": _py_add, "handshake": _py_handshake}


def compile_cubin(sm: int) -> bytes:
    """``CUDA_SOURCE`` compiled by NVRTC for ``sm`` (e.g. 87)."""
    from edge_infer.cuda.compile import nvrtc_compile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "device_test_kernels.cu"
        path.write_text(CUDA_SOURCE)
        cubin, _log = nvrtc_compile(path, sm)
    return cubin


def load(device: Device) -> Module:
    """The test kernels on ``device``: Python on the emulator, NVRTC's cubin on a GPU."""
    if isinstance(device, EmuDevice):
        return device.load_module(PyModule(PY_KERNELS), "test kernels")
    major, minor = device.properties.sm
    return device.load_module(compile_cubin(major * 10 + minor), "test kernels")


def open_device(kind: str) -> Any:
    """A fresh device of ``kind`` ("emu" or "gpu", the latter skipped without a GPU)."""
    if kind == "emu":
        return EmuDevice()
    from edge_infer.cuda.pycuda_device import PycudaDevice
    from edge_infer.errors import CudaUnavailableError

    try:
        return PycudaDevice(check_hazards=True)
    except CudaUnavailableError as exc:
        pytest.skip(str(exc))


DEVICE_KINDS = ["emu", pytest.param("gpu", marks=pytest.mark.gpu)]
