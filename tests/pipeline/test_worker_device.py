"""The worker on a CUDA engine (the emulator, hazard checker on): frames letterboxed on the
device into the engine's bound input, decode + NMS on the device — the same detections as
the host path (``preprocess`` → the same engine → ``decode``), exactly, in FP32 and FP16."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from edge_infer.engine import BuildOptions, Engine, build, device_pipeline, select_device
from edge_infer.pipeline.config import PostprocessConfig
from edge_infer.pipeline.frames import Frame
from edge_infer.pipeline.postprocess import decode
from edge_infer.pipeline.preprocess import preprocess
from edge_infer.pipeline.workers import InferenceWorker, ModelSpec
from tests.pipeline.helpers import TINY_SIZE, tiny_detector

SHAPE = (3, TINY_SIZE, TINY_SIZE)


def _engine(folder: Path, precision: str) -> Engine:
    onnx_path = folder / "tiny.onnx"
    onnx.save(tiny_detector(), str(onnx_path))
    select_device("cuda", "emu")
    opts = BuildOptions(
        backend="cuda",
        backend_options={"device": "emu"},
        precision=precision,
        min_shapes={"images": (1, *SHAPE)},
        opt_shapes={"images": (2, *SHAPE)},
        max_shapes={"images": (4, *SHAPE)},
        tune=False,
    )
    path = folder / f"tiny-{precision}.engine"
    build(str(onnx_path), path, options=opts)
    return Engine.load(path)


def _frames(count: int) -> list[np.ndarray]:
    """Frames of three sizes (wide, tall, the input's own), random content."""
    rng = np.random.default_rng(count)
    sizes = [(90, 160), (120, 100), (64, 64)]
    return [rng.integers(0, 256, (*sizes[i % 3], 3), dtype=np.uint8) for i in range(count)]


def _host(engine: Engine, images: list[np.ndarray], post: PostprocessConfig) -> list:
    x = np.zeros((len(images), *SHAPE), np.float32)
    lbs = [preprocess(im, (TINY_SIZE, TINY_SIZE), out=x[i])[1] for i, im in enumerate(images)]
    with engine.create_context() as ctx:
        y = ctx.execute({"images": x})["output0"]
    return decode(
        y,
        lbs,
        layout=post.layout,
        score_threshold=post.score_threshold,
        iou_threshold=post.iou_threshold,
        max_detections=post.max_detections,
    )


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_worker_on_the_device_equals_the_host_path(tmp_path: Path, precision: str) -> None:
    engine = _engine(tmp_path, precision)
    spec = ModelSpec.from_engine(engine)
    post = PostprocessConfig(max_detections=3)  # cuts: 4 boxes predicted, 3 kept
    worker = InferenceWorker(0, engine, spec, post, "rgb", lambda r: None, lambda *a: None)
    assert worker.device is not None and worker.buffer.size == 0  # no host batch buffer
    try:
        for n in (1, 3, 2, 4):  # 3: padded to the plan of 4 on the device
            images = _frames(n)
            frames = [Frame(f"c{i}", i + 1, im, 0.0, 0.0) for i, im in enumerate(images)]
            got = worker.run_batch(frames).frames
            want = _host(engine, images, post)
            assert len(got) == n
            for r, w in zip(got, want, strict=True):
                assert len(w) == 3
                np.testing.assert_array_equal(r.detections.boxes, w.boxes)
                np.testing.assert_array_equal(r.detections.scores, w.scores)
                np.testing.assert_array_equal(r.detections.classes, w.classes)
                assert r.detections.classes.dtype == w.classes.dtype
    finally:
        worker.device.close()
        worker.context.close()


def test_cpu_engines_and_bgr_models_keep_the_host_path(tmp_path: Path, tiny_engine: Path) -> None:
    cpu = Engine.load(tiny_engine)
    with cpu.create_context() as ctx:
        assert device_pipeline(ctx, input_name="images", output_name="output0") is None
    engine = _engine(tmp_path, "fp32")
    spec = ModelSpec.from_engine(engine)
    bgr = InferenceWorker(0, engine, spec, PostprocessConfig(), "bgr", print, print)
    assert bgr.device is None and bgr.buffer.shape[0] == spec.max_batch
    bgr.context.close()
