"""Frame → detector input: letterbox, BGR→RGB, /255, NCHW float32.

Matches ultralytics' ``LetterBox(auto=False)``: the frame is scaled by one factor to fit the
model input, centred, and padded with gray 114. The returned :class:`Letterbox` holds the
scale and padding that map boxes back (see ``postprocess.decode``). Writing into a
caller-provided array lets the daemon fill a preallocated batch without allocating.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How a ``width``×``height`` frame was placed into the model input."""

    scale: float
    pad_x: int
    pad_y: int
    width: int
    height: int
    input_width: int
    input_height: int

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Map xyxy boxes from frame pixels to model-input pixels."""
        b = np.asarray(boxes, np.float64).reshape(-1, 4) * self.scale
        return b + np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y])

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """Map xyxy boxes from model-input pixels back to frame pixels (not clipped)."""
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        return (b - np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y])) / self.scale


def letterbox_geometry(width: int, height: int, input_width: int, input_height: int) -> Letterbox:
    """Scale and padding for a frame, computed as ultralytics does (padding split evenly)."""
    if min(width, height, input_width, input_height) < 1:
        raise ValueError(
            f"sizes must be positive: frame {width}x{height}, input {input_width}x{input_height}"
        )
    scale = min(input_width / width, input_height / height)
    new_w, new_h = round(width * scale), round(height * scale)
    pad_x = round((input_width - new_w) / 2 - 0.1)
    pad_y = round((input_height - new_h) / 2 - 0.1)
    return Letterbox(scale, pad_x, pad_y, width, height, input_width, input_height)


def preprocess(
    frame: np.ndarray,
    input_size: tuple[int, int] = (320, 320),
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, Letterbox]:
    """Letterbox a BGR ``uint8 [H, W, 3]`` frame into ``float32 [3, h, w]`` RGB in 0..1.

    ``input_size`` is ``(width, height)`` of the model input. With ``out`` (a C-contiguous
    float32 ``[3, h, w]`` array, e.g. one slot of a batch) the result is written there and
    ``out`` is returned; otherwise a new array is allocated.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8 [H, W, 3] BGR, got {frame.dtype} {frame.shape}")
    in_w, in_h = input_size
    if out is None:
        out = np.empty((3, in_h, in_w), np.float32)
    elif out.shape != (3, in_h, in_w) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 (3, {in_h}, {in_w}), got {out.dtype} {out.shape}")
    h, w = frame.shape[:2]
    lb = letterbox_geometry(w, h, in_w, in_h)
    new_w, new_h = round(w * lb.scale), round(h * lb.scale)
    img = (
        frame
        if (new_w, new_h) == (w, h)
        else cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    )
    out.fill(PAD_VALUE / 255.0)
    region = out[:, lb.pad_y : lb.pad_y + new_h, lb.pad_x : lb.pad_x + new_w]
    # BGR → RGB by reversing the channel axis of the HWC → CHW view; one pass, no temporaries
    np.multiply(img.transpose(2, 0, 1)[::-1], np.float32(1.0 / 255.0), out=region, casting="unsafe")
    return out, lb


def preprocess_batch(
    frames: list[np.ndarray],
    input_size: tuple[int, int] = (320, 320),
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, list[Letterbox]]:
    """Letterbox several frames into one ``float32 [N, 3, h, w]`` batch (or into ``out``)."""
    in_w, in_h = input_size
    n = len(frames)
    if out is None:
        out = np.empty((n, 3, in_h, in_w), np.float32)
    elif out.ndim != 4 or out.shape[0] < n or out.shape[1:] != (3, in_h, in_w):
        raise ValueError(f"out must be float32 (>={n}, 3, {in_h}, {in_w}), got {out.shape}")
    boxes = [preprocess(f, input_size, out[i])[1] for i, f in enumerate(frames)]
    return out[:n], boxes
