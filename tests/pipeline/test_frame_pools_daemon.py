"""The daemon's per-camera frame pools (pipeline/warmup.py): one pool of
``inference.frame_buffers`` pinned buffers per camera where the workers run on a device,
none on the CPU or with previews on."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from edge_infer.pipeline import warmup


class _Device:
    def __init__(self) -> None:
        self.made: list[tuple[int, ...]] = []
        self.claimed = 0

    def allocate_frame(self, shape):
        self.made.append(shape)
        return np.empty(shape, np.uint8)

    def free_frame(self, array) -> None:
        pass

    def claim_frame(self, array) -> None:
        self.claimed += 1


def _cfg(preview: bool = False, buffers: int = 3):
    return SimpleNamespace(
        inference=SimpleNamespace(frame_buffers=buffers),
        publisher=SimpleNamespace(preview=SimpleNamespace(enabled=preview)),
    )


CAMS = [SimpleNamespace(id="a"), SimpleNamespace(id="b")]


def test_one_pool_per_camera_from_the_workers_device() -> None:
    device = _Device()
    pool = SimpleNamespace(workers=[SimpleNamespace(device=device)])
    pools = warmup.frame_pools(_cfg(), pool, CAMS)
    assert sorted(pools) == ["a", "b"] and pools["a"] is not pools["b"]
    assert pools["a"].count == 3
    buf = pools["a"].acquire(4, 5)
    assert buf is not None and device.made == [(4, 5, 3)] and device.claimed == 1


def test_no_pools_on_the_cpu_or_with_previews() -> None:
    cpu = SimpleNamespace(workers=[SimpleNamespace(device=None)])
    assert warmup.frame_pools(_cfg(), cpu, CAMS) == {}
    gpu = SimpleNamespace(workers=[SimpleNamespace(device=_Device())])
    assert warmup.frame_pools(_cfg(preview=True), gpu, CAMS) == {}
