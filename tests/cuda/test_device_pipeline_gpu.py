"""The daemon's device pipeline on a real GPU (``gpu`` marker; skipped without one): what the
emulator cannot prove — frame buffers mapped in place on an integrated GPU (Jetson) or copied
once from portable pinned memory on a discrete one, and two batches in flight finishing
sooner than one at a time, with the same detections."""

from __future__ import annotations

import time

import numpy as np
import onnx
import pytest

from edge_infer.engine import BuildOptions, Engine, build, device_pipeline, select_device
from edge_infer.pipeline.preprocess import letterbox_geometry
from tests.pipeline.helpers import TINY_SIZE, tiny_detector

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu_pipeline(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("pycuda.driver")
    from edge_infer.cuda.devices import open_device
    from edge_infer.errors import CudaUnavailableError

    try:
        open_device("0")
    except CudaUnavailableError as exc:
        pytest.skip(str(exc))
    tmp = tmp_path_factory.mktemp("gpu-pipeline")
    onnx.save(tiny_detector(), str(tmp / "tiny.onnx"))
    select_device("cuda", "0")
    shape = (3, TINY_SIZE, TINY_SIZE)
    opts = BuildOptions(
        backend="cuda",
        backend_options={"device": 0},
        min_shapes={"images": (1, *shape)},
        opt_shapes={"images": (4, *shape)},
        max_shapes={"images": (4, *shape)},
        tune=False,
    )
    build(str(tmp / "tiny.onnx"), tmp / "tiny.engine", options=opts)
    ctx = Engine.load(tmp / "tiny.engine").create_context()
    dp = device_pipeline(ctx, input_name="images", output_name="output0")
    yield dp
    dp.close()
    ctx.close()
    select_device("cuda", "emu")  # the other tests run on the emulator


def _batch(seed: int, n: int = 4) -> tuple[list[np.ndarray], list]:
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8) for _ in range(n)]
    return images, [letterbox_geometry(1920, 1080, TINY_SIZE, TINY_SIZE) for _ in images]


def _same(a: list, b: list) -> None:
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            np.testing.assert_array_equal(u, v)


def test_frame_buffers_are_zero_copy_on_an_integrated_gpu(gpu_pipeline) -> None:
    dp = gpu_pipeline
    images, boxes = _batch(0)
    want = dp.run(images, boxes)
    pinned = []
    for im in images:
        buf = dp.allocate_frame(im.shape)
        buf[:] = im
        pinned.append(buf)
    copies, uploads = dp.host_frame_copies, dp.frame_uploads
    _same(dp.run(pinned, boxes), want)
    assert dp.host_frame_copies == copies  # never packed by the host
    region = dp.device.pinned_region(pinned[0])
    if dp.device.is_integrated:  # Jetson: the kernel reads the mapped buffer in place
        assert region.buffer.mapped and dp.frame_uploads == uploads
    else:  # discrete: one async copy per frame from its pinned buffer
        assert dp.frame_uploads == uploads + len(images)
    for buf in pinned:
        dp.free_frame(buf)


def test_two_batches_in_flight_beat_one_at_a_time(gpu_pipeline) -> None:
    dp = gpu_pipeline
    batches = [_batch(seed) for seed in range(12)]
    dp.run(*batches[0])  # warm
    t0 = time.perf_counter()
    want = [dp.run(*b) for b in batches]
    serial = time.perf_counter() - t0
    t0 = time.perf_counter()
    pending, got = [], []
    for b in batches:
        pending.append(dp.submit(*b))
        if len(pending) == 2:
            got.append(dp.collect(pending.pop(0)))
    got += [dp.collect(t) for t in pending]
    pipelined = time.perf_counter() - t0
    for g, w in zip(got, want, strict=True):
        _same(g, w)
    print(
        f"12 batches of 4 1080p frames: serial {serial * 1e3:.1f} ms, pipelined "
        f"{pipelined * 1e3:.1f} ms"
    )
    assert pipelined < serial
