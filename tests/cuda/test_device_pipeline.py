"""cuda/device_pipeline.py: zero-copy frame buffers, two batch slots in flight, and the hazard
checker showing that neither a frame buffer nor a slot is reused while a batch still reads it.

(The detections themselves are checked against the host path in
tests/pipeline/test_worker_device.py and test_daemon_cuda_e2e.py.)
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest

from edge_infer.engine import BuildOptions, Engine, build, device_pipeline, select_device
from edge_infer.errors import BackendError, HazardError
from edge_infer.pipeline.preprocess import letterbox_geometry
from tests.pipeline.helpers import TINY_SIZE, tiny_detector


@pytest.fixture(scope="module")
def engine_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("device-pipeline")
    onnx.save(tiny_detector(), str(tmp / "tiny.onnx"))
    select_device("cuda", "emu")
    shape = (3, TINY_SIZE, TINY_SIZE)
    opts = BuildOptions(
        backend="cuda",
        backend_options={"device": "emu"},
        min_shapes={"images": (1, *shape)},
        opt_shapes={"images": (2, *shape)},
        max_shapes={"images": (2, *shape)},
        tune=False,
    )
    build(str(tmp / "tiny.onnx"), tmp / "tiny.engine", options=opts)
    return tmp / "tiny.engine"


def _open(engine_path: Path):
    ctx = Engine.load(engine_path).create_context()
    return ctx, device_pipeline(ctx, input_name="images", output_name="output0")


@pytest.fixture
def pipeline(engine_path: Path) -> Iterator:
    ctx, dp = _open(engine_path)
    yield dp
    dp.device.synchronize()
    dp.close()
    ctx.close()


@pytest.fixture
def discrete(engine_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """The emulator as a discrete GPU: pinned memory not mapped, frames copied once."""
    select_device("cuda", "emu")
    ctx = Engine.load(engine_path).create_context()
    dp0 = device_pipeline(ctx, input_name="images", output_name="output0")
    device = dp0.device  # the process's emulator (the engine's device)
    dp0.close()
    props = dataclasses.replace(device.properties, integrated=False)
    monkeypatch.setattr(device, "properties", props)
    dp = device_pipeline(ctx, input_name="images", output_name="output0")
    yield dp
    dp.device.synchronize()
    dp.close()
    ctx.close()


def _images(seed: int, count: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (90, 160, 3), dtype=np.uint8) for _ in range(count)]


def _boxes(images: list[np.ndarray]) -> list:
    return [letterbox_geometry(im.shape[1], im.shape[0], TINY_SIZE, TINY_SIZE) for im in images]


def _batch(seed: int) -> tuple[list[np.ndarray], list]:
    images = _images(seed)
    return images, _boxes(images)


def _pinned(dp, images: list[np.ndarray]) -> list[np.ndarray]:
    """The images decoded into the device's frame buffers (as a camera pool's reader does)."""
    out = []
    for im in images:
        buf = dp.allocate_frame(im.shape)
        dp.claim_frame(buf)
        buf[:] = im
        out.append(buf)
    return out


def _same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            np.testing.assert_array_equal(u, v)


def test_pooled_frames_are_read_in_place_on_an_integrated_gpu(pipeline) -> None:
    images = _images(0)
    want = pipeline.run(images, _boxes(images))
    assert (pipeline.host_frame_copies, pipeline.frame_uploads) == (2, 0)  # packed by the host
    assert any(len(b) for b, _, _ in want)  # the tiny detector finds boxes: not vacuous
    pinned = _pinned(pipeline, images)
    got = pipeline.run(pinned, _boxes(images))
    _same(got, want)
    # mapped frame buffers: no host copy, no copy to the device either
    assert (pipeline.host_frame_copies, pipeline.frame_uploads) == (2, 0)


def test_pooled_frames_take_one_async_copy_on_a_discrete_gpu(discrete) -> None:
    assert not discrete.device.is_integrated
    images = _images(1)
    want = discrete.run(images, _boxes(images))
    assert (discrete.host_frame_copies, discrete.frame_uploads) == (2, 2)
    pinned = _pinned(discrete, images)
    assert all(not discrete.device.pinned_region(b).buffer.mapped for b in pinned)
    _same(discrete.run(pinned, _boxes(images)), want)
    assert (discrete.host_frame_copies, discrete.frame_uploads) == (2, 4)  # no host copy more


def test_two_batches_in_flight_give_the_unpipelined_results(pipeline) -> None:
    batches = [_images(seed) for seed in range(5)]
    want = [pipeline.run(b, _boxes(b)) for b in batches]
    pending, got = [], []
    for b in batches:  # two in flight at a time, collected in order
        pending.append(pipeline.submit(b, _boxes(b)))
        if len(pending) == 2:
            got.append(pipeline.collect(pending.pop(0)))
    got += [pipeline.collect(t) for t in pending]
    for g, w in zip(got, want, strict=True):
        _same(g, w)
    assert pipeline.device.hazards is not None  # the checker was on throughout


def test_a_third_batch_waits_for_a_slot(pipeline) -> None:
    a, b = pipeline.submit(*_batch(0)), pipeline.submit(*_batch(1))
    with pytest.raises(BackendError, match="both batch slots"):
        pipeline.submit(*_batch(2))
    pipeline.collect(a)
    pipeline.collect(pipeline.submit(*_batch(2)))  # slot 0 free again
    pipeline.collect(b)


def _hold_engine(dp) -> threading.Event:
    """Block the pipeline's engine thread until the returned event is set (so a test decides
    what the host has seen finish)."""
    gate = threading.Event()
    dp._engine_thread.submit(gate.wait)
    return gate


def test_reusing_a_frame_buffer_before_the_device_read_it_is_a_hazard(pipeline) -> None:
    images = _images(3)
    gate = _hold_engine(pipeline)
    pinned = _pinned(pipeline, images)
    ticket = pipeline.submit(pinned, _boxes(images))
    # the broken variant: a camera writes the buffer again before the batch's read event
    with pytest.raises(HazardError, match="camera writes frame"):
        pipeline.claim_frame(pinned[0])
    # the worker's order: wait until the device has read the frames, then give them back
    pipeline.wait_frames_read(ticket)
    pipeline.claim_frame(pinned[0])
    gate.set()
    pipeline.collect(ticket)


def test_reusing_a_slot_before_its_batch_was_collected_is_a_hazard(pipeline) -> None:
    gate = _hold_engine(pipeline)
    first = pipeline.submit(*_batch(4))
    second = pipeline.submit(*_batch(5))
    # the broken variant: slot 0 taken again while its batch is still in flight
    first.slot.busy = False
    with pytest.raises(HazardError, match="stage frames"):
        pipeline.submit(*_batch(6))
    first.slot.busy = True
    gate.set()
    pipeline.collect(first)
    pipeline.collect(second)
    # collected: the slot is free and reused without a hazard
    pipeline.collect(pipeline.submit(*_batch(6)))


def test_the_device_times_each_batch(pipeline) -> None:
    ticket = pipeline.submit(*_batch(7))
    pipeline.collect(ticket)
    assert ticket.device_ms is not None and ticket.device_ms > 0


def test_the_next_batch_is_preprocessed_while_the_engine_holds_the_previous(pipeline) -> None:
    want = [pipeline.run(*_batch(seed)) for seed in (8, 9)]
    gate = _hold_engine(pipeline)  # the engine is busy (with batch k-1, say)
    first = pipeline.submit(*_batch(8))
    second = pipeline.submit(*_batch(9))  # submit does not wait for the engine
    # batch k+1's frames were copied and letterboxed while batch k has not left the engine
    pipeline.wait_frames_read(second)
    assert not first.future.done() and not second.future.done()
    gate.set()
    _same(pipeline.collect(first), want[0])
    _same(pipeline.collect(second), want[1])
