"""Mirror of ``kernels/preprocess.cu``: a batch of BGR frames -> the detector's NCHW input.

The letterbox geometry is the daemon's (``edge_infer.pipeline.preprocess.letterbox_geometry``):
the caller passes each frame's :class:`Letterbox`-like mapping, and :func:`frame_table` turns
frames + mappings into the kernel's per-frame descriptors (this package does not import the
pipeline: cv2 lives there). The resize replays cv2's INTER_LINEAR integer arithmetic: the
output equals the daemon's ``preprocess`` (see the kernel's header comment).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from edge_infer.cuda.library import KernelCall, KernelSpec
from edge_infer.cuda.params import ptr
from edge_infer.errors import BackendError

#: the daemon's letterbox gray, as preprocess.py fills it (float32 of 114 / 255)
PAD_VALUE = 114
BLOCK = 128
#: output rows per block (EI_PRE_ROWS in the kernel)
ROWS = 16


class PreprocessFrame(ctypes.Structure):
    """``struct PreprocessFrame``: one frame's address, size, pitch and letterbox."""

    _fields_ = [
        ("data", ctypes.c_void_p),
        # cv::resize's scale (1 / (new / old) in double): part of its coordinate arithmetic
        ("scale_x", ctypes.c_double),
        ("scale_y", ctypes.c_double),
        ("width", ctypes.c_int32),
        ("height", ctypes.c_int32),
        ("row_pitch", ctypes.c_int32),
        ("new_width", ctypes.c_int32),
        ("new_height", ctypes.c_int32),
        ("pad_x", ctypes.c_int32),
        ("pad_y", ctypes.c_int32),
        ("reserved", ctypes.c_int32),
    ]


class PreprocessParams(ctypes.Structure):
    """``struct PreprocessParams``."""

    _fields_ = [
        ("frames", ctypes.c_void_p),
        ("out", ctypes.c_void_p),
        ("batch_stride", ctypes.c_int64),
        ("batch", ctypes.c_int32),
        ("width", ctypes.c_int32),
        ("height", ctypes.c_int32),
        ("pad_value", ctypes.c_float),
        ("inv_255", ctypes.c_float),
        ("reserved", ctypes.c_int32),
    ]


SPECS = tuple(
    KernelSpec(f"ei_preprocess_letterbox_{t}", "preprocess.cu", PreprocessParams)
    for t in ("f32", "f16")
)


class Letterbox(Protocol):
    """What the kernel needs of ``pipeline.preprocess.Letterbox``."""

    scale: float
    pad_x: int
    pad_y: int
    width: int
    height: int
    input_width: int
    input_height: int


def frame_table(frames: Sequence[Any], letterboxes: Sequence[Letterbox]) -> np.ndarray:
    """The per-frame descriptors (bytes of ``PreprocessFrame[B]``, to copy to the device).

    ``frames[i]`` is a uint8 ``[H, W, 3]`` BGR array whose rows may be padded (a numpy array
    or a pycuda GPUArray; its rows are ``strides[0]`` bytes apart, its pixels packed);
    ``letterboxes[i]`` its letterbox from ``letterbox_geometry``.
    """
    if len(frames) != len(letterboxes) or not frames:
        raise BackendError(
            f"{len(frames)} frames and {len(letterboxes)} letterboxes: give "
            f"one letterbox per frame, at least one frame"
        )
    table = (PreprocessFrame * len(frames))()
    for i, (frame, lb) in enumerate(zip(frames, letterboxes, strict=True)):
        if (
            len(frame.shape) != 3
            or frame.shape[2] != 3
            or np.dtype(frame.dtype) != np.uint8
            or tuple(frame.strides[1:]) != (3, 1)
        ):
            raise BackendError(
                f"frame {i} must be uint8 [H, W, 3] BGR with packed pixels, got "
                f"{np.dtype(frame.dtype).name} {tuple(frame.shape)} strides "
                f"{tuple(frame.strides)}"
            )
        h, w = int(frame.shape[0]), int(frame.shape[1])
        if (w, h) != (lb.width, lb.height):
            raise BackendError(
                f"frame {i} is {w}x{h} but its letterbox was computed for {lb.width}x{lb.height}"
            )
        # the resized size exactly as pipeline/preprocess.py rounds it
        new_w, new_h = round(w * lb.scale), round(h * lb.scale)
        table[i] = PreprocessFrame(
            data=ptr(frame),
            scale_x=1.0 / (new_w / w),
            scale_y=1.0 / (new_h / h),
            width=w,
            height=h,
            row_pitch=int(frame.strides[0]),
            new_width=new_w,
            new_height=new_h,
            pad_x=int(lb.pad_x),
            pad_y=int(lb.pad_y),
            reserved=0,
        )
    return np.frombuffer(bytes(table), np.uint8).copy()


def letterbox(table: Any, batch: int, out: Any) -> KernelCall:
    """The call that fills ``out`` (float32 or float16 ``[>= batch, 3, h, w]``, each image
    C-contiguous, e.g. the engine's input binding) from the frames of ``table``
    (:func:`frame_table` on the device)."""
    dtype = np.dtype(out.dtype)
    if dtype not in (np.float32, np.float16) or len(out.shape) != 4 or out.shape[1] != 3:
        raise BackendError(
            f"out must be float32 or float16 [N, 3, h, w], got {dtype.name} {tuple(out.shape)}"
        )
    n, _, h, w = (int(d) for d in out.shape)
    inner = (3 * h * w * dtype.itemsize, h * w * dtype.itemsize, w * dtype.itemsize, dtype.itemsize)
    if tuple(out.strides[1:]) != inner[1:] or out.strides[0] % dtype.itemsize:
        raise BackendError(f"each image of out must be C-contiguous, got strides {out.strides}")
    if not 1 <= batch <= n or int(table.nbytes) < batch * ctypes.sizeof(PreprocessFrame):
        raise BackendError(
            f"batch {batch} needs 1..{n} images and {batch} frame descriptors "
            f"({int(table.nbytes)} bytes given)"
        )
    params = PreprocessParams(
        frames=ptr(table),
        out=ptr(out),
        batch_stride=int(out.strides[0]) // dtype.itemsize,
        batch=int(batch),
        width=w,
        height=h,
        pad_value=float(np.float32(PAD_VALUE / 255.0)),
        inv_255=float(np.float32(1.0 / 255.0)),
        reserved=0,
    )
    entry = "ei_preprocess_letterbox_" + ("f32" if dtype == np.float32 else "f16")
    return KernelCall(entry, (-(-w // BLOCK), -(-h // ROWS), int(batch)), (BLOCK, 1, 1), params)
