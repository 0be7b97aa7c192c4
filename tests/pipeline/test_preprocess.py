"""Letterbox preprocessing: geometry, pixel placement, channel order, in-place output."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.pipeline.preprocess import (
    PAD_VALUE,
    letterbox_geometry,
    preprocess,
    preprocess_batch,
)


@pytest.mark.parametrize(
    ("w", "h", "scale", "pad_x", "pad_y"),
    [
        (640, 360, 0.5, 0, 70),  # wide: padded top and bottom
        (360, 640, 0.5, 70, 0),  # tall: padded left and right
        (320, 320, 1.0, 0, 0),  # exact fit
        (160, 100, 2.0, 0, 60),  # upscaled
        (641, 360, 320 / 641, 0, 70),
    ],
)
def test_geometry(w: int, h: int, scale: float, pad_x: int, pad_y: int) -> None:
    lb = letterbox_geometry(w, h, 320, 320)
    assert lb.scale == pytest.approx(scale)
    assert (lb.pad_x, lb.pad_y) == (pad_x, pad_y)


def test_boxes_round_trip() -> None:
    lb = letterbox_geometry(1280, 720, 320, 320)
    boxes = np.array([[0, 0, 1280, 720], [100.5, 200.25, 300, 400]])
    into = lb.to_input(boxes)
    np.testing.assert_allclose(into[0], [0, 70, 320, 250])
    np.testing.assert_allclose(lb.to_frame(into), boxes)


def test_pixels_land_where_the_geometry_says() -> None:
    frame = np.zeros((360, 640, 3), np.uint8)
    frame[100:200, 200:400] = (0, 0, 255)  # pure red in BGR
    x, lb = preprocess(frame, (320, 320))
    assert x.shape == (3, 320, 320) and x.dtype == np.float32
    (x0, y0, x1, y1) = lb.to_input(np.array([[200, 100, 400, 200]]))[0].astype(int)
    # inside the box: R=1, G=B=0 (RGB order); outside but in the image: black
    np.testing.assert_allclose(
        x[:, y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].mean(axis=(1, 2)), [1.0, 0.0, 0.0], atol=1e-6
    )
    assert x[:, lb.pad_y + 5, 5].max() == 0.0
    # padding rows are gray 114
    np.testing.assert_allclose(x[:, : lb.pad_y, :], PAD_VALUE / 255.0)
    np.testing.assert_allclose(x[:, 320 - lb.pad_y :, :], PAD_VALUE / 255.0)


def test_exact_size_is_a_pure_conversion() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (320, 320, 3), dtype=np.uint8)
    x, _ = preprocess(frame)
    np.testing.assert_allclose(x, frame[..., ::-1].transpose(2, 0, 1) / 255.0, rtol=1e-6)


def test_writes_into_the_given_array() -> None:
    frames = [np.full((90, 160, 3), v, np.uint8) for v in (10, 200)]
    out = np.zeros((4, 3, 64, 64), np.float32)
    batch, boxes = preprocess_batch(frames, (64, 64), out=out)
    assert batch.base is out or batch is out
    assert len(boxes) == 2
    np.testing.assert_allclose(out[1, :, 32, 32], 200 / 255.0, rtol=1e-6)
    assert (out[2:] == 0).all()  # slots beyond the frames are untouched


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 3), np.float32),
        np.zeros((10, 10, 4), np.uint8),
    ],
)
def test_rejects_bad_frames(frame: np.ndarray) -> None:
    with pytest.raises(ValueError, match="frame must be"):
        preprocess(frame)


def test_rejects_bad_output_array() -> None:
    with pytest.raises(ValueError, match="out must be"):
        preprocess(np.zeros((10, 10, 3), np.uint8), (32, 32), out=np.zeros((3, 32, 31), np.float32))
