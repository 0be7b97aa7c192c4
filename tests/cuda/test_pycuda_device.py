"""PycudaDevice's use of the pycuda driver API, on a stand-in driver (``fake_pycuda``) that
enforces pycuda's signatures and the driver's one-context-per-thread rule: runs without a GPU.
The same device cases on a real GPU are the ``gpu`` variants in test_device/test_hazards."""

from __future__ import annotations

import sys
import threading
import types

import numpy as np
import pytest

from edge_infer.cuda.pycuda_device import PycudaDevice
from edge_infer.errors import CudaError, CudaOutOfMemoryError, CudaUnavailableError, HazardError
from tests.cuda import device_kernels as tk
from tests.cuda.fake_pycuda import FakeDriver

KERNELS = {
    "fill": (tk.FillParams, tk.PY_KERNELS["fill"]),
    "add": (tk.AddParams, tk.PY_KERNELS["add"]),
}
CUBIN = b"\x7fELF fake cubin"


def _install(monkeypatch, drv: FakeDriver) -> None:
    driver = drv.module()
    package = types.ModuleType("pycuda")
    package.driver = driver
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)


@pytest.fixture(params=[True, False], ids=["integrated", "discrete"])
def fake(request, monkeypatch) -> FakeDriver:
    drv = FakeDriver(KERNELS, integrated=request.param, memory=1 << 20)
    _install(monkeypatch, drv)
    return drv


def test_properties_come_from_the_driver(fake) -> None:
    with PycudaDevice() as dev:
        p = dev.properties
        assert (p.name, p.sm, p.arch, p.integrated) == (
            "Fake Orin",
            (8, 7),
            "sm_87",
            fake.integrated,
        )
        assert (p.driver_version, p.runtime_version, p.total_memory) == (12040, 12040, 1 << 20)
    assert fake.stack() == []


def test_copies_and_launches_round_trip_with_byte_ranges(fake) -> None:
    n = 300
    host = np.arange(n, dtype=np.float32)
    with PycudaDevice(check_hazards=True) as dev, dev.stream("s") as s:
        mod = dev.load_module(CUBIN)
        pinned = dev.allocate_host(4 * n, "io")
        dev.host_access("stage", writes=[pinned])
        pinned.view(np.float32)[:] = host
        x, y = dev.allocate(4 * n, "x"), dev.allocate(8 * n, "y")
        dev.copy_htod(x, pinned, s)
        dev.memset(y, 0, s)
        dev.launch(
            mod.function("add"),
            2,
            128,
            tk.AddParams(x.ptr, y.ptr + 4 * n, n, 0.5),
            stream=s,
            reads=[x],
            writes=[y.region(4 * n, 4 * n)],
        )
        dev.copy_dtod(x.region(0, 400), y.region(4 * n, 400), s)
        dev.copy_dtoh(pinned, x, s)
        s.synchronize()
        dev.host_access("read", reads=[pinned])
        expected = host.copy()
        expected[:100] += 0.5
        np.testing.assert_array_equal(pinned.view(np.float32), expected)
    assert fake.stack() == [], "a context was left pushed"


def test_every_call_pushes_the_context_on_the_calling_thread(fake) -> None:
    dev = PycudaDevice()
    mod = dev.load_module(CUBIN)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with dev.stream("worker") as s:
                x = dev.allocate(64, "x")
                dev.launch(
                    mod.function("fill"),
                    1,
                    16,
                    tk.FillParams(x.ptr, 16, 0, 1.0),
                    stream=s,
                    writes=[x],
                )
                e0, e1 = dev.event(), dev.event()
                e0.record(s)
                e1.record(s)
                s.wait(e1)
                e1.synchronize()
                assert e0.elapsed_ms(e1) >= 0.0 and e1.query()
                x.free()
            assert fake.stack() == []
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    t.join(timeout=30)
    assert errors == []
    dev.close()
    assert fake.stack() == []


def test_pinned_memory_is_mapped_only_on_an_integrated_gpu(fake) -> None:
    with PycudaDevice() as dev, dev.stream() as s:
        h = dev.allocate_host(256, "frames")
        assert h.mapped == fake.integrated
        if fake.integrated:  # zero copy: the kernel writes the pinned buffer itself
            mod = dev.load_module(CUBIN)
            dev.launch(
                mod.function("fill"),
                1,
                64,
                tk.FillParams(h.region().device_ptr, 64, 0, 9.0),
                stream=s,
                writes=[h],
            )
            s.synchronize()
            np.testing.assert_array_equal(h.view(np.float32), np.full(64, 9.0, np.float32))
        else:
            with pytest.raises(CudaError, match="not mapped"):
                dev.launch(dev.load_module(CUBIN).function("fill"), 1, 1, stream=s, writes=[h])


def test_large_dynamic_shared_memory_is_opted_into(fake) -> None:
    with PycudaDevice() as dev, dev.stream() as s:
        x = dev.allocate(64, "x")
        fill = dev.load_module(CUBIN).function("fill")
        dev.launch(fill, 1, 16, tk.FillParams(x.ptr, 16), stream=s, shared_bytes=96 * 1024)
        assert "cuFuncSetAttribute" in fake.calls


def test_driver_errors_become_typed_and_leave_no_context_pushed(fake) -> None:
    with PycudaDevice() as dev:
        with pytest.raises(CudaOutOfMemoryError, match="out of GPU memory"):
            dev.allocate(2 << 20, "too big")
        with pytest.raises(CudaError, match="image is invalid"):
            dev.load_module(b"not a cubin")
        with pytest.raises(CudaError, match="symbol not found"):
            dev.load_module(CUBIN).function("conv")
        assert fake.stack() == []


def test_the_hazard_checker_runs_on_a_gpu_device_too(fake) -> None:
    with PycudaDevice(check_hazards=True) as dev:
        sa, sb = dev.stream("main"), dev.stream("aux")
        x = dev.allocate(64, "x")
        dev.memset(x, 0, sa, label="producer")
        with pytest.raises(HazardError, match="'producer' on stream 'main'"):
            dev.memset(x, 1, sb, label="consumer")


def test_no_gpu_is_one_typed_line(monkeypatch) -> None:
    _install(monkeypatch, FakeDriver(KERNELS, integrated=True, count=0))
    with pytest.raises(CudaUnavailableError, match="sees no GPU on this machine: use --device emu"):
        PycudaDevice()
    _install(monkeypatch, FakeDriver(KERNELS, integrated=True, count=1))
    with pytest.raises(CudaUnavailableError, match="no GPU 3: this machine has 1"):
        PycudaDevice(3)
