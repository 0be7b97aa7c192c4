"""Frames → detections on the device, around one execution context of a CUDA engine.

What the daemon's workers run when the engine's backend is cuda (reached through
``edge_infer.engine.device_pipeline``; the pipeline never imports this package):

1. the batch's uint8 BGR frames are written into a pinned staging buffer and copied to the
   device in one copy (the staged path of discrete GPUs; zero-copy capture buffers on
   integrated GPUs are issue 15 §2's next step);
2. the batch pre-processing kernel (``params/preprocess.py``: letterbox, BGR→RGB, 1/255,
   NCHW) writes straight into the device buffer bound to the engine's input;
3. the engine runs on its bound device input and output (``ExecutionContext.bind``);
4. the decode + NMS kernel (``params/postprocess.py``, decision-identical with
   ``pipeline/postprocess.py:decode``) reads the bound output on the device;
5. only the compact arrays come back: ``counts``, then the kept boxes, scores and classes.

Ordering: this pipeline's own stream runs steps 1-2 and 4-5; the engine runs on the
context's stream. The host waits for the stream before the engine runs and the engine's run
ends with a synchronize, so each hand-over is ordered by a host synchronization (the hazard
checker sees the same order). Overlapping batches across streams is §3 (pipelining).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_infer.cuda import library
from edge_infer.cuda.arena import DeviceArray
from edge_infer.cuda.device import Device, DeviceBuffer, HostBuffer
from edge_infer.cuda.library import KernelCall
from edge_infer.cuda.params import postprocess as pp
from edge_infer.cuda.params import preprocess as pre
from edge_infer.errors import BackendError

#: threads per postprocess block (one block per image)
POST_BLOCK = 256
#: candidates entering NMS per image, as ``pipeline/postprocess.py:decode``'s default
MAX_CANDIDATES = 4096

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

    def ensure(self, nbytes: int) -> tuple[HostBuffer, DeviceBuffer]:
        """The two buffers, at least ``nbytes`` each."""
        if self.host is None or self.dev is None or self.host.nbytes < nbytes:
            self.close()
            size = max(256, 1 << (int(nbytes) - 1).bit_length())  # doubling: few reallocations
            self.host = self.device.allocate_host(size, f"{self.name} (pinned)")
            self.dev = self.device.allocate(size, self.name)
        return self.host, self.dev

    def close(self) -> None:
        for buffer in (self.host, self.dev):
            if buffer is not None and not buffer.freed:
                self.device.free(buffer)
        self.host = self.dev = None


class CudaDevicePipeline:
    """One worker's device pre/post-processing around ``context`` (not thread-safe: one
    worker thread uses it). Settings are ``pipeline/postprocess.py:decode``'s."""

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
        self.input = device.allocate(n * int(np.prod(self.in_shape)) * 4, "pipeline input")
        self.output = device.allocate(n * int(np.prod(self.out_shape)) * 4, "pipeline output")
        self.workspace = device.allocate(n * self.ws.stride, "postprocess workspace")
        # the compact results, one device buffer: counts, boxes, scores, classes
        self.result_layout = {
            "counts": (0, (n,), np.int32),
            "boxes": (_align(4 * n), (n, k, 4), f32),
            "scores": (_align(4 * n) + _align(16 * n * k), (n, k), f32),
            "classes": (_align(4 * n) + _align(16 * n * k) + _align(4 * n * k), (n, k), np.int32),
        }
        self.results_size = self.result_layout["classes"][0] + _align(4 * n * k)
        self.results = device.allocate(self.results_size, "detections")
        self.results_host = device.allocate_host(self.results_size, "detections (pinned)")
        self.frames = _Staged(device, "frames")
        self.tables = _Staged(device, "frame table + letterboxes")
        # rows past a batch's frames pad it to a planned size: zeros, never garbage
        device.memset(self.input, 0, self.stream, label="zero input")
        self.stream.synchronize()

    # -- one batch -----------------------------------------------------------------------------
    def run(
        self, images: Sequence[np.ndarray], letterboxes: Sequence[Any]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Detections ``(boxes [K, 4] float32, scores [K] float32, classes [K] int64)`` of
        each image, in its own pixels (``letterboxes[i]`` from ``letterbox_geometry``)."""
        n = len(images)
        if n < 1 or n != len(letterboxes):
            raise BackendError(f"{n} images and {len(letterboxes)} letterboxes: one each, >= 1")
        m = self.engine.plan_batch_for(max(n, self.engine.profile.min_batch))
        dev_in = DeviceArray(self.input, 0, (m, *self.in_shape), np.float32)
        dev_out = DeviceArray(self.output, 0, (m, *self.out_shape), np.float32)
        frames = self._upload(images, letterboxes, n)
        call = pre.letterbox(frames["table"], n, dev_in)
        in_rows = DeviceArray(self.input, 0, (n, *self.in_shape), np.float32)
        self._launch(call, [frames["pixels"], frames["table_region"]], [in_rows.region()])
        self.stream.synchronize()  # the engine's stream reads what this one wrote
        self.context.bind(self.input_name, dev_in)
        self.context.bind(self.output_name, dev_out)
        self.context.execute_bound()  # ends with its stream synchronized
        self._postprocess(n, dev_out, frames["mapping"], frames["mapping_region"])
        return self._download(n)

    def _upload(self, images: Sequence[np.ndarray], letterboxes: Sequence[Any], n: int) -> dict:
        """Frames, their descriptors and box mappings: written to pinned memory, one copy
        each to the device."""
        offsets, at = [], 0
        for img in images:
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise BackendError(
                    f"frames must be uint8 [H, W, 3] BGR, got {img.dtype} {img.shape}"
                )
            offsets.append(at)
            at += _align(img.shape[0] * img.shape[1] * 3)
        frames_host, frames_dev = self.frames.ensure(at)
        dev_views = [
            DeviceArray(frames_dev, off, img.shape, np.uint8)
            for off, img in zip(offsets, images, strict=True)
        ]
        table = pre.frame_table(dev_views, letterboxes)
        mapping = pp.mapping_table(letterboxes)
        table_bytes = _align(table.nbytes)
        tables_host_buf, tables_dev = self.tables.ensure(table_bytes + mapping.nbytes)
        pixels_host = frames_host.region(0, at)
        tables_host = tables_host_buf.region(0, table_bytes + mapping.nbytes)
        self.device.host_access("stage frames", writes=[pixels_host, tables_host])
        for off, img in zip(offsets, images, strict=True):
            np.copyto(frames_host.view(np.uint8, img.shape, off), img)
        tables_host_buf.view(np.uint8, (table.nbytes,), 0)[:] = table
        tables_host_buf.view(np.float32, mapping.shape, table_bytes)[:] = mapping
        pixels = frames_dev.region(0, at)
        tables = tables_dev.region(0, table_bytes + mapping.nbytes)
        self.device.copy_htod(pixels, pixels_host, self.stream, label="frames")
        self.device.copy_htod(tables, tables_host, self.stream, label="frame table")
        return {
            "pixels": pixels,
            "table": DeviceArray(tables_dev, 0, (table.nbytes,), np.uint8),
            "table_region": tables_dev.region(0, table.nbytes),
            "mapping": DeviceArray(tables_dev, table_bytes, mapping.shape, np.float32),
            "mapping_region": tables_dev.region(table_bytes, mapping.nbytes),
        }

    def _result(self, name: str, n: int) -> DeviceArray:
        offset, shape, dtype = self.result_layout[name]
        return DeviceArray(self.results, offset, (n, *shape[1:]), dtype)

    def _postprocess(self, n: int, dev_out: DeviceArray, mapping: Any, mapping_region: Any) -> None:
        pred = DeviceArray(self.output, 0, (n, *self.out_shape), np.float32)
        workspace = DeviceArray(self.workspace, 0, (n * self.ws.stride,), np.uint8)
        outs = {k: self._result(k, n) for k in ("boxes", "scores", "classes", "counts")}
        call = pp.decode(
            pred, self.layout, workspace=workspace, mapping=mapping, **outs, **self.settings
        )
        writes = [workspace.region(), *(a.region() for a in outs.values())]
        self._launch(call, [pred.region(), mapping_region], writes)

    def _download(self, n: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        # the whole compact block in one copy: counts, then max_detections slots per image
        # (a second copy of only the kept rows would cost a synchronize more than it saves)
        size = self.results_size
        self.device.copy_dtoh(
            self.results_host.region(0, size),
            self.results.region(0, size),
            self.stream,
            label="detections",
        )
        self.stream.synchronize()
        self.device.host_access("read detections", reads=[self.results_host.region(0, size)])
        host = {}
        for name, (offset, shape, dtype) in self.result_layout.items():
            host[name] = self.results_host.view(dtype, shape, offset)
        out = []
        for i in range(n):
            k = int(host["counts"][i])
            out.append(
                (
                    host["boxes"][i, :k].copy(),
                    host["scores"][i, :k].copy(),
                    host["classes"][i, :k].astype(np.int64),
                )
            )
        return out

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
        self.stream.synchronize()
        self.frames.close()
        self.tables.close()
        for buffer in (self.input, self.output, self.workspace, self.results, self.results_host):
            if not buffer.freed:
                self.device.free(buffer)
        self.stream.close()


def _align(nbytes: int, to: int = 256) -> int:
    return -(-int(nbytes) // to) * to
