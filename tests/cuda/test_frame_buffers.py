"""Device.host_frame_buffer: the cameras' decode buffers in pinned memory (issue 15 §2).

Mapped (zero copy) where the GPU is integrated, portable pinned memory where it is discrete;
the device finds them again from the array (``pinned_region``) and checks a camera's write
(``claim_frame_buffer``) against device work still reading them."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.cuda.emu_device import EmuDevice
from edge_infer.cuda.pycuda_device import PycudaDevice
from edge_infer.errors import HazardError
from tests.cuda.fake_pycuda import FakeDriver
from tests.cuda.test_pycuda_device import KERNELS, _install


@pytest.mark.parametrize("integrated", [True, False])
def test_frame_buffers_are_pinned_and_found_again(integrated: bool) -> None:
    with EmuDevice(integrated=integrated) as dev:
        assert dev.is_integrated is integrated
        buf = dev.host_frame_buffer((4, 6, 3))
        assert buf.shape == (4, 6, 3) and buf.dtype == np.uint8 and buf.flags.c_contiguous
        region = dev.pinned_region(buf)
        assert region is not None and region.nbytes == buf.nbytes and region.offset == 0
        assert region.buffer.kind == "pinned" and region.buffer.mapped is integrated
        assert dev.pinned_region(np.empty((4, 6, 3), np.uint8)) is None  # ordinary memory
        assert dev.pinned_region(buf[1:]) is None  # not the whole buffer
        dev.free_frame_buffer(buf)
        assert dev.pinned_region(buf) is None and region.buffer.freed
        dev.free_frame_buffer(buf)  # twice, or a foreign array: no-op
        dev.free_frame_buffer(np.empty(3, np.uint8))


def test_a_camera_write_while_a_copy_reads_the_buffer_is_a_hazard() -> None:
    with EmuDevice(integrated=False) as dev:
        buf = dev.host_frame_buffer((2, 4, 3))
        dst = dev.allocate(buf.nbytes)
        stream = dev.stream()
        dev.claim_frame_buffer(buf)  # nothing reads it yet
        dev.copy_htod(dst, dev.pinned_region(buf), stream)
        with pytest.raises(HazardError, match="camera writes frame"):
            dev.claim_frame_buffer(buf)
        stream.synchronize()
        dev.claim_frame_buffer(buf)  # read: the camera may write it again


@pytest.mark.parametrize("integrated", [True, False], ids=["integrated", "discrete"])
def test_pycuda_frame_buffers_are_portable_and_mapped_where_integrated(
    monkeypatch: pytest.MonkeyPatch, integrated: bool
) -> None:
    drv = FakeDriver(KERNELS, integrated=integrated, memory=1 << 20)
    _install(monkeypatch, drv)
    with PycudaDevice() as dev:
        buf = dev.host_frame_buffer((2, 4, 3))
        region = dev.pinned_region(buf)
        host = region.buffer._handle.base  # the page-locked allocation
        flags = drv.module().host_alloc_flags
        assert host._flags & flags.PORTABLE
        assert bool(host._flags & flags.DEVICEMAP) is integrated
        assert region.buffer.mapped is integrated
        dev.free_frame_buffer(buf)
