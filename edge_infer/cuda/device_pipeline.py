"""Frames → detections on the device, around one execution context of a CUDA engine.

What the daemon's workers run when the engine's backend is cuda (reached through
``edge_infer.engine.device_pipeline``; the pipeline never imports this package):

1. the batch's uint8 BGR frames reach the device: a frame decoded into one of this device's
   frame buffers (:meth:`allocate_frame`, the cameras' pools) is read in place by the kernel
   where the GPU is integrated (mapped pinned memory, zero copy) or copied once, async, from
   its pinned buffer where it is discrete; any other frame is first packed by the host into a
   pinned staging buffer (the one host copy pools avoid);
2. the batch pre-processing kernel (``params/preprocess.py``: letterbox, BGR→RGB, 1/255,
   NCHW) writes the batch slot's input buffer;
3. that input is copied (device to device) into the buffer bound to the engine's input and
   the engine runs on it (``ExecutionContext.bind``);
4. the decode + NMS kernel (``params/postprocess.py``, decision-identical with
   ``pipeline/postprocess.py:decode``) reads the bound output on the device;
5. only the compact arrays come back: ``counts``, then the kept boxes, scores and classes.

Pipelining (issue 15 §3): two batch *slots*, each with its own staging, input, workspace
and results buffers and events. :meth:`submit` enqueues steps 1-2 of a batch on this
pipeline's stream and hands steps 3-5 to the pipeline's engine thread (the engine's run
blocks its caller), so the copy and pre-processing of batch k+1 run while batch k is in the
engine; :meth:`collect` returns a batch's detections, in submission order.
:meth:`wait_frames_read` returns once the device has read a batch's frames (the slot's
``read`` event, recorded after the last step reading them): only then may a camera's pool
hand the buffers out again. Ordering, as the hazard checker sees it: the engine thread
synchronizes an event recorded after step 3 before the engine runs (so the engine reads a
complete input, and the previous batch's decode has read the engine's output); the engine's
run ends with its stream synchronized before the next copy into its input; a slot is reused
only after its ``done`` event (recorded after step 5's copy) was synchronized by collect.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_infer.cuda import library
from edge_infer.cuda.arena import DeviceArray
from edge_infer.cuda.device import Device, DeviceBuffer, HostBuffer, Region
from edge_infer.cuda.library import KernelCall
from edge_infer.cuda.params import postprocess as pp
from edge_infer.cuda.params import preprocess as pre
from edge_infer.errors import BackendError

#: threads per postprocess block (one block per image)
POST_BLOCK = 256
#: candidates entering NMS per image, as ``pipeline/postprocess.py:decode``'s default
MAX_CANDIDATES = 4096
#: batches whose clipped scores are checked against the raw ones, per pipeline (a probability
#: model saturating at exactly 1.0 must not cost a copy per batch for ever)
MAX_CLIP_CHECKS = 16

_functions: dict[int, Any] = {}
_functions_lock = threading.Lock()


def kernel_function(device: Device, entry: str) -> Any:
    """``entry`` of the kernel library, loaded once per device (the emulated library on the
    emulator, the source's cubin compiled for this SM by NVRTC, cached on disk, on a GPU)."""
    with _functions_lock:
        loaded = _functions.setdefault(id(device), {})
        if entry not in loaded:
            spec = library.get(entry)
            if device.properties.emulated:
                from edge_infer.cuda.emulator import EmuLibrary

                module = device.load_module(EmuLibrary.get(), "kernel library (emulated)")
            else:
                from edge_infer.cuda.compile import compile_source

                sm = device.properties.sm[0] * 10 + device.properties.sm[1]
                cubin, _ = compile_source(spec.path, sm)
                module = device.load_module(cubin.read_bytes(), spec.source)
            loaded[entry] = module.function(entry)
        return loaded[entry]


class _Staged:
    """A pinned host buffer and a device buffer of the same size, grown on demand."""

    def __init__(self, device: Device, name: str) -> None:
        self.device = device
        self.name = name
        self.host: HostBuffer | None = None
        self.dev: DeviceBuffer | None = None

    def ensure(self, nbytes: int, device_side: bool = True) -> tuple[HostBuffer, DeviceBuffer]:
        """The two buffers, at least ``nbytes`` each (without ``device_side``, where kernels
        read the mapped pinned buffer in place, the device buffer may be None)."""
        if (
            self.host is None
            or self.host.nbytes < nbytes
            or (device_side and (self.dev is None or self.dev.nbytes < nbytes))
        ):
            self.close()
            size = max(256, 1 << (int(nbytes) - 1).bit_length())  # doubling: few reallocations
            self.host = self.device.allocate_host(size, f"{self.name} (pinned)")
            if device_side:
                self.dev = self.device.allocate(size, self.name)
        return self.host, self.dev  # type: ignore[return-value]

    def close(self) -> None:
        for buffer in (self.host, self.dev):
            if buffer is not None and not buffer.freed:
                self.device.free(buffer)
        self.host = self.dev = None


class _Mapped:
    """A frame in mapped pinned memory as the frame table sees it: a device address."""

    def __init__(self, region: Region, shape: tuple[int, ...]) -> None:
        self.gpudata = region.device_ptr
        self.shape = shape
        self.dtype = np.dtype(np.uint8)
        self.strides = (shape[1] * 3, 3, 1)


class _Slot:
    """One batch in flight: its staging, input, decode workspace, results and events."""

    def __init__(self, device: Device, index: int, input_bytes: int, ws: int, results: int):
        name = f"slot {index}"
        self.index = index
        self.frames = _Staged(device, f"frames ({name})")
        self.tables = _Staged(device, f"frame table + letterboxes ({name})")
        self.input = device.allocate(input_bytes, f"pipeline input ({name})")
        self.workspace = device.allocate(ws, f"postprocess workspace ({name})")
        self.results = device.allocate(results, f"detections ({name})")
        self.results_host = device.allocate_host(results, f"detections ({name}, pinned)")
        self.start = device.event(f"batch start ({name})")
        self.read = device.event(f"frames read ({name})")
        self.done = device.event(f"batch done ({name})")
        self.busy = False

    def buffers(self) -> tuple[Any, ...]:
        return (self.input, self.workspace, self.results, self.results_host)

    def close(self, device: Device) -> None:
        self.frames.close()
        self.tables.close()
        for buffer in self.buffers():
            if not buffer.freed:
                device.free(buffer)
        for event in (self.start, self.read, self.done):
            event.close()


@dataclass
class Ticket:
    """A submitted batch: what :meth:`CudaDevicePipeline.collect` needs."""

    slot: _Slot
    n: int
    future: Future
    #: device milliseconds from the batch's first copy to its results' copy (events), set by
    #: collect
    device_ms: float | None = None
    #: the highest raw score among kept detections when one was clipped to 1 (a probability
    #: model that outputs logits), set by collect; None otherwise
    raw_score_above_1: float | None = None


class CudaDevicePipeline:
    """One worker's device pre/post-processing around ``context`` (one worker thread submits,
    one collects, in order). Settings are ``pipeline/postprocess.py:decode``'s."""

    #: batches in flight at once (double buffering)
    SLOTS = 2

    def __init__(
        self,
        device: Device,
        context: Any,
        *,
        input_name: str,
        output_name: str,
        layout: str,
        score_threshold: float,
        iou_threshold: float,
        max_detections: int,
        scores: str,
    ) -> None:
        engine = context.engine
        inp = {b.name: b for b in engine.inputs}[input_name]
        out = {b.name: b for b in engine.outputs}[output_name]
        if np.dtype(inp.dtype) != np.float32 or np.dtype(out.dtype) != np.float32:
            raise BackendError(
                f"device pre/post-processing needs a float32 input and output, got "
                f"{inp.dtype} '{input_name}' and {out.dtype} '{output_name}'"
            )
        if layout not in pp.LAYOUTS:
            raise BackendError(f"unknown output layout {layout!r}; expected {list(pp.LAYOUTS)}")
        self.device = device
        self.context = context
        self.engine = engine
        self.input_name, self.output_name = input_name, output_name
        self.layout = layout
        self.scores = scores
        self.settings = {
            "score_threshold": float(score_threshold),
            "iou_threshold": float(iou_threshold),
            "max_detections": int(max_detections),
            "score_kind": scores,
            "max_candidates": MAX_CANDIDATES,
            "block": POST_BLOCK,
        }
        n = engine.profile.max_batch
        self.in_shape = tuple(int(d) for d in inp.shape[1:])
        self.out_shape = tuple(int(d) for d in out.shape[1:])
        anchors = self.out_shape[1] if layout == "yolov8" else self.out_shape[0]
        self.ws = pp.workspace_layout(anchors, MAX_CANDIDATES)
        k = int(max_detections)
        self.stream = device.stream("device pipeline")
        f32 = np.dtype(np.float32)
        self.image_bytes = int(np.prod(self.in_shape)) * 4
        self.input = device.allocate(n * self.image_bytes, "engine input")
        self.output = device.allocate(n * int(np.prod(self.out_shape)) * 4, "engine output")
        # the compact results, one device buffer: counts, boxes, scores, classes
        self.result_layout = {
            "counts": (0, (n,), np.int32),
            "boxes": (_align(4 * n), (n, k, 4), f32),
            "scores": (_align(4 * n) + _align(16 * n * k), (n, k), f32),
            "classes": (_align(4 * n) + _align(16 * n * k) + _align(4 * n * k), (n, k), np.int32),
        }
        self.results_size = self.result_layout["classes"][0] + _align(4 * n * k)
        self.slots = [
            _Slot(device, i, n * self.image_bytes, n * self.ws.stride, self.results_size)
            for i in range(self.SLOTS)
        ]
        self._next = 0
        self._staged = device.event("engine input staged")
        self._engine_thread = ThreadPoolExecutor(1, thread_name_prefix="device-pipeline-engine")
        #: frames the host packed into staging (frames not in this device's frame buffers),
        #: and host -> device frame copies: what zero-copy frame buffers save (tests count)
        self.host_frame_copies = 0
        self.frame_uploads = 0
        self._clip_checks = 0
        # rows past a batch's frames pad it to a planned size: zeros, never garbage
        device.memset(self.input, 0, self.stream, label="zero input")
        for slot in self.slots:
            device.memset(slot.input, 0, self.stream, label="zero slot input")
        self.stream.synchronize()

    # -- frame buffers (the cameras' pools) ----------------------------------------------------
    def allocate_frame(self, shape: tuple[int, int, int]) -> np.ndarray:
        """A camera frame buffer the device reads directly (``FramePool``'s allocate)."""
        return self.device.host_frame_buffer(shape, f"camera frame {shape[1]}x{shape[0]}")

    def free_frame(self, array: np.ndarray) -> None:
        self.device.free_frame_buffer(array)

    def claim_frame(self, array: np.ndarray) -> None:
        """The host is about to write ``array`` (checked against device reads)."""
        self.device.claim_frame_buffer(array)

    # -- batches -------------------------------------------------------------------------------
    def run(
        self, images: Sequence[np.ndarray], letterboxes: Sequence[Any]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Detections ``(boxes [K, 4] float32, scores [K] float32, classes [K] int64)`` of
        each image, in its own pixels (``letterboxes[i]`` from ``letterbox_geometry``)."""
        return self.collect(self.submit(images, letterboxes))

    def submit(self, images: Sequence[np.ndarray], letterboxes: Sequence[Any]) -> Ticket:
        """Enqueue a batch (at most :attr:`SLOTS` in flight: collect the oldest first)."""
        n = len(images)
        if n < 1 or n != len(letterboxes):
            raise BackendError(f"{n} images and {len(letterboxes)} letterboxes: one each, >= 1")
        if n > self.engine.profile.max_batch:
            raise BackendError(f"{n} images exceed the engine's max batch")
        slot = self.slots[self._next % self.SLOTS]
        if slot.busy:
            raise BackendError(
                "both batch slots are in flight: collect a batch before submitting another"
            )
        slot.busy = True
        try:
            slot.start.record(self.stream)
            frames = self._upload(slot, images, letterboxes, n)
            rows = DeviceArray(slot.input, 0, (n, *self.in_shape), np.float32)
            call = pre.letterbox(frames["table"], n, rows)
            self._launch(call, [*frames["pixels"], frames["table_region"]], [rows.region()])
            slot.read.record(self.stream)  # the last work reading this batch's frames
        except BaseException:
            slot.busy = False
            raise
        self._next += 1
        future = self._engine_thread.submit(
            self._infer, slot, n, frames["mapping"], frames["mapping_region"]
        )
        return Ticket(slot, n, future)

    def wait_frames_read(self, ticket: Ticket) -> None:
        """Return once the device has read the batch's frames (their buffers may be reused)."""
        ticket.slot.read.synchronize()

    def collect(self, ticket: Ticket) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The batch's detections (waits for it); frees its slot."""
        slot = ticket.slot
        try:
            ticket.future.result()
            slot.done.synchronize()
            ticket.device_ms = slot.start.elapsed_ms(slot.done)
            return self._download(ticket)
        finally:
            slot.busy = False

    def discard(self, ticket: Ticket) -> None:
        """Give up a batch whose frames could not be waited for (a device failure): wait for
        its engine step, ignore its errors, free its slot."""
        try:
            ticket.future.exception()
        finally:
            ticket.slot.busy = False

    def _upload(
        self, slot: _Slot, images: Sequence[np.ndarray], letterboxes: Sequence[Any], n: int
    ) -> dict:
        """Frames where the kernel reads them (in place, one copy from their pinned buffer, or
        packed into staging first), descriptors and box mappings: one copy each."""
        dev = self.device
        sources: list[Region | None] = []
        offsets, at = [], 0
        for img in images:
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise BackendError(
                    f"frames must be uint8 [H, W, 3] BGR, got {img.dtype} {img.shape}"
                )
            region = dev.pinned_region(img)
            sources.append(region)
            mapped = region is not None and region.buffer.mapped
            offsets.append(None if mapped else at)
            at += 0 if mapped else _align(img.shape[0] * img.shape[1] * 3)
        frames_host = frames_dev = None
        if at:
            # integrated: the staging itself is mapped, kernels read it in place
            frames_host, frames_dev = slot.frames.ensure(at, device_side=not dev.is_integrated)
            if dev.is_integrated:
                frames_dev = None
        views, pixels = [], []
        packed = [
            (off, img)
            for off, img, src in zip(offsets, images, sources, strict=True)
            if off is not None and src is None
        ]
        if packed:
            dev.host_access(
                "stage frames",
                writes=[frames_host.region(off, img.nbytes) for off, img in packed],
            )
        for off, img, src in zip(offsets, images, sources, strict=True):
            shape = tuple(int(d) for d in img.shape)
            if off is None:  # mapped frame buffer: zero copy
                views.append(_Mapped(src, shape))
                pixels.append(src)
                continue
            if src is None:  # not a frame buffer: the host packs it into pinned staging
                np.copyto(frames_host.view(np.uint8, shape, off), img)
                self.host_frame_copies += 1
                src = frames_host.region(off, img.nbytes)
            if frames_dev is None:  # integrated: the mapped staging is read in place
                views.append(_Mapped(src, shape))
                pixels.append(src)
                continue
            dst = frames_dev.region(off, img.nbytes)
            dev.copy_htod(dst, src, self.stream, label="frame")
            self.frame_uploads += 1
            views.append(DeviceArray(frames_dev, off, shape, np.uint8))
            pixels.append(dst)
        table = pre.frame_table(views, letterboxes)
        mapping = pp.mapping_table(letterboxes)
        table_bytes = _align(table.nbytes)
        tables_host_buf, tables_dev = slot.tables.ensure(table_bytes + mapping.nbytes)
        tables_host = tables_host_buf.region(0, table_bytes + mapping.nbytes)
        dev.host_access("stage frame table", writes=[tables_host])
        tables_host_buf.view(np.uint8, (table.nbytes,), 0)[:] = table
        tables_host_buf.view(np.float32, mapping.shape, table_bytes)[:] = mapping
        tables = tables_dev.region(0, table_bytes + mapping.nbytes)
        dev.copy_htod(tables, tables_host, self.stream, label="frame table")
        return {
            "pixels": pixels,
            "table": DeviceArray(tables_dev, 0, (table.nbytes,), np.uint8),
            "table_region": tables_dev.region(0, table.nbytes),
            "mapping": DeviceArray(tables_dev, table_bytes, mapping.shape, np.float32),
            "mapping_region": tables_dev.region(table_bytes, mapping.nbytes),
        }

    def _infer(self, slot: _Slot, n: int, mapping: Any, mapping_region: Any) -> None:
        """Steps 3-5 of a batch, on the engine thread (in submission order)."""
        m = self.engine.plan_batch_for(max(n, self.engine.profile.min_batch))
        dev = self.device
        nbytes = n * self.image_bytes
        dev.copy_dtod(
            self.input.region(0, nbytes), slot.input.region(0, nbytes), self.stream, "input"
        )
        self._staged.record(self.stream)
        # the engine's stream reads what this one wrote, and writes the output the previous
        # batch's decode (earlier on this stream) read
        self._staged.synchronize()
        dev_in = DeviceArray(self.input, 0, (m, *self.in_shape), np.float32)
        dev_out = DeviceArray(self.output, 0, (m, *self.out_shape), np.float32)
        self.context.bind(self.input_name, dev_in)
        self.context.bind(self.output_name, dev_out)
        self.context.execute_bound()  # ends with its stream synchronized
        self._postprocess(slot, n, mapping, mapping_region)
        size = self.results_size
        # the whole compact block in one copy: counts, then max_detections slots per image
        # (a second copy of only the kept rows would cost a synchronize more than it saves)
        dev.copy_dtoh(
            slot.results_host.region(0, size),
            slot.results.region(0, size),
            self.stream,
            label="detections",
        )
        slot.done.record(self.stream)

    def _result(self, slot: _Slot, name: str, n: int) -> DeviceArray:
        offset, shape, dtype = self.result_layout[name]
        return DeviceArray(slot.results, offset, (n, *shape[1:]), dtype)

    def _postprocess(self, slot: _Slot, n: int, mapping: Any, mapping_region: Any) -> None:
        pred = DeviceArray(self.output, 0, (n, *self.out_shape), np.float32)
        workspace = DeviceArray(slot.workspace, 0, (n * self.ws.stride,), np.uint8)
        outs = {k: self._result(slot, k, n) for k in ("boxes", "scores", "classes", "counts")}
        call = pp.decode(
            pred, self.layout, workspace=workspace, mapping=mapping, **outs, **self.settings
        )
        writes = [workspace.region(), *(a.region() for a in outs.values())]
        self._launch(call, [pred.region(), mapping_region], writes)

    def _download(self, ticket: Ticket) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        slot, n = ticket.slot, ticket.n
        self.device.host_access(
            "read detections", reads=[slot.results_host.region(0, self.results_size)]
        )
        host = {}
        for name, (offset, shape, dtype) in self.result_layout.items():
            host[name] = slot.results_host.view(dtype, shape, offset)
        out = []
        clipped = []
        for i in range(n):
            k = int(host["counts"][i])
            scores = host["scores"][i, :k].copy()
            if k and scores[0] >= 1.0:  # kept in score order: the best is first
                clipped.append(i)
            out.append(
                (host["boxes"][i, :k].copy(), scores, host["classes"][i, :k].astype(np.int64))
            )
        if clipped and self.scores == "probabilities":
            ticket.raw_score_above_1 = self._raw_best(slot, clipped)
        return out

    def _raw_best(self, slot: _Slot, images: list[int]) -> float | None:
        """The best raw (unclipped) score of ``images``, from the decode's workspace (its
        score-ordered candidates), when above 1: the kernel publishes scores clipped into
        [0, 1], so a kept 1.0 may be a logit. Only looked at a few times per pipeline."""
        if self._clip_checks >= MAX_CLIP_CHECKS:
            return None
        self._clip_checks += 1
        dev = self.device
        tmp = dev.allocate_host(4 * len(images), "raw score check")
        try:
            for j, i in enumerate(images):
                src = slot.workspace.region(i * self.ws.stride + self.ws.score, 4)
                dev.copy_dtoh(tmp.region(4 * j, 4), src, self.stream, label="raw best score")
            self.stream.synchronize()
            dev.host_access("read raw best scores", reads=[tmp.region()])
            best = float(tmp.view(np.float32, (len(images),)).max())
        finally:
            dev.free(tmp)
        return best if best > 1.0 else None

    def _launch(self, call: KernelCall, reads: list[Any], writes: list[Any]) -> None:
        self.device.launch(
            kernel_function(self.device, call.entry),
            call.grid,
            call.block,
            call.params,
            stream=self.stream,
            shared_bytes=call.shared_bytes,
            reads=reads,
            writes=writes,
            label=call.entry,
        )

    def close(self) -> None:
        self._engine_thread.shutdown(wait=True)
        self.stream.synchronize()
        for slot in self.slots:
            slot.close(self.device)
        for buffer in (self.input, self.output):
            if not buffer.freed:
                self.device.free(buffer)
        self._staged.close()
        self.stream.close()


def _align(nbytes: int, to: int = 256) -> int:
    return -(-int(nbytes) // to) * to
