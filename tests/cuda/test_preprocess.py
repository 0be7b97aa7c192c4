"""kernels/preprocess.cu: letterbox + BGR->RGB + 1/255 + NCHW against pipeline/preprocess.py.

Tolerance: none. The resize replays cv2's INTER_LINEAR integer arithmetic (11-bit weights
from float coordinates, rows clamped but weighted as computed, cv2's SIMD vertical pass), so
down- and upscales, unresized frames and the padding equal the reference to the bit; FP16
output equals the reference cast to float16. (A cv2 built for another SIMD width or through
another HAL, e.g. a Jetson's, may differ from this one by one 8-bit level; the comparison is
with the cv2 installed here.)
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_infer.cuda.params import preprocess as pre
from edge_infer.errors import BackendError
from edge_infer.pipeline.preprocess import letterbox_geometry, preprocess


def _frames(rng, sizes, pitch_pad=0):
    """uint8 BGR frames; with pitch_pad, rows padded (views into wider arrays)."""
    out = []
    for w, h in sizes:
        big = rng.integers(0, 256, (h, w + pitch_pad, 3), np.uint8)
        out.append(big[:, :w])
    return out


def _run(device, frames, in_w, in_h, dtype, slots=None):
    lbs = [letterbox_geometry(f.shape[1], f.shape[0], in_w, in_h) for f in frames]
    dframes = [
        device.to_device(np.ascontiguousarray(f)) if device.name == "gpu" else f for f in frames
    ]
    table = device.to_device(pre.frame_table(dframes, lbs))
    out = device.empty((slots or len(frames), 3, in_h, in_w), dtype)
    device.run(pre.letterbox(table, len(frames), out))
    return device.to_host(out)


def _reference(frames, in_w, in_h):
    return np.stack([preprocess(np.ascontiguousarray(f), (in_w, in_h))[0] for f in frames])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_downscales_and_unresized_frames_are_exact(device, dtype) -> None:
    rng = np.random.default_rng(1)
    # 2x (cv2's INTER_AREA shortcut), fractional downscales, letterbox padding on either axis,
    # a frame already the input size; rows padded (pitch > 3 * width)
    frames = _frames(rng, [(64, 48), (53, 37), (91, 29), (32, 24), (45, 70)], pitch_pad=5)
    got = _run(device, frames, 32, 24, dtype)
    ref = _reference(frames, 32, 24).astype(dtype)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_upscales_are_exact(device, dtype) -> None:
    rng = np.random.default_rng(2)
    frames = _frames(rng, [(7, 5), (13, 21), (30, 11), (1, 1)])
    got = _run(device, frames, 33, 27, dtype)
    np.testing.assert_array_equal(got, _reference(frames, 33, 27).astype(dtype))


def test_input_wider_than_a_block_of_columns(device) -> None:
    rng = np.random.default_rng(4)
    frames = _frames(rng, [(300, 41), (90, 50)], pitch_pad=2)  # W = 130 > 128 columns a block
    np.testing.assert_array_equal(
        _run(device, frames, 130, 37, np.float32), _reference(frames, 130, 37)
    )


def test_writes_into_a_larger_batch_buffer(device) -> None:
    rng = np.random.default_rng(3)
    frames = _frames(rng, [(40, 30), (20, 36)])
    got = _run(device, frames, 16, 16, np.float32, slots=4)
    np.testing.assert_array_equal(got[:2], _reference(frames, 16, 16))
    assert np.isnan(got[2:]).all()  # slots past the batch untouched (device.empty is NaN)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(
    w=st.integers(1, 60),
    h=st.integers(1, 60),
    in_w=st.integers(4, 24),
    in_h=st.integers(4, 24),
    seed=st.integers(0, 2**16),
)
def test_property_exact(emu, w, h, in_w, in_h, seed) -> None:
    from tests.cuda.conftest import EmuDevice

    frames = _frames(np.random.default_rng(seed), [(w, h)])
    got = _run(EmuDevice(emu), frames, in_w, in_h, np.float32)
    np.testing.assert_array_equal(got, _reference(frames, in_w, in_h))


def test_refuses_bad_frames() -> None:
    lb = letterbox_geometry(8, 8, 8, 8)
    with pytest.raises(BackendError, match="uint8"):
        pre.frame_table([np.zeros((8, 8, 4), np.uint8)], [lb])
    with pytest.raises(BackendError, match="letterbox was computed"):
        pre.frame_table([np.zeros((8, 9, 3), np.uint8)], [lb])
    table = pre.frame_table([np.zeros((8, 8, 3), np.uint8)], [lb])
    with pytest.raises(BackendError, match="float32 or float16"):
        pre.letterbox(table, 1, np.zeros((1, 3, 8, 8), np.float64))
