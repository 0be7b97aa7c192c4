"""Mirror of ``kernels/resize.cu``: ONNX Resize / Upsample (nearest, linear) over H and W.

The coordinate arithmetic is the engine reference's own (``edge_infer.engine.ops.resize``):
:func:`resize_tables` runs its output-shape plan and per-axis tap functions on the host and
returns the small index/weight tables the kernel gathers with (copy them to the device once,
at build time: Resize's scales/sizes are constants). Cubic and antialiased resizes, integer
data and resizes of the batch or channel axes are refused (they stay on the CPU reference).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_infer.cuda.library import KernelCall, KernelSpec
from edge_infer.cuda.params import image_batch_stride, ptr
from edge_infer.engine.ops.resize import _check_modes, _source_coords, axis_taps, plan_resize
from edge_infer.errors import BackendError, ShapeInferenceError

BLOCK = 128
_TYPES = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16"}


class ResizeParams(ctypes.Structure):
    """``struct ResizeParams``."""

    _fields_ = [
        ("x", ctypes.c_void_p),
        ("y", ctypes.c_void_p),
        ("row_index", ctypes.c_void_p),
        ("row_weight", ctypes.c_void_p),
        ("col_index", ctypes.c_void_p),
        ("col_weight", ctypes.c_void_p),
        ("x_batch_stride", ctypes.c_int64),
        ("y_batch_stride", ctypes.c_int64),
        *((name, ctypes.c_int32) for name in ("n", "c", "h", "w", "out_h", "out_w")),
        ("extrapolation_value", ctypes.c_float),
        ("cols_first", ctypes.c_int32),
    ]


SPECS = tuple(KernelSpec(f"ei_resize_{t}", "resize.cu", ResizeParams) for t in ("f32", "f16"))


@dataclass(frozen=True)
class ResizeTables:
    """Host tables of one Resize node: ``int32 [out, 2]`` indices (-1: outside the crop) and
    ``float32 [out, 2]`` weights (None: take the first index) per spatial axis."""

    out_shape: tuple[int, int, int, int]
    row_index: np.ndarray
    row_weight: np.ndarray | None
    col_index: np.ndarray
    col_weight: np.ndarray | None
    cols_first: bool
    extrapolation_value: float


def resize_tables(
    shape: Sequence[int],
    *,
    scales: np.ndarray | None = None,
    sizes: np.ndarray | None = None,
    roi: np.ndarray | None = None,
    mode: str = "nearest",
    coordinate_transformation_mode: str = "half_pixel",
    nearest_mode: str = "round_prefer_floor",
    extrapolation_value: float = 0.0,
    axes: Sequence[int] | None = None,
    keep_aspect_ratio_policy: str = "stretch",
    antialias: int = 0,
) -> ResizeTables:
    """The tables of a Resize of an NCHW ``shape`` with these ONNX inputs and attributes
    (Resize-10 / Upsample: ``coordinate_transformation_mode="asymmetric"``,
    ``nearest_mode="simple"``)."""
    if len(shape) != 4 or mode not in ("nearest", "linear") or antialias:
        raise BackendError(
            f"the CUDA resize takes nearest or linear (no antialias) over an "
            f"NCHW tensor; got mode {mode!r}, antialias {antialias}, shape "
            f"{list(shape)} (run it on the CPU reference)"
        )
    try:
        _check_modes(
            "Resize",
            mode,
            coordinate_transformation_mode,
            "round_prefer_floor" if nearest_mode == "simple" else nearest_mode,
        )
        plan = plan_resize("Resize", shape, scales, sizes, axes, keep_aspect_ratio_policy)
    except ShapeInferenceError as exc:
        raise BackendError(str(exc)) from None
    crop = coordinate_transformation_mode == "tf_crop_and_resize"
    bounds = {a: (0.0, 1.0) for a in range(4)}
    if crop:
        flat = [] if roi is None else np.asarray(roi, np.float64).ravel().tolist()
        if len(flat) != 2 * len(plan.axes):
            raise BackendError(f"tf_crop_and_resize needs roi with {2 * len(plan.axes)} values")
        for k, axis in enumerate(plan.axes):
            bounds[axis] = (flat[k], flat[k + len(plan.axes)])
    tables: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
    for axis in range(4):
        in_len, out_len = int(shape[axis]), plan.out[axis]
        identity = out_len == in_len and plan.scales[axis] == 1.0 and bounds[axis] == (0.0, 1.0)
        if axis < 2:
            if not identity:
                raise BackendError(f"the CUDA resize resizes H and W only, not axis {axis}")
            continue
        if identity or axis not in plan.axes:
            index = np.repeat(np.arange(out_len, dtype=np.int32)[:, None], 2, axis=1)
            tables[axis] = (index, None)
            continue
        x = _source_coords(
            coordinate_transformation_mode,
            out_len,
            in_len,
            plan.scales[axis],
            plan.lengths[axis],
            bounds[axis],
        )
        idx, weights = axis_taps(mode, x, in_len, plan.scales[axis], nearest_mode, -0.75, 0)
        index = np.repeat(idx[:, :1], 2, axis=1) if weights is None else idx
        index = np.ascontiguousarray(index, dtype=np.int32)
        if crop:
            index[(x < 0) | (x > in_len - 1), 0] = -1
        w = None if weights is None else np.ascontiguousarray(weights, dtype=np.float32)
        tables[axis] = (index, w)
    order = [a for a in plan.axes if a >= 2]
    return ResizeTables(
        out_shape=tuple(plan.out),  # type: ignore[arg-type]
        row_index=tables[2][0],
        row_weight=tables[2][1],
        col_index=tables[3][0],
        col_weight=tables[3][1],
        cols_first=order == [3, 2],
        extrapolation_value=float(extrapolation_value),
    )


def resize(
    x: Any,
    y: Any,
    tables: ResizeTables,
    row_index: Any,
    row_weight: Any,
    col_index: Any,
    col_weight: Any,
) -> KernelCall:
    """The call resizing ``x`` into ``y`` (may be a channel slice of a concat's buffer) with
    ``tables`` whose four arrays are given as copied to the device (weights None where the
    table has none)."""
    dtype = np.dtype(x.dtype)
    if dtype not in _TYPES or np.dtype(y.dtype) != dtype or len(x.shape) != 4:
        raise BackendError(
            f"resize: x and y must be float32 or float16 NCHW of one dtype, got "
            f"{dtype.name} {tuple(x.shape)} -> {np.dtype(y.dtype).name}"
        )
    want = (*x.shape[:2], *tables.out_shape[2:])
    if tuple(y.shape) != want or tables.out_shape[:2] != tuple(x.shape[:2]):
        raise BackendError(
            f"resize: y must have shape {want} (tables for "
            f"{tables.out_shape}), got {tuple(y.shape)}"
        )
    if (row_weight is None) != (tables.row_weight is None) or (col_weight is None) != (
        tables.col_weight is None
    ):
        raise BackendError("resize: pass the tables' weights exactly where the tables have them")
    n, c, h, w = (int(d) for d in x.shape)
    out_h, out_w = tables.out_shape[2:]
    params = ResizeParams(
        x=ptr(x),
        y=ptr(y),
        row_index=ptr(row_index),
        row_weight=ptr(row_weight),
        col_index=ptr(col_index),
        col_weight=ptr(col_weight),
        x_batch_stride=image_batch_stride("resize", "x", x),
        y_batch_stride=image_batch_stride("resize", "y", y),
        n=n,
        c=c,
        h=h,
        w=w,
        out_h=out_h,
        out_w=out_w,
        extrapolation_value=tables.extrapolation_value,
        cols_first=int(tables.cols_first),
    )
    grid = (max(1, -(-out_h * out_w // BLOCK)), c, n)
    return KernelCall(f"ei_resize_{_TYPES[dtype]}", grid, (BLOCK, 1, 1), params)
