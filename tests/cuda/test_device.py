"""The device layer: memory, copies, streams, events, launches, errors — the same cases on
EmuDevice (always) and on a real GPU through PycudaDevice (``gpu`` marker)."""

from __future__ import annotations

import ctypes
import re
import sys
import threading

import numpy as np
import pytest

from edge_infer.cuda.device import DeviceBuffer, HostBuffer
from edge_infer.cuda.emu_device import EmuDevice, PyModule
from edge_infer.errors import CudaError, CudaLaunchError, CudaOutOfMemoryError
from tests.cuda import device_kernels as tk


@pytest.fixture(params=tk.DEVICE_KINDS)
def cuda_device(request):
    with tk.open_device(request.param) as device:
        yield device


def _upload(device, stream, host: np.ndarray, name: str = "") -> DeviceBuffer:
    """A device buffer holding ``host`` (through a pinned staging buffer), synchronized."""
    pinned = device.allocate_host(host.nbytes, f"{name} staging")
    device.host_access("fill staging", writes=[pinned])
    pinned.view(host.dtype)[:] = host.ravel()
    buf = device.allocate(host.nbytes, name)
    device.copy_htod(buf, pinned, stream)
    stream.synchronize()
    pinned.free()
    return buf


def _download(device, stream, buf: DeviceBuffer, dtype, offset=0, nbytes=None) -> np.ndarray:
    region = buf.region(offset, nbytes)
    pinned = device.allocate_host(region.nbytes, "readback")
    device.copy_dtoh(pinned, region, stream)
    stream.synchronize()
    device.host_access("read back", reads=[pinned])
    out = pinned.view(dtype).copy()
    pinned.free()
    return out


def test_properties_describe_the_device(cuda_device) -> None:
    props = cuda_device.properties
    assert props.name and props.total_memory > 0
    assert props.sm >= (5, 0) and props.arch == f"sm_{props.sm[0]}{props.sm[1]}"
    assert isinstance(props.integrated, bool)


def test_allocations_are_256_byte_aligned_and_freed(cuda_device) -> None:
    bufs = [cuda_device.allocate(n, f"b{n}") for n in (1, 3, 1000, 4096 + 7)]
    assert all(b.ptr % 256 == 0 for b in bufs)
    for b in bufs:
        b.free()
    assert all(b.freed for b in bufs)
    with pytest.raises(CudaError, match="not a live allocation"):
        bufs[0].free()
    with pytest.raises(CudaError, match="size must be positive"):
        cuda_device.allocate(0)


def test_copies_round_trip_with_byte_ranges(cuda_device) -> None:
    rng = np.random.default_rng(0)
    host = rng.standard_normal(1000).astype(np.float32)
    with cuda_device.stream("s") as s:
        src = _upload(cuda_device, s, host, "src")
        dst = cuda_device.allocate(host.nbytes, "dst")
        cuda_device.memset(dst, 0, s)
        # bytes [400, 2400) of src into [800, 2800) of dst: ranges at offsets
        cuda_device.copy_dtod(dst.region(800, 2000), src.region(400, 2000), s)
        out = _download(cuda_device, s, dst, np.float32)
    expected = np.zeros_like(host)
    expected[200:700] = host[100:600]
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(_download_all(cuda_device, src), host)


def _download_all(device, buf) -> np.ndarray:
    with device.stream("readback") as s:
        return _download(device, s, buf, np.float32)


def test_copies_refuse_wrong_kinds_sizes_and_overlap(cuda_device) -> None:
    with cuda_device.stream() as s:
        d = cuda_device.allocate(64, "d")
        h = cuda_device.allocate_host(64, "h")
        with pytest.raises(CudaError, match="copies pinned -> device"):
            cuda_device.copy_htod(d, d, s)
        with pytest.raises(CudaError, match="32 bytes into a 64-byte region"):
            cuda_device.copy_dtoh(h, d.region(0, 32), s)
        with pytest.raises(CudaError, match="overlap"):
            cuda_device.copy_dtod(d.region(0, 32), d.region(16, 32), s)
        with pytest.raises(CudaError, match="outside 'd'"):
            d.region(60, 8)


def test_kernel_launch_reads_and_writes_device_memory(cuda_device) -> None:
    mod = tk.load(cuda_device)
    n = 777
    with cuda_device.stream("s") as s:
        a = cuda_device.allocate(4 * n, "a")
        b = cuda_device.allocate(4 * n, "b")
        cuda_device.launch(
            mod.function("fill"), 4, 128, tk.FillParams(a.ptr, n, 0, 1.5), stream=s, writes=[a]
        )
        params = tk.AddParams(a.ptr, b.ptr, n, 2.0)
        cuda_device.launch(mod.function("add"), 4, 128, params, stream=s, reads=[a], writes=[b])
        params.add = 100.0  # parameters are copied at launch: this edit must not leak in
        out = _download(cuda_device, s, b, np.float32)
    np.testing.assert_array_equal(out, np.full(n, 3.5, np.float32))


def test_two_streams_run_concurrently(cuda_device) -> None:
    """Each kernel waits for the other to start: both succeed only if the streams overlap."""
    mod = tk.load(cuda_device)
    flags = cuda_device.allocate(8, "flags")
    result = cuda_device.allocate(8, "result")
    with cuda_device.stream("a") as sa, cuda_device.stream("b") as sb:
        init = cuda_device.event("init")
        cuda_device.memset(flags, 0, sa)
        cuda_device.memset(result, 0xFF, sa)
        init.record(sa)
        sb.wait(init)
        # Each kernel reads the flag word the other writes: an intentional cross-stream
        # exchange, so each declares only its own words (declaring that read would rightly
        # be reported as a hazard).
        for me, stream in ((0, sa), (1, sb)):
            p = tk.HandshakeParams(flags.ptr, result.ptr, tk.HANDSHAKE_TIMEOUT, me, 1 - me)
            cuda_device.launch(
                mod.function("handshake"),
                1,
                1,
                p,
                stream=stream,
                writes=[flags.region(4 * me, 4), result.region(4 * me, 4)],
            )
        cuda_device.synchronize()
        out = _download(cuda_device, sa, result, np.int32)
    assert out.tolist() == [1, 1], "the two streams did not run at the same time"


def test_the_handshake_fails_when_the_kernels_are_serialized() -> None:
    """The concurrency proof can fail: on one stream the first kernel times out."""
    with EmuDevice() as dev, dev.stream("only") as s:
        mod = tk.load(dev)
        flags, result = dev.allocate(8, "flags"), dev.allocate(8, "result")
        for me in (0, 1):
            p = tk.HandshakeParams(flags.ptr, result.ptr, 200_000_000, me, 1 - me)
            dev.launch(mod.function("handshake"), 1, 1, p, stream=s, writes=[flags, result])
        out = _download(dev, s, result, np.int32)
    assert out.tolist() == [0, 1]


def test_event_orders_consumer_after_slow_producer(cuda_device) -> None:
    mod = tk.load(cuda_device)
    n = 4096
    with cuda_device.stream("producer") as sa, cuda_device.stream("consumer") as sb:
        x = cuda_device.allocate(4 * n, "x")
        y = cuda_device.allocate(4 * n, "y")
        cuda_device.memset(x, 0, sa)
        ready = cuda_device.event("x ready")
        # a slow producer (~50 ms) so an unordered consumer would read zeros
        cuda_device.launch(
            mod.function("fill"),
            8,
            128,
            tk.FillParams(x.ptr, n, 50_000_000, 7.0),
            stream=sa,
            writes=[x],
        )
        ready.record(sa)
        sb.wait(ready)
        cuda_device.launch(
            mod.function("add"),
            8,
            128,
            tk.AddParams(x.ptr, y.ptr, n, 1.0),
            stream=sb,
            reads=[x],
            writes=[y],
        )
        out = _download(cuda_device, sb, y, np.float32)
    np.testing.assert_array_equal(out, np.full(n, 8.0, np.float32))


def test_events_time_the_work_between_them(cuda_device) -> None:
    mod = tk.load(cuda_device)
    with cuda_device.stream() as s:
        x = cuda_device.allocate(4 * 256, "x")
        start, end = cuda_device.event("start"), cuda_device.event("end")
        start.record(s)
        cuda_device.launch(
            mod.function("fill"),
            1,
            256,
            tk.FillParams(x.ptr, 256, 20_000_000, 1),
            stream=s,
            writes=[x],
        )
        end.record(s)
        end.synchronize()
        assert end.query() and start.query()
        assert 0.0 < start.elapsed_ms(end) < 5_000.0


def test_pinned_buffers_are_mapped_where_the_gpu_is_integrated(cuda_device) -> None:
    h = cuda_device.allocate_host(1024, "frames")
    assert isinstance(h, HostBuffer) and h.array.nbytes == 1024
    assert h.mapped == cuda_device.properties.integrated
    if not h.mapped:
        with pytest.raises(CudaError, match="not mapped"):
            h.region().device_ptr  # noqa: B018
        return
    # zero copy: a kernel writes the pinned buffer in place, the host reads it after a sync
    mod = tk.load(cuda_device)
    with cuda_device.stream() as s:
        cuda_device.launch(
            mod.function("fill"),
            1,
            64,
            tk.FillParams(h.region().device_ptr, 256, 0, 4.0),
            stream=s,
            writes=[h],
        )
        s.synchronize()
    cuda_device.host_access("read frames", reads=[h])
    np.testing.assert_array_equal(h.view(np.float32), np.full(256, 4.0, np.float32))


def test_launch_checks_its_configuration(cuda_device) -> None:
    mod = tk.load(cuda_device)
    with cuda_device.stream() as s:
        x = cuda_device.allocate(64, "x")
        fill = mod.function("fill")
        with pytest.raises(CudaError, match="over 1024 threads"):
            cuda_device.launch(fill, 1, (32, 64), tk.FillParams(x.ptr, 16), stream=s)
        with pytest.raises(CudaError, match="within 1"):
            cuda_device.launch(fill, (1, 70000), 32, tk.FillParams(x.ptr, 16), stream=s)
        with pytest.raises(CudaError, match="ctypes struct or bytes"):
            cuda_device.launch(fill, 1, 32, {"dst": x.ptr}, stream=s)


# -- emulator-only behaviour ----------------------------------------------------------------


def test_emulated_kernel_failure_surfaces_typed_on_synchronize() -> None:
    def broken(grid, block, params, shared):
        raise ValueError("planted fault")

    dev = EmuDevice()
    mod = dev.load_module(PyModule({"broken": broken}))
    s = dev.stream("s")
    x = dev.allocate(16, "x")
    dev.launch(mod.function("broken"), 1, 1, label="conv7", stream=s, writes=[x])
    with pytest.raises(CudaLaunchError, match=r"'conv7' failed .*planted fault"):
        s.synchronize()
    with pytest.raises(CudaLaunchError):  # sticky, as after a CUDA launch failure
        dev.synchronize()
    with pytest.raises(CudaLaunchError):  # close reports it too, and still releases all
        dev.close()
    assert s.closed and x.freed


def test_verify_writes_catches_a_kernel_writing_outside_its_declaration() -> None:
    n = 64
    dev = EmuDevice(verify_writes=True)
    mod = dev.load_module(PyModule(tk.PY_KERNELS))
    s = dev.stream("s")
    arena = dev.allocate(4 * 2 * n, "arena")
    x, y = arena.region(0, 4 * n), arena.region(4 * n, 4 * n)
    dev.launch(
        mod.function("fill"),
        1,
        32,
        tk.FillParams(x.device_ptr, n, 0, 2.0),
        stream=s,
        writes=[x],
        label="fill x",
    )
    dev.launch(
        mod.function("add"),
        1,
        32,
        tk.AddParams(x.device_ptr, y.device_ptr, n, 1.0),
        stream=s,
        reads=[x],
        writes=[y],
        label="add",
    )
    s.synchronize()  # declared exactly: passes
    short = arena.region(4 * n, 4 * (n - 1))  # the plan forgot the last element
    dev.launch(
        mod.function("fill"),
        1,
        32,
        tk.FillParams(y.device_ptr, n, 0, 5.0),
        stream=s,
        writes=[short],
        label="fill y",
    )
    with pytest.raises(CudaLaunchError, match="'fill y' changed bytes of 'arena'") as info:
        s.synchronize()
    # 3.0 -> 5.0 changes one byte of the undeclared last float (bytes [8n-4, 8n))
    first, stop = map(int, re.search(r"in \[(\d+), (\d+)\) outside", str(info.value)).groups())
    assert 8 * n - 4 <= first < stop <= 8 * n
    with pytest.raises(CudaLaunchError):
        dev.close()


def test_emulated_device_memory_is_bounded() -> None:
    with EmuDevice(total_memory=1 << 20) as dev:
        dev.allocate(1 << 19, "half")
        with pytest.raises(CudaOutOfMemoryError, match="exceeds the emulated device"):
            dev.allocate(1 << 20, "too much")


def test_emulator_refuses_cubins_and_unknown_kernels() -> None:
    with EmuDevice() as dev:
        with pytest.raises(CudaError, match="cannot run cubins"):
            dev.load_module(b"\x7fELF")
        mod = dev.load_module(PyModule(tk.PY_KERNELS))
        with pytest.raises(CudaError, match="no kernel 'conv'"):
            mod.function("conv")


def test_streams_are_usable_from_any_thread() -> None:
    """The daemon's workers each drive their own stream from their own thread."""
    with EmuDevice() as dev:
        mod = dev.load_module(PyModule(tk.PY_KERNELS))
        outs: dict[int, np.ndarray] = {}

        def worker(i: int) -> None:
            with dev.stream(f"w{i}") as s:
                buf = dev.allocate(4 * 100, f"x{i}")
                dev.launch(
                    mod.function("fill"),
                    1,
                    32,
                    tk.FillParams(buf.ptr, 100, 0, i),
                    stream=s,
                    writes=[buf],
                )
                outs[i] = _download(dev, s, buf, np.float32)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(outs) == [0, 1, 2, 3]
        for i, out in outs.items():
            np.testing.assert_array_equal(out, np.full(100, i, np.float32))


def test_missing_pycuda_is_one_typed_line_saying_what_to_install(monkeypatch) -> None:
    from edge_infer.cuda import pycuda_device
    from edge_infer.errors import BackendError, CudaUnavailableError

    # A None entry makes ``import pycuda.driver`` fail as on a machine without pycuda.
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    with pytest.raises(CudaUnavailableError) as info:
        pycuda_device.PycudaDevice()
    message = str(info.value)
    assert "\n" not in message
    assert "pip install 'edge-infer[cuda]'" in message and "--device emu" in message
    assert isinstance(info.value, BackendError)


def test_importing_the_device_layer_does_not_import_pycuda() -> None:
    import subprocess

    code = (
        "import sys, edge_infer.cuda.device, edge_infer.cuda.emu_device, "
        "edge_infer.cuda.pycuda_device; print('pycuda' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_ctypes_params_reach_the_kernel_by_value() -> None:
    seen = []
    with EmuDevice() as dev:
        mod = dev.load_module(PyModule({"k": lambda g, b, p, sh: seen.append((g, b, p, sh))}))
        with dev.stream() as s:
            dev.launch(
                mod.function("k"),
                (2, 3),
                64,
                tk.FillParams(1, 2, 3, 4.0),
                stream=s,
                shared_bytes=512,
            )
            s.synchronize()
    ((grid, block, params, shared),) = seen
    assert grid == (2, 3, 1) and block == (64, 1, 1) and shared == 512
    assert isinstance(params, tk.FillParams) and (params.dst, params.n, params.value) == (1, 2, 4)
    assert ctypes.sizeof(params) == 32


@pytest.mark.parametrize("sm", [72, 87, 90])
def test_the_gpu_variants_of_the_test_kernels_compile(sm) -> None:
    """The CUDA side of the device tests compiles for every target (run without a GPU)."""
    from edge_infer.cuda.compile import read_cubin

    info = read_cubin(tk.compile_cubin(sm))
    assert info.sm == sm and set(tk.PY_KERNELS) <= info.functions
