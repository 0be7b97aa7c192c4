"""Fixtures of the pipeline tests: synthetic camera files and the tiny engine (built once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline.helpers import build_tiny_engine


@pytest.fixture(scope="session")
def synth_cameras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight synthetic cameras, 3 s at 320x180 and 15 fps, H.264 (.mp4) and MJPEG (.avi)."""
    from edge_infer.synth.video import write_videos

    out = tmp_path_factory.mktemp("cameras")
    write_videos(
        out,
        cameras=8,
        seconds=3.0,
        fps=15.0,
        width=320,
        height=180,
        codec="both",
        seed=3,
        workers=1,
        progress=False,
    )
    return out


@pytest.fixture(scope="session")
def tiny_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_engine(tmp_path_factory.mktemp("engine"))
