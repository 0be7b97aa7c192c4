"""The worker on a CUDA engine, pipelined (issue 15 §2-3; the emulator, hazard checker on):
two batches in flight give the detections of one at a time; frames decoded into the device's
pinned buffers (a camera's FramePool) need no host copy; a frame buffer goes back to its pool
only after the device has read it — releasing earlier is what the checker refuses; a logit
model's scores are clipped and warned about as on the host path; the warm-up seeds the
batcher's latency model from the device."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edge_infer.engine import Engine
from edge_infer.pipeline import workers as workers_module
from edge_infer.pipeline.batcher import LatencyModel
from edge_infer.pipeline.config import PostprocessConfig
from edge_infer.pipeline.frames import Frame, FramePool
from edge_infer.pipeline.warmup import warm_up_device
from edge_infer.pipeline.workers import BatchResult, InferenceWorker, ModelSpec
from tests.pipeline.helpers import tiny_detector
from tests.pipeline.test_worker_device import _engine, _frames


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return _engine(tmp_path_factory.mktemp("pipelined"), "fp32")


class _Run:
    """A pipelined worker fed like the dispatcher feeds it: one batch per free slot."""

    def __init__(self, engine: Engine, post: PostprocessConfig, cls=InferenceWorker) -> None:
        self.results: list[BatchResult] = []
        self.slots = threading.Semaphore(2)  # the dispatcher's idle tokens
        self.oks: list[bool] = []
        self.finished = threading.Event()  # a batch is done
        spec = ModelSpec.from_engine(engine)
        self.worker = cls(0, engine, spec, post, "rgb", self.results.append, self._done)
        assert self.worker.slots == 2

    def _done(self, worker: InferenceWorker, n: int, seconds: float, ok: bool) -> None:
        self.oks.append(ok)
        self.finished.set()
        self.slots.release()

    def run(self, batches: list[list[Frame]]) -> list[BatchResult]:
        self.worker.start()
        for batch in batches:
            self.slots.acquire()
            self.worker.submit(batch)
        self.worker.stop()
        assert self.worker.join(60)
        return self.results


def _pool(dp, count: int = 4) -> FramePool:
    return FramePool(count, dp.allocate_frame, free=dp.free_frame, claim=dp.claim_frame)


def _pooled(images: list[np.ndarray], pools: dict[str, FramePool], *, eager: bool) -> list[Frame]:
    """Frames as a camera reader makes them from its pool. ``eager``: the camera writes each
    released buffer again at once (the worst case: the hazard checker sees a camera write
    right after every release)."""
    frames = []
    for i, im in enumerate(images):
        cam = f"c{i}"
        pool = pools[cam]
        buf = pool.acquire(*im.shape[:2])
        assert buf is not None
        buf[:] = im

        def recycle(pool: FramePool = pool, buf: np.ndarray = buf) -> None:
            pool.release(buf)
            if eager:
                again = pool.acquire(*buf.shape[:2])  # claims it: checked by the emulator
                pool.release(again)

        frames.append(Frame(cam, i + 1, buf, 0.0, 0.0, recycle=recycle))
    return frames


def _detections(results: list[BatchResult]) -> list[tuple]:
    return [
        (r.detections.boxes.tolist(), r.detections.scores.tolist(), r.detections.classes.tolist())
        for b in results
        for r in b.frames
    ]


SIZES = (1, 3, 2, 4, 2, 1)


def test_pipelined_worker_on_pooled_frames_equals_one_batch_at_a_time(engine: Engine) -> None:
    post = PostprocessConfig(max_detections=3)
    spec = ModelSpec.from_engine(engine)
    plain = InferenceWorker(0, engine, spec, post, "rgb", print, print, pipelined=False)
    assert plain.slots == 1
    batches = [_frames(n) for n in SIZES]
    want = [plain.run_batch([Frame("c", 1, im, 0.0, 0.0) for im in b]) for b in batches]
    assert plain.device.host_frame_copies == sum(SIZES)  # ordinary frames: packed by the host
    plain._close()

    run = _Run(engine, post)
    dp = run.worker.device
    pools = {f"c{i}": _pool(dp, len(SIZES)) for i in range(max(SIZES))}
    got = run.run([_pooled(b, pools, eager=True) for b in batches])
    assert run.oks == [True] * len(SIZES) and run.worker.errors == 0
    assert _detections(got) == _detections(want)
    assert any(len(r.detections) for b in got for r in b.frames)  # not vacuously equal
    # zero copy: the kernel read every frame in its pinned buffer (mapped on the emulated
    # integrated GPU), and every buffer went back to its pool
    assert (dp.host_frame_copies, dp.frame_uploads) == (0, 0)
    assert all(p.in_use() == 0 for p in pools.values())


class _ReleasesTooEarly(InferenceWorker):
    """The broken variant: frames released as soon as the batch is submitted."""

    def _submit(self, batch: list[Frame]):
        job = super()._submit(batch)
        for f in batch:
            f.release()
        return job


def test_releasing_a_frame_before_the_device_read_it_is_caught(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    run = _Run(engine, PostprocessConfig(), _ReleasesTooEarly)
    dp = run.worker.device
    pools = {f"c{i}": _pool(dp) for i in range(2)}
    gate = threading.Event()
    dp._engine_thread.submit(gate.wait)  # the device has not got past the batch's reads
    batch = _pooled(_frames(2), pools, eager=True)
    with caplog.at_level(logging.ERROR, logger="edge_infer.pipeline.workers"):
        run.worker.start()
        run.worker.submit(batch)
        assert run.finished.wait(30)  # the batch is done (failed) while the device is held
        gate.set()
        run.worker.stop()
        assert run.worker.join(60)
    assert run.oks == [False] and run.worker.errors == 1
    # failed by the checker: the camera's write raced the device's read of the buffer
    text = "\n".join(r.getMessage() + str(r.exc_info and r.exc_info[1]) for r in caplog.records)
    assert "stream-order hazard" in text and "camera writes frame" in text, text


def _logit_engine(folder: Path) -> Engine:
    model = tiny_detector()
    for init in model.graph.initializer:
        if init.name == "const":
            const = numpy_helper.to_array(init).copy()
            const[0, 4:][const[0, 4:] > 0] = 3.0  # a raw logit where a probability was
            init.CopyFrom(numpy_helper.from_array(const, "const"))
    folder.mkdir()
    onnx.save(model, str(folder / "tiny.onnx"))
    import tests.pipeline.test_worker_device as twd

    original = twd.tiny_detector
    twd.tiny_detector = lambda: model
    try:
        return _engine(folder, "fp32")
    finally:
        twd.tiny_detector = original


def test_logit_scores_are_clipped_and_warned_about_once_on_the_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    engine = _logit_engine(tmp_path / "logits")
    monkeypatch.setattr(workers_module, "_warned_scores", False)
    spec = ModelSpec.from_engine(engine)
    worker = InferenceWorker(0, engine, spec, PostprocessConfig(), "rgb", print, print)
    with caplog.at_level(logging.WARNING, logger="edge_infer.pipeline.workers"):
        for n in (2, 1):
            frames = [Frame("c", 1, im, 0.0, 0.0) for im in _frames(n)]
            result = worker._finish(worker._submit(frames))
            scores = np.concatenate([r.detections.scores for r in result.frames])
            assert scores.size and (scores == 1.0).all()  # clipped, as the host path clips
    warnings = [r.getMessage() for r in caplog.records if "scores above 1" in r.getMessage()]
    assert len(warnings) == 1 and "up to 3" in warnings[0], warnings
    worker._close()


def test_probability_scores_do_not_warn(engine: Engine, monkeypatch, caplog) -> None:
    monkeypatch.setattr(workers_module, "_warned_scores", False)
    spec = ModelSpec.from_engine(engine)
    worker = InferenceWorker(0, engine, spec, PostprocessConfig(), "rgb", print, print)
    with caplog.at_level(logging.WARNING):
        worker.run_batch([Frame("c", 1, im, 0.0, 0.0) for im in _frames(2)])
    assert not [r for r in caplog.records if "scores above 1" in r.getMessage()]
    worker._close()


def test_cuda_warm_up_seeds_every_planned_batch_size_from_the_device(engine: Engine) -> None:
    latency = LatencyModel(default_s=123.0)
    spec = ModelSpec.from_engine(engine)
    sizes = engine.batch_sizes
    assert warm_up_device(engine, spec, PostprocessConfig(), latency, sizes)
    seeded = latency.snapshot()
    assert sorted(seeded) == sorted(sizes)
    assert all(0 < s < 123.0 for s in seeded.values())  # measured, not the default


def test_a_batch_that_cannot_be_submitted_releases_its_frames(engine: Engine) -> None:
    run = _Run(engine, PostprocessConfig())
    released: list[str] = []
    bad = Frame("c0", 1, np.zeros((8, 8, 3), np.float32), 0.0, 0.0)  # not uint8
    bad.recycle = lambda: released.append("bad")
    good = _frames(1)
    results = run.run([[bad], [Frame("c1", 1, good[0], 0.0, 0.0)]])
    assert run.oks == [False, True] and run.worker.errors == 1
    assert released == ["bad"] and len(results) == 1  # the worker goes on with the next
