"""What the daemon prepares for its workers at start: the batcher's latency model measured
per batch size (warm-up), and on a device the cameras' pinned frame buffer pools.

On the CPU the warm-up runs batch 1 and the max batch through a context (wall time). On the
CUDA backend it runs every batch size the engine has a plan for through the engine's device
pipeline (uint8 frames in, detections out: the workers' path), timed by the device's events,
so the batcher's deadlines start from the GPU's latency, not a default.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from edge_infer.pipeline.batcher import LatencyModel
from edge_infer.pipeline.config import DaemonConfig, PostprocessConfig
from edge_infer.pipeline.frames import FramePool
from edge_infer.pipeline.workers import ModelSpec, WorkerPool, device_pipeline_for

if TYPE_CHECKING:
    from edge_infer.engine import Engine

log = logging.getLogger(__name__)


def warm_up(engine: Engine, spec: ModelSpec, latency: LatencyModel, sizes: list[int]) -> None:
    """Run each batch size once (preparing its plan) and seed the latency model."""
    import numpy as np

    with engine.create_context() as ctx:
        for n in sizes:
            x = np.full((n, 3, spec.input_height, spec.input_width), 0.5, np.float32)
            t0 = time.monotonic()
            ctx.execute({spec.input_name: x})
            t1 = time.monotonic()
            ctx.execute({spec.input_name: x})
            latency.observe(n, time.monotonic() - t1)
            log.info(
                "warm-up: batch %d: %.1f ms (first run %.1f ms)",
                n,
                latency.estimate(n) * 1e3,
                (t1 - t0) * 1e3,
            )


def warm_up_daemon(
    cfg: DaemonConfig,
    backend: str,
    engine: Engine,
    spec: ModelSpec,
    latency: LatencyModel,
    max_batch: int,
) -> None:
    """The daemon's warm-up: on a device, every batch size the engine has a plan for, timed
    on the device through the path the workers take; on the CPU batch 1 and the largest."""
    sizes = [n for n in engine.batch_sizes if n <= max_batch] or [max_batch]
    on_device = (
        backend == "cuda"
        and cfg.preprocess.color_order != "bgr"
        and warm_up_device(engine, spec, cfg.postprocess, latency, sizes)
    )
    if not on_device:
        warm_up(engine, spec, latency, sorted({1, max_batch}))


def warm_up_device(
    engine: Engine,
    spec: ModelSpec,
    post: PostprocessConfig,
    latency: LatencyModel,
    sizes: list[int],
) -> bool:
    """Seed the latency model from the device: each batch size through the engine's device
    pipeline (frames in, detections out, as the workers run it), timed by the device's events
    (the emulator's events time the host). False where the engine has no device pipeline."""
    import numpy as np

    from edge_infer.pipeline.preprocess import letterbox_geometry

    w, h = spec.input_width, spec.input_height
    with engine.create_context() as ctx:
        dp = device_pipeline_for(ctx, spec, post)
        if dp is None:
            return False
        try:
            frame = np.full((h, w, 3), 114, np.uint8)
            box = letterbox_geometry(w, h, w, h)
            for n in sizes:
                t0 = time.monotonic()
                dp.run([frame] * n, [box] * n)  # the first run prepares the plan
                t1 = time.monotonic()
                ticket = dp.submit([frame] * n, [box] * n)
                dp.collect(ticket)
                wall = time.monotonic() - t1
                seconds = ticket.device_ms / 1e3 if ticket.device_ms is not None else wall
                latency.observe(n, seconds)
                log.info(
                    "warm-up on the device: batch %d: %.1f ms device, %.1f ms wall "
                    "(first run %.1f ms)",
                    n,
                    seconds * 1e3,
                    wall * 1e3,
                    (t1 - t0) * 1e3,
                )
        finally:
            dp.close()
    return True


def frame_pools(cfg: DaemonConfig, pool: WorkerPool, cameras: list[Any]) -> dict[str, FramePool]:
    """One pool of ``inference.frame_buffers`` decode buffers per camera, in the device's
    pinned memory, where the workers read frames on a device (the CUDA backend); none on
    the CPU (its preprocessing reads ordinary memory as fast) or with previews on (the
    publisher draws on frames after the workers release them)."""
    device = next((w.device for w in pool.workers if w.device is not None), None)
    if device is None or not hasattr(device, "allocate_frame"):
        return {}
    if cfg.publisher.preview.enabled:
        log.info("previews are on: cameras decode into ordinary memory, not pinned buffers")
        return {}
    return {
        cam.id: FramePool(
            cfg.inference.frame_buffers,
            device.allocate_frame,
            free=device.free_frame,
            claim=device.claim_frame,
        )
        for cam in cameras
    }
