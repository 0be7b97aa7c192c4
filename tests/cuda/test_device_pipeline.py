"""cuda/device_pipeline.py: the daemon's frame staging buffers are reused batch after batch,
and the hazard checker is what shows a batch never overwrites frames a copy still reads.

(The detections themselves are checked against the host path in
tests/pipeline/test_worker_device.py and test_daemon_cuda_e2e.py.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from edge_infer.engine import BuildOptions, Engine, build, device_pipeline, select_device
from edge_infer.errors import HazardError
from edge_infer.pipeline.preprocess import letterbox_geometry
from tests.pipeline.helpers import TINY_SIZE, tiny_detector


@pytest.fixture
def pipeline(tmp_path: Path):
    onnx.save(tiny_detector(), str(tmp_path / "tiny.onnx"))
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
    build(str(tmp_path / "tiny.onnx"), tmp_path / "tiny.engine", options=opts)
    ctx = Engine.load(tmp_path / "tiny.engine").create_context()
    dp = device_pipeline(ctx, input_name="images", output_name="output0")
    yield dp
    dp.device.synchronize()
    dp.close()
    ctx.close()


def _batch(seed: int) -> tuple[list[np.ndarray], list]:
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (90, 160, 3), dtype=np.uint8) for _ in range(2)]
    return images, [letterbox_geometry(160, 90, TINY_SIZE, TINY_SIZE) for _ in images]


def test_staging_buffers_are_reused_only_after_the_copies_that_read_them(pipeline) -> None:
    host = pipeline.frames
    for seed in range(3):  # same sizes: the same pinned and device buffers every batch
        pipeline.run(*_batch(seed))
    # two 160x90 frames, 43,264 bytes each (256-aligned), rounded up to a power of two
    assert host.host is not None and host.host.nbytes == 131072
    # staging the next batch while the previous batch's copy may still read the pinned
    # frames (no synchronize between them) is what the checker refuses
    images, boxes = _batch(3)
    pipeline._upload(images, boxes, 2)
    with pytest.raises(HazardError, match="stage frames"):
        pipeline._upload(images, boxes, 2)
