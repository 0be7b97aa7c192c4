"""edge_infer/cuda/occupancy.py against hand-computed occupancy calculator cases."""

from __future__ import annotations

import pytest

from edge_infer.cuda.occupancy import occupancy
from edge_infer.errors import BackendError


@pytest.mark.parametrize(
    ("sm", "threads", "regs", "smem", "blocks", "limiter"),
    [
        (87, 256, 32, 0, 6, "warps"),  # 48 warp slots / 8 warps
        (87, 128, 128, 0, 4, "registers"),  # 4096 registers a warp: 16 warps fit
        (87, 256, 32, 48 * 1024, 3, "shared"),  # 49 KiB + 1 KiB reserved a block, 164 KiB an SM
        (87, 32, 16, 0, 16, "blocks"),
        (72, 256, 64, 0, 4, "registers"),  # 2048 a warp: 32 warps
        (90, 1024, 32, 0, 2, "warps"),
    ],
)
def test_occupancy_cases(sm, threads, regs, smem, blocks, limiter) -> None:
    occ = occupancy(sm, threads, regs, smem)
    assert (occ.blocks, occ.limiter) == (blocks, limiter)
    assert occ.warps == blocks * -(-threads // 32)


def test_occupancy_refuses_unknown_sm_and_block() -> None:
    with pytest.raises(BackendError, match="sm_61"):
        occupancy(61, 128, 32, 0)
    with pytest.raises(BackendError, match="1 to 1024"):
        occupancy(87, 2048, 32, 0)
