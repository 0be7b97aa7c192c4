"""The CUDA backend on the emulator: engines built with ``backend="cuda"`` match the CPU engine,
every launch checked by the stream-order hazard checker (on by default in EmuDevice)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edge_infer.cuda.backend import CUBIN_PREFIX, MANIFEST_BLOB, CudaBackend
from edge_infer.cuda.compile import read_cubin
from edge_infer.cuda.devices import open_device, parse_device
from edge_infer.cuda.emulator import EmuLibrary
from edge_infer.engine import BuildOptions, Engine, EngineCompatibilityError, build
from edge_infer.engine.backends import get_backend
from edge_infer.errors import BackendError
from tests.cuda.backend_support import EMU, assert_close, build_pair, random_feeds, small_net

SHAPES = {
    "min_shapes": {"x": (1, 3, 12, 12)},
    "opt_shapes": {"x": (2, 3, 12, 12)},
    "max_shapes": {"x": (2, 3, 12, 12)},
}


@pytest.fixture(scope="module")
def engines():
    return build_pair(small_net(), **SHAPES)


@pytest.mark.parametrize("batch", [1, 2])
def test_small_net_matches_the_cpu_engine(engines, batch) -> None:
    cpu, cuda = engines
    feeds = random_feeds(cpu, batch)
    ref = cpu.create_context().execute(feeds)
    with cuda.create_context() as ctx:
        for _ in range(2):  # the second run replays the recorded launches
            assert_close(ctx.execute(feeds), ref)
    assert open_device("emu").hazards is not None  # every launch above was checked


def test_every_layer_has_a_kernel_and_the_graph_is_replayed(engines) -> None:
    _, cuda = engines
    graph = cuda.graph(2)
    assert graph.meta["cuda"]["host_layers"] == []
    kernels = {n.op_type: n.meta.get("cuda_kernels") for n in graph.nodes}
    assert kernels["FusedConv"] == ["ei_conv_f32_direct"]
    assert kernels["Gemm"] == ["ei_gemm_f32_32x32"]
    program = cuda.program(2)
    state = program.new_state()
    try:
        feeds = random_feeds(cuda, 2)
        program.run(state, feeds)
        program.run(state, feeds)
        assert state.graph.replays == 2 and state.graph.host_steps == 0
        assert state.graph.launches >= len(graph.meta["cuda"]["entries"])
    finally:
        state.close()


def test_uncovered_layers_run_on_the_host_fallback_and_are_listed(caplog) -> None:
    from edge_infer.engine.network import Network

    net = Network("lrn", seed=1)
    x = net.add_input("x", (1, 4, 6, 6))
    y = net.add_layer("LRN", [net.add_convolution(x, 4, 3, padding=1)], size=3)
    net.mark_output(y, "y")
    with caplog.at_level("WARNING"):
        cpu, cuda = build_pair(net)
    assert "host fallback" in caplog.text and "LRN" in caplog.text
    feeds = random_feeds(cpu, 1)
    with cuda.create_context() as ctx:
        assert_close(ctx.execute(feeds), cpu.create_context().execute(feeds))


def test_engine_file_carries_cubins_and_is_refused_for_another_device(engines, tmp_path) -> None:
    _, cuda = engines
    path = tmp_path / "m.engine"
    cuda.save(path)
    loaded = Engine.load(path)
    assert loaded.build_record["device"]["gpu"] == "emulated sm_87"
    entries = set(loaded.graph(1).meta["cuda"]["entries"])
    cubins = {k: read_cubin(v) for k, v in loaded.blobs.items() if CUBIN_PREFIX in k}
    assert cubins and all(c.sm == 87 for c in cubins.values())
    assert entries <= set().union(*(c.functions for c in cubins.values()))
    assert any(k.endswith(MANIFEST_BLOB) for k in loaded.blobs)
    feeds = random_feeds(loaded, 1)
    with loaded.create_context() as ctx, cuda.create_context() as ref:
        assert_close(ctx.execute(feeds), ref.execute(feeds), tol=0.0)
    # the same file claiming an Orin is refused here with the command that rebuilds it
    other = Engine(loaded.header, loaded.tensors, loaded.blobs)
    other.build_record["device"] = {"gpu": "Orin", "sm": "sm_87", "driver": 12020, "runtime": 12020}
    with pytest.raises(
        EngineCompatibilityError, match="edge-infer build .*--backend cuda --device emu"
    ):
        other.check_compatible()


def test_a_cubin_without_a_launched_entry_is_refused(engines) -> None:
    _, cuda = engines
    blobs = {k: v for k, v in cuda.blobs.items() if "conv_fp32" not in k}
    engine = Engine(cuda.header, cuda.tensors, blobs)
    with pytest.raises(EngineCompatibilityError, match="ei_conv_f32_direct"):
        engine.program(1)


class _FakeTimer:
    """Times a tactic by its name (the emulator's clock is not a GPU's): 32x32 tiles win."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def measure(self, run) -> float:
        run()
        self.seen.add(run.tactic)
        return 1e-6 if run.tactic == "ei_conv_f32_igemm_32x32x8" else 5e-6


def test_timed_tactic_selection_with_an_injected_timer(monkeypatch) -> None:
    from edge_infer.engine import backends

    timer = _FakeTimer()
    backend = CudaBackend(timer=timer)
    monkeypatch.setitem(backends._instances, "cuda", backend)
    net = small_net(batch=1)
    cuda = build(net, options=BuildOptions(backend="cuda", backend_options=EMU, tune=True))
    convs = [n for n in cuda.graph(1).nodes if n.op_type == "FusedConv"]
    assert {n.meta["tactic"] for n in convs} == {"ei_conv_f32_igemm_32x32x8"}
    assert all(set(n.meta["tactic_times_us"]) == timer.seen for n in convs)
    assert {"ei_conv_f32_direct", "ei_conv_f32_igemm_64x64x8"} <= timer.seen
    cpu = build(net, tune=False)
    feeds = random_feeds(cpu, 1)
    with cuda.create_context() as ctx:  # the tiled kernels computing the whole network
        assert_close(ctx.execute(feeds), cpu.create_context().execute(feeds))
    assert EmuLibrary.get().stats["ei_conv_f32_igemm_32x32x8"].launches > 0


def test_two_contexts_run_at_once(engines) -> None:
    cpu, cuda = engines
    feeds = [random_feeds(cpu, 2, seed=s) for s in (1, 2)]
    refs = [cpu.create_context().execute(f) for f in feeds]
    results: dict[int, dict] = {}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            with cuda.create_context() as ctx:
                for _ in range(2):
                    results[k] = ctx.execute(feeds[k])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k in (0, 1):
        assert_close(results[k], refs[k])


def test_device_names_and_messages() -> None:
    assert parse_device("emu") == "emu" and parse_device(1) == "1" and parse_device("0") == "0"
    for bad in ("gpu", -1, "1.5", True):
        with pytest.raises(BackendError, match="emu' or a GPU index"):
            parse_device(bad)
    backend = get_backend("cuda")
    with pytest.raises(BackendError, match="unknown CUDA backend options"):
        backend.check_options({"threads": 2})
    fresh = CudaBackend()
    if fresh.unavailable_reason() is not None:  # no pycuda here: the default GPU 0 is refused
        with pytest.raises(BackendError, match=r"edge-infer\[cuda\].*--device emu"):
            fresh.device_fingerprint()


@pytest.fixture(scope="module")
def inception():
    from edge_infer.zoo import build_inception_module

    model = build_inception_module(seed=0, batch=None, size=6)
    shapes = {
        "min_shapes": {"input": (1, 192, 6, 6)},
        "opt_shapes": {"input": (2, 192, 6, 6)},
        "max_shapes": {"input": (2, 192, 6, 6)},
    }
    return build_pair(model, **shapes)


def test_inception_branches_run_on_auxiliary_streams(inception) -> None:
    cpu, cuda = inception
    assert cuda.graph(2).meta["schedule"] == "parallel"
    program = cuda.program(2)
    state = program.new_state()
    try:
        assert state.graph.aux and state.graph.forks >= 1
        feeds = random_feeds(cpu, 2)
        assert_close(program.run(state, feeds), cpu.create_context().execute(feeds))
    finally:
        state.close()


def test_a_removed_join_event_is_caught(inception, monkeypatch) -> None:
    """Without the event that joins an auxiliary stream back, the next layer on the context's
    stream reads a branch's output unordered: the checker fails the launch naming both."""
    from edge_infer.cuda.graph_replay import LaunchGraph
    from edge_infer.errors import HazardError

    cpu, cuda = inception
    program = cuda.program(1)
    monkeypatch.setattr(LaunchGraph, "_join", lambda self, main, aux, event: None)
    state = program.new_state()
    try:
        with pytest.raises(HazardError, match="not ordered"):
            program.run(state, random_feeds(cpu, 1))
    finally:
        state.close()


def test_device_buffers_bound_in_place(engines) -> None:
    """The daemon's zero-copy path: the caller's device buffers are the input and output."""
    from edge_infer.cuda.arena import DeviceArray

    cpu, cuda = engines
    feeds = random_feeds(cpu, 2)
    ref = cpu.create_context().execute(feeds)
    program = cuda.program(2)
    device = program.device
    state = program.new_state()
    x_host = feeds["x"]
    x_buf = device.allocate(x_host.nbytes, "caller input")
    out = cuda.outputs[0]
    shape = (2, *out.shape[1:])
    y_buf = device.allocate(int(np.prod(shape)) * 4, "caller output")
    try:
        with device.stream("caller") as s:
            pinned = device.allocate_host(max(x_host.nbytes, y_buf.nbytes), "caller pinned")
            device.host_access("caller writes", writes=[pinned])
            pinned.view(np.float32, x_host.shape)[:] = x_host
            device.copy_htod(x_buf, pinned.region(0, x_host.nbytes), s)
            s.synchronize()
            x = DeviceArray(x_buf, 0, x_host.shape, np.float32)
            y = DeviceArray(y_buf, 0, shape, np.float32)
            for _ in range(2):
                results = program.run_bound(state, {"x": x}, {out.name: y})
            assert results[out.name] is y
            device.copy_dtoh(pinned.region(0, y_buf.nbytes), y_buf, s)
            s.synchronize()
            device.host_access("caller reads", reads=[pinned])
            got = pinned.view(np.float32, shape).copy()
            pinned.free()
        assert_close({out.name: got}, {out.name: ref[out.name]})
        assert_close(program.run(state, feeds), ref)  # unbound again: the arena's buffers
    finally:
        state.close()
        x_buf.free()
        y_buf.free()


def test_device_buffers_bound_through_the_execution_context(engines) -> None:
    """The public path (ExecutionContext.bind / execute_bound / enqueue) takes device arrays
    on a CUDA engine: used in place, no host copy; numpy still works, the CPU engine refuses
    a device array, and a batch without a plan of its own is refused for device buffers."""
    from edge_infer.cuda.arena import DeviceArray
    from edge_infer.errors import BindingError

    cpu, cuda = engines
    feeds = random_feeds(cpu, 2)
    ref = cpu.create_context().execute(feeds)
    out = cuda.outputs[0]
    shape = (2, *out.shape[1:])
    with cuda.create_context() as ctx:
        device = cuda.program(2).device
        x_buf = device.allocate(feeds["x"].nbytes, "caller input")
        y_buf = device.allocate(int(np.prod(shape)) * 4, "caller output")
        pinned = device.allocate_host(max(x_buf.nbytes, y_buf.nbytes), "caller pinned")
        try:
            with device.stream("caller") as s:
                device.host_access("caller writes", writes=[pinned])
                pinned.view(np.float32, feeds["x"].shape)[:] = feeds["x"]
                device.copy_htod(x_buf, pinned.region(0, x_buf.nbytes), s)
                s.synchronize()
                x = DeviceArray(x_buf, 0, feeds["x"].shape, np.float32)
                y = DeviceArray(y_buf, 0, shape, np.float32)
                ctx.bind("x", x)
                ctx.bind(out.name, y)
                assert ctx.execute_bound()[out.name] is y
                assert ctx.enqueue().result()[out.name] is y
                device.copy_dtoh(pinned.region(0, y_buf.nbytes), y_buf, s)
                s.synchronize()
                device.host_access("caller reads", reads=[pinned])
                got = pinned.view(np.float32, shape).copy()
            assert_close({out.name: got}, {out.name: ref[out.name]})
            ctx.unbind(out.name)
            bad = DeviceArray(x_buf, 0, (1, *feeds["x"].shape[1:]), np.float32)
            if 1 not in cuda.batch_sizes:
                ctx.bind("x", bad)
                with pytest.raises(BindingError, match="need a plan of that batch size"):
                    ctx.execute_bound()
            ctx.unbind("x")
            ctx.bind("x", feeds["x"])  # numpy again: copied in, as before
            assert_close(ctx.execute_bound(), ref)
        finally:
            pinned.free()
            x_buf.free()
            y_buf.free()
    with cpu.create_context() as cctx, pytest.raises(BindingError, match="numpy array, got"):
        cctx.bind("x", x)


@pytest.mark.gpu
def test_small_net_on_a_real_gpu_matches_the_cpu_engine() -> None:
    """On a machine with an NVIDIA GPU and pycuda: the engine built and tuned (tactics timed
    with CUDA events) on GPU 0 matches the CPU engine."""
    pytest.importorskip("pycuda.driver")
    from edge_infer.errors import CudaUnavailableError

    try:
        open_device("0")
    except CudaUnavailableError as exc:
        pytest.skip(str(exc))
    net = small_net()
    cpu = build(net, options=BuildOptions(tune=False, **SHAPES))
    gpu = build(net, options=BuildOptions(backend="cuda", backend_options={"device": 0}, **SHAPES))
    try:
        for batch in (1, 2):
            feeds = random_feeds(cpu, batch)
            with gpu.create_context() as ctx:
                assert_close(ctx.execute(feeds), cpu.create_context().execute(feeds))
    finally:
        get_backend("cuda").select_device("emu")  # the other tests run on the emulator


def _verify_cases():
    from edge_infer.engine import calibrate
    from edge_infer.zoo import build_model

    net = small_net()
    rng = np.random.default_rng(0)
    frames = [rng.random((1, 3, 12, 12), dtype=np.float32)] * 2
    cal = calibrate(net, frames, shapes={"x": (1, 3, 12, 12)})
    yolo = build_model("yolov8n", seed=0, batch=1, imgsz=32)
    return {
        "small-fp32": (net, {**SHAPES}, 2),
        "small-fp16": (net, {"precision": "fp16", **SHAPES}, 2),
        "small-int8": (net, {"precision": "int8", "calibration": cal.cache, **SHAPES}, 2),
        "yolov8n-fp32": (yolo, {}, 1),
    }


@pytest.mark.parametrize("case", ["small-fp32", "small-fp16", "small-int8", "yolov8n-fp32"])
def test_declared_writes_are_complete(case) -> None:
    """On an EmuDevice that runs every launch alone and fails one that changes a byte outside
    its declared writes, whole programs (strided concat slices at batch 2, scratch memory,
    reformats) run clean: the ranges the hazard checker orders are all the kernels write."""
    from edge_infer.cuda.arena import WeightStore
    from edge_infer.cuda.emu_device import EmuDevice
    from edge_infer.cuda.program import CudaProgram

    model, options, batch = _verify_cases()[case]
    cpu, cuda = build_pair(model, **options)
    if case == "yolov8n-fp32":  # every layer of YOLOv8n has a kernel
        assert cuda.graph(1).meta["cuda"]["host_layers"] == []
    with EmuDevice(verify_writes=True) as device:
        module = device.load_module(EmuLibrary.get())
        program = CudaProgram(cuda.graph(batch), device, WeightStore(device), module.function)
        state = program.new_state()
        feeds = random_feeds(cpu, batch)
        tol = 2e-3 if "fp16" in case else 1e-4
        assert_close(program.run(state, feeds), cpu.create_context().execute(feeds), tol)
        state.close()


def test_tactic_timings_are_cached_per_device(monkeypatch, tmp_path) -> None:
    """A second build with the same timing cache times nothing; the cache names the device."""
    import json

    from edge_infer.engine import backends

    cache = tmp_path / "timing.json"
    net = small_net(batch=1)
    for expect_timed in (True, False):
        timer = _FakeTimer()
        monkeypatch.setitem(backends._instances, "cuda", CudaBackend(timer=timer))
        options = BuildOptions(backend="cuda", backend_options=EMU, timing_cache=str(cache))
        engine = build(net, options=options)
        assert bool(timer.seen) is expect_timed
        convs = [n for n in engine.graph(1).nodes if n.op_type == "FusedConv"]
        assert {n.meta["tactic"] for n in convs} == {"ei_conv_f32_igemm_32x32x8"}
    data = json.loads(cache.read_text())
    assert data["device"]["gpu"] == "emulated sm_87"
    assert all(key.startswith("cuda conv") for key in data["entries"])
