"""Inference workers and the dispatcher that feeds them batches.

Each :class:`InferenceWorker` is a thread with its own ``ExecutionContext``. On the CPU it
owns a preallocated input batch: preprocessing writes every frame straight into its slot of
that buffer, the context runs, and postprocessing maps the boxes back to each camera's
pixels. Several workers run at once, so one batch's pre/postprocessing overlaps another's
inference.

On a device (the CUDA backend) a worker pipelines its batches: it owns the engine's device
pipeline (one stream, two batch slots) and a collector thread. The worker thread submits a
batch (its frames' copy and pre-processing enqueued on the stream) and takes the next one
while the first is still in the engine; the collector waits for each batch in order,
releases its frames to their cameras' pools once the device has read them, and publishes
the detections. A worker holds at most two batches, so it offers itself to the dispatcher
twice (one *slot* each); on the CPU, once.

The :class:`Dispatcher` takes an idle worker slot first and only then forms a batch: while
all are busy, frames stay in the cameras' one-slot buffers (newer replacing older), so
backpressure turns into counted drops at the source, never into a growing queue.

Whoever ends a frame's life releases its buffer (``Frame.release``): the worker does, once
preprocessing (host) or the device has read the frame, and for a batch that failed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_infer.engine import device_pipeline
from edge_infer.errors import ConfigError
from edge_infer.pipeline.batcher import DeadlineBatcher, LatencyModel
from edge_infer.pipeline.config import PostprocessConfig
from edge_infer.pipeline.frames import Frame, FrameHub
from edge_infer.pipeline.postprocess import Detections, decode
from edge_infer.pipeline.preprocess import Letterbox, letterbox_geometry, preprocess

if TYPE_CHECKING:
    from edge_infer.engine import Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """What the workers need to know about the engine's bindings."""

    input_name: str
    output_name: str
    input_width: int
    input_height: int
    min_batch: int
    max_batch: int

    @staticmethod
    def from_engine(
        engine: Engine, input_name: str | None = None, output_name: str | None = None
    ) -> ModelSpec:
        """Read the image input (``[N, 3, H, W]`` float32) and detections output bindings."""
        inputs = {b.name: b for b in engine.inputs}
        outputs = {b.name: b for b in engine.outputs}
        iname = input_name or engine.inputs[0].name
        oname = output_name or engine.outputs[0].name
        if iname not in inputs:
            raise ConfigError(
                f"engine.input_name: the engine has no input {iname!r}; inputs are {sorted(inputs)}"
            )
        if oname not in outputs:
            raise ConfigError(
                f"engine.output_name: the engine has no output {oname!r}; "
                f"outputs are {sorted(outputs)}"
            )
        b = inputs[iname]
        if len(b.shape) != 4 or b.shape[1] != 3 or b.dtype != np.float32 or min(b.shape[2:]) < 1:
            raise ConfigError(f"engine input {b}: the daemon needs float32 [N, 3, H, W] images")
        p = engine.profile
        return ModelSpec(iname, oname, int(b.shape[3]), int(b.shape[2]), p.min_batch, p.max_batch)


@dataclass
class FrameResult:
    """One frame's detections, in its own pixels."""

    frame: Frame
    detections: Detections
    letterbox: Letterbox


@dataclass
class BatchResult:
    """A finished batch, with the times its stages started and ended."""

    frames: list[FrameResult]
    worker: int
    infer_start_ts: float  # monotonic
    infer_end_ts: float
    infer_start_wall: float  # epoch
    infer_end_wall: float


def device_pipeline_for(context: Any, spec: ModelSpec, post: PostprocessConfig) -> Any:
    """The backend's device pipeline for ``context`` with the model's bindings and the
    postprocess settings; None where the backend has none (the CPU)."""
    return device_pipeline(
        context,
        input_name=spec.input_name,
        output_name=spec.output_name,
        layout=post.layout,
        score_threshold=post.score_threshold,
        iou_threshold=post.iou_threshold,
        max_detections=post.max_detections,
        scores=post.scores,
    )


class InferenceWorker:
    """One thread and one ``ExecutionContext``; on the CPU one preallocated input batch, on a
    device a pipeline of two batches in flight and a collector thread."""

    def __init__(
        self,
        index: int,
        engine: Engine,
        spec: ModelSpec,
        post: PostprocessConfig,
        color_order: str,
        on_result: Callable[[BatchResult], None],
        on_done: Callable[[InferenceWorker, int, float, bool], None],
        clock: Callable[[], float] = time.monotonic,
        *,
        pipelined: bool = True,
    ) -> None:
        self.index = index
        self.spec = spec
        self.post = post
        self.bgr = color_order == "bgr"
        self.on_result = on_result
        self.on_done = on_done
        self.clock = clock
        self.engine = engine
        self.context = engine.create_context()
        # on a GPU, frames go to the device as uint8 and come back as detections: the
        # engine's backend letterboxes into its bound input and decodes + NMS-filters there
        # (None on the CPU; a BGR model keeps the host path, the kernel writes RGB)
        self.device = None if self.bgr else device_pipeline_for(self.context, spec, post)
        if self.device is not None:
            log.info("worker %d: pre- and post-processing on the engine's device", index)
        #: batches this worker holds at once: two on a device (double buffering), else one
        self.slots = 2 if self.device is not None and pipelined else 1
        # the batch buffer is bound to the engine's input and read in place: preprocessing
        # writes each frame into it once, and nothing copies it again. Zeroed, not empty: rows
        # past a batch's frames pad it to a planned batch size (their results are dropped).
        shape = (spec.max_batch, 3, spec.input_height, spec.input_width)
        self.buffer = np.zeros(shape if self.device is None else (0, *shape[1:]), np.float32)
        out = next(b for b in engine.outputs if b.name == spec.output_name)
        self.output = (
            np.zeros((spec.max_batch, *out.shape[1:]), out.dtype)
            if out.batched and self.device is None
            else None
        )
        self.errors = 0
        self._inbox: queue.Queue[list[Frame] | None] = queue.Queue(maxsize=self.slots)
        self._thread = threading.Thread(target=self._loop, name=f"worker-{index}", daemon=True)
        # the device path's batches in flight, in submission order, for the collector
        self._flight: queue.Queue[_InFlight | None] = queue.Queue()
        self._collector = (
            threading.Thread(target=self._collect_loop, name=f"collector-{index}", daemon=True)
            if self.slots > 1
            else None
        )

    def start(self) -> None:
        self._thread.start()
        if self._collector is not None:
            self._collector.start()

    def submit(self, batch: list[Frame]) -> None:
        self._inbox.put(batch)

    def stop(self) -> None:
        self._inbox.put(None)

    def join(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in (self._thread, self._collector):
            if thread is not None and thread.ident is not None:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t is not None and t.is_alive() for t in (self._thread, self._collector))

    def run_batch(self, batch: list[Frame]) -> BatchResult:
        """Preprocess, execute and postprocess one batch, then release its frames (called by
        the worker thread; on a device, with no other batch of this worker in flight)."""
        if self.device is not None:
            return self._finish(self._submit(batch))
        try:
            return self._run_on_host(batch)
        finally:
            for f in batch:
                f.release()

    def _run_on_host(self, batch: list[Frame]) -> BatchResult:
        n = len(batch)
        size = (self.spec.input_width, self.spec.input_height)
        t0, w0 = self.clock(), time.time()
        boxes = []
        for i, f in enumerate(batch):
            # a BGR model gets the channels written in reverse order: still one pass
            _, lb = preprocess(
                f.image, size, out=self.buffer[i, ::-1] if self.bgr else self.buffer[i]
            )
            boxes.append(lb)
            f.release()  # copied into the batch: the camera may reuse its buffer
        # the engine has plans for some batch sizes only: the rows past the frames pad the
        # batch to the next one (earlier frames or zeros; their results are not read)
        m = self.engine.plan_batch_for(max(n, self.spec.min_batch))
        self.context.bind(self.spec.input_name, self.buffer[:m])
        if self.output is not None:
            self.context.bind(self.spec.output_name, self.output[:m])
        outputs = self.context.execute_bound()
        dets = decode(
            outputs[self.spec.output_name][:n],
            boxes,
            layout=self.post.layout,
            score_threshold=self.post.score_threshold,
            iou_threshold=self.post.iou_threshold,
            max_detections=self.post.max_detections,
            scores=self.post.scores,
        )
        results = [FrameResult(f, d, lb) for f, d, lb in zip(batch, dets, boxes)]
        return BatchResult(results, self.index, t0, self.clock(), w0, time.time())

    # -- the device path: submit, then collect in order ----------------------------------------
    def _submit(self, batch: list[Frame]) -> _InFlight:
        """Enqueue the batch on the device (frames letterboxed there, then the engine and
        decode + NMS; same letterboxes and decisions as the host path). Its frames are
        released if it cannot be submitted."""
        t0, w0 = self.clock(), time.time()
        w, h = self.spec.input_width, self.spec.input_height
        try:
            boxes = [letterbox_geometry(f.image.shape[1], f.image.shape[0], w, h) for f in batch]
            ticket = self.device.submit([f.image for f in batch], boxes)
        except BaseException:
            for f in batch:
                f.release()
            raise
        return _InFlight(batch, boxes, ticket, t0, w0)

    def _finish(self, job: _InFlight) -> BatchResult:
        """Wait for a submitted batch: release its frames once the device has read them,
        then its detections."""
        try:
            self.device.wait_frames_read(job.ticket)
        except BaseException:
            self.device.discard(job.ticket)  # its slot is free again
            raise
        finally:
            # read (or the device failed: nothing reads them any more)
            for f in job.batch:
                f.release()
        found = self.device.collect(job.ticket)
        raw = job.ticket.raw_score_above_1
        if raw is not None:
            _warn_scores_above_1(raw)
        results = [
            FrameResult(f, Detections(*d), lb)
            for f, d, lb in zip(job.batch, found, job.boxes, strict=True)
        ]
        return BatchResult(results, self.index, job.t0, self.clock(), job.w0, time.time())

    def _loop(self) -> None:
        while True:
            batch = self._inbox.get()
            if batch is None:
                break
            if self._collector is not None:
                try:
                    self._flight.put(self._submit(batch))
                except Exception:
                    self._failed(batch, self.clock())
                continue
            t0 = self.clock()
            ok = True
            try:
                self.on_result(self.run_batch(batch))
            except Exception:  # one bad batch must not kill the worker: count, log, go on
                ok = False
                self.errors += 1
                log.exception("worker %d: batch of %d failed", self.index, len(batch))
            self.on_done(self, len(batch), self.clock() - t0, ok)
        if self._collector is not None:
            self._flight.put(None)  # the collector drains what is in flight, then closes
            return
        self._close()

    def _collect_loop(self) -> None:
        while (job := self._flight.get()) is not None:
            try:
                result = self._finish(job)
            except Exception:
                self._failed(job.batch, job.t0)
                continue
            ok = True
            try:
                self.on_result(result)
            except Exception:
                ok = False
                self.errors += 1
                log.exception("worker %d: publishing a batch failed", self.index)
            self.on_done(self, len(job.batch), self.clock() - job.t0, ok)
        self._close()

    def _failed(self, batch: list[Frame], t0: float) -> None:
        # one bad batch must not kill the worker: count, log, go on
        self.errors += 1
        log.exception("worker %d: batch of %d failed", self.index, len(batch))
        self.on_done(self, len(batch), self.clock() - t0, False)

    def _close(self) -> None:
        if self.device is not None:
            self.device.close()
        self.context.close()


@dataclass
class _InFlight:
    """A batch submitted to the device, waiting to be collected."""

    batch: list[Frame]
    boxes: list[Letterbox]
    ticket: Any
    t0: float
    w0: float


_warned_scores = False  # once per process, as postprocess.decode warns on the host path


def _warn_scores_above_1(raw: float) -> None:
    """The host path's warning (postprocess.decode) for the device path: the device decode
    clips published scores into [0, 1] as the host does, and reports a raw one above 1."""
    global _warned_scores
    if not _warned_scores:
        _warned_scores = True
        log.warning(
            "detector scores above 1 (up to %.3g) with postprocess.scores: "
            "probabilities; the model likely outputs logits (set "
            "postprocess.scores: logits); published scores are clipped to 1",
            raw,
        )


class WorkerPool:
    """The workers, a queue of idle ones, and a count of batches in flight."""

    def __init__(
        self,
        engine: Engine,
        spec: ModelSpec,
        count: int,
        post: PostprocessConfig,
        color_order: str,
        on_result: Callable[[BatchResult], None],
        latency: LatencyModel,
        on_batch_done: Callable[[int, bool], None],
    ) -> None:
        self.latency = latency
        self.on_batch_done = on_batch_done
        self.idle: queue.Queue[InferenceWorker] = queue.Queue()
        self._cond = threading.Condition()
        self.in_flight = 0
        self.workers = [
            InferenceWorker(i, engine, spec, post, color_order, on_result, self._done)
            for i in range(count)
        ]
        # one entry per batch a worker can hold: a device worker takes its next batch while
        # the previous one is in flight
        for k in range(max(w.slots for w in self.workers)):
            for w in self.workers:
                if w.slots > k:
                    self.idle.put(w)

    def start(self) -> None:
        for w in self.workers:
            w.start()

    def submit(self, worker: InferenceWorker, batch: list[Frame]) -> None:
        with self._cond:
            self.in_flight += 1
        worker.submit(batch)

    def _done(self, worker: InferenceWorker, n: int, seconds: float, ok: bool) -> None:
        if ok:
            self.latency.observe(n, seconds)
        self.on_batch_done(n, ok)
        with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()
        self.idle.put(worker)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no batch is in flight; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def stop(self, timeout: float) -> None:
        for w in self.workers:
            w.stop()
        deadline = time.monotonic() + timeout
        for w in self.workers:
            w.join(max(0.0, deadline - time.monotonic()))


class Dispatcher:
    """Thread: idle worker → frames from the hub → batcher decision → worker."""

    def __init__(self, hub: FrameHub, batcher: DeadlineBatcher, pool: WorkerPool) -> None:
        self.hub = hub
        self.batcher = batcher
        self.pool = pool
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Stop forming batches; the frames already pending go out in a last batch."""
        self._stop.set()
        with self.hub.cond:
            self.hub.cond.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _next_batch(self) -> list[Frame]:
        with self.hub.cond:
            while not self._stop.is_set():
                self.batcher.add(self.hub.take_all())
                batch, wait = self.batcher.poll()
                if batch:
                    return batch
                # woken by a new frame or by the deadline, whichever is first
                self.hub.cond.wait(min(wait, 0.25))
            self.batcher.add(self.hub.take_all())
            return self.batcher.flush()

    def _loop(self) -> None:
        while True:
            try:
                worker = self.pool.idle.get(timeout=0.25)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            batch = self._next_batch()
            if batch:
                self.pool.submit(worker, batch)
            else:
                self.pool.idle.put(worker)
            # draining: what is still pending goes out, then no more batches
            if self._stop.is_set() and not batch and not self.batcher.pending():
                return
