"""EmuDevice running the kernel library's emulated build: launches of real ``.cu`` kernels on
streams, their parameters built from device addresses, checked for hazards."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from edge_infer.cuda.emu_device import EmuDevice
from edge_infer.cuda.emulator import EmuLibrary
from edge_infer.cuda.params.copy import CopyParams
from edge_infer.errors import CudaLaunchError, HazardError


def _i4(*values: int) -> ctypes.Array:
    return (ctypes.c_int32 * 4)(*values)


def _copy_params(src: int, dst: int, n: int) -> CopyParams:
    return CopyParams(
        src=src,
        dst=dst,
        shape=_i4(1, 1, 1, n),
        src_strides=_i4(0, 0, 0, 1),
        dst_strides=_i4(0, 0, 0, 1),
        count=n,
    )


@pytest.fixture(scope="module")
def lib() -> EmuLibrary:
    return EmuLibrary.get()


@pytest.mark.parametrize("verify_writes", [False, True])
def test_library_kernels_run_on_streams_of_one_arena(lib, verify_writes) -> None:
    """Two streams copy disjoint halves of one arena, joined by an event, then read back;
    with verify_writes, each kernel is also shown to write only its declared half."""
    n = 1000
    host = np.arange(2 * n, dtype=np.float32)
    dev = EmuDevice(verify_writes=verify_writes)
    with dev, dev.stream("main") as sa, dev.stream("aux") as sb:
        copy = dev.load_module(lib, "kernels").function("ei_copy_b4")
        arena = dev.allocate(16 * n, "arena")  # [in: 2n floats][out: 2n floats]
        pinned = dev.allocate_host(8 * n, "io")
        dev.host_access("stage input", writes=[pinned])
        pinned.view(np.float32)[:] = host
        dev.copy_htod(arena.region(0, 8 * n), pinned, sa)
        staged = dev.event("staged")
        staged.record(sa)
        sb.wait(staged)
        for k, stream in ((0, sa), (1, sb)):
            src, dst = arena.region(4 * n * k, 4 * n), arena.region(8 * n + 4 * n * k, 4 * n)
            dev.launch(
                copy,
                4,
                256,
                _copy_params(src.device_ptr, dst.device_ptr, n),
                stream=stream,
                reads=[src],
                writes=[dst],
                label=f"copy{k}",
            )
        done = dev.event("aux done")
        done.record(sb)
        sa.wait(done)
        dev.copy_dtoh(pinned, arena.region(8 * n, 8 * n), sa)
        sa.synchronize()
        dev.host_access("read output", reads=[pinned])
        np.testing.assert_array_equal(pinned.view(np.float32), host)


def test_library_launch_without_the_join_is_a_hazard(lib) -> None:
    n = 256
    with EmuDevice() as dev, dev.stream("main") as sa, dev.stream("aux") as sb:
        copy = dev.load_module(lib).function("ei_copy_b4")
        x, y = dev.allocate(4 * n, "x"), dev.allocate(4 * n, "y")
        dev.memset(x, 0, sa, label="clear x")
        with pytest.raises(HazardError, match="'clear x' on stream 'main'.*'copy' on stream"):
            dev.launch(
                copy,
                1,
                256,
                _copy_params(x.ptr, y.ptr, n),
                stream=sb,
                reads=[x],
                writes=[y],
                label="copy",
            )


def test_a_refused_library_launch_surfaces_at_synchronize(lib) -> None:
    dev = EmuDevice()
    s = dev.stream("main")
    copy = dev.load_module(lib).function("ei_copy_b4")
    wrong = (ctypes.c_int32 * 4)(1, 2, 3, 4)  # not the kernel's CopyParams
    dev.launch(copy, 1, 32, wrong, stream=s, label="bad copy")
    with pytest.raises(CudaLaunchError, match="'bad copy' failed.*takes CopyParams"):
        s.synchronize()
    with pytest.raises(CudaLaunchError):
        dev.close()
