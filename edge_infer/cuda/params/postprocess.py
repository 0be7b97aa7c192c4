"""Mirror of ``kernels/postprocess.cu``: YOLO decode + class-aware NMS, one block per image.

The kernel makes the decisions of ``edge_infer.pipeline.postprocess.decode`` (same candidates,
same order, same kept set, same boxes); this module plans its launch: the params struct, the
per-image workspace (sort keys, candidate boxes, float64 NMS boxes, the suppression bitmask)
and the output arrays the daemon publishes — ``boxes [B, max_detections, 4]`` float32 xyxy,
``scores [B, max_detections]`` float32, ``classes [B, max_detections]`` int32 and
``counts [B]`` int32 (slots past ``counts[i]`` are left untouched).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from edge_infer.cuda.library import KernelCall, KernelSpec
from edge_infer.cuda.params import ptr
from edge_infer.errors import BackendError

#: the kernel's layout codes, by the names postprocess.decode uses
LAYOUTS = {"yolov8": 0, "yolov5": 1}
#: what the class scores are, as ``postprocess.decode(scores=...)`` names it
SCORE_KINDS = ("probabilities", "logits")
#: widest NMS the kernel takes (its removed-mask lives in shared memory): EI_PP_MAX_CANDIDATES
MAX_CANDIDATES = 8192


class PostprocessParams(ctypes.Structure):
    """``struct PostprocessParams``."""

    _fields_ = [
        ("pred", ctypes.c_void_p),
        ("mapping", ctypes.c_void_p),
        ("workspace", ctypes.c_void_p),
        ("boxes", ctypes.c_void_p),
        ("scores", ctypes.c_void_p),
        ("classes", ctypes.c_void_p),
        ("counts", ctypes.c_void_p),
        ("pred_batch_stride", ctypes.c_int64),
        ("ws_stride", ctypes.c_int64),
        ("ws_sort_score", ctypes.c_int64),
        ("ws_sort_index", ctypes.c_int64),
        ("ws_box", ctypes.c_int64),
        ("ws_score", ctypes.c_int64),
        ("ws_class", ctypes.c_int64),
        ("ws_dbox", ctypes.c_int64),
        ("ws_mask", ctypes.c_int64),
        # a double: the reference compares float64 IoUs with a float64 threshold, and
        # float32(0.45) != 0.45 would move the decision boundary
        ("iou_threshold", ctypes.c_double),
        ("num_anchors", ctypes.c_int32),
        ("num_classes", ctypes.c_int32),
        ("sort_len", ctypes.c_int32),
        ("max_candidates", ctypes.c_int32),
        ("max_detections", ctypes.c_int32),
        ("score_threshold", ctypes.c_float),
        ("logits", ctypes.c_int32),
    ]


SPECS = tuple(
    KernelSpec(f"ei_postprocess_{name}", "postprocess.cu", PostprocessParams) for name in LAYOUTS
)


@dataclass(frozen=True)
class Workspace:
    """Byte offsets of one image's scratch arrays; ``stride`` bytes per image."""

    sort_len: int
    max_candidates: int
    sort_score: int
    sort_index: int
    box: int
    score: int
    cls: int
    dbox: int
    mask: int
    stride: int


def workspace_layout(num_anchors: int, max_candidates: int = 4096) -> Workspace:
    """The scratch layout for ``num_anchors`` anchors of which at most ``max_candidates``
    enter NMS (capped at the anchor count)."""
    if num_anchors < 1:
        raise BackendError(f"a detector output needs at least one anchor, got {num_anchors}")
    cand = max(0, min(int(max_candidates), int(num_anchors)))
    if cand > MAX_CANDIDATES:
        raise BackendError(
            f"max_candidates {cand} exceeds the kernel's {MAX_CANDIDATES}; "
            f"lower max_candidates (decode's default is 4096)"
        )
    sort_len = 1 << max(0, int(num_anchors - 1).bit_length())
    words = -(-cand // 64)
    offsets, at = [], 0
    for size in (
        4 * sort_len,
        4 * sort_len,
        16 * cand,
        4 * cand,
        4 * cand,
        32 * cand,
        8 * cand * words,
    ):
        offsets.append(at)
        at += -(-size // 16) * 16  # 16-byte aligned arrays
    return Workspace(sort_len, cand, *offsets, stride=max(at, 16))


class BoxMapping(Protocol):
    """What the kernel needs of a letterbox (``pipeline.preprocess.Letterbox`` has it)."""

    scale: float
    pad_x: float
    pad_y: float
    width: int
    height: int


def mapping_table(mappings: Sequence[BoxMapping]) -> np.ndarray:
    """``float32 [B, 5]``: scale, pad_x, pad_y, width, height of each image (float32, as the
    reference's numpy arithmetic rounds them)."""
    return np.array(
        [[m.scale, m.pad_x, m.pad_y, m.width, m.height] for m in mappings], np.float32
    ).reshape(-1, 5)


def _check(name: str, array: Any, shape: tuple[int, ...], dtype: Any) -> None:
    if tuple(array.shape) != shape or np.dtype(array.dtype) != np.dtype(dtype):
        raise BackendError(
            f"postprocess: {name} must be {np.dtype(dtype).name} {shape}, got "
            f"{np.dtype(array.dtype).name} {tuple(array.shape)}"
        )


def decode(
    pred: Any,
    layout: str,
    *,
    workspace: Any,
    boxes: Any,
    scores: Any,
    classes: Any,
    counts: Any,
    mapping: Any = None,
    score_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_detections: int = 300,
    max_candidates: int = 4096,
    score_kind: str = "probabilities",
    block: int = 256,
) -> KernelCall:
    """The call that decodes ``pred`` (float32 ``[B, 4 + C, N]`` for yolov8, ``[B, N, 5 + C]``
    for yolov5, C-contiguous) into the output arrays; arguments as in
    ``pipeline.postprocess.decode`` (whose ``scores`` is ``score_kind`` here). ``workspace``
    is uint8 of at least ``B * workspace_layout(N, max_candidates).stride`` bytes;
    ``mapping`` is :func:`mapping_table` on the device, or None (boxes stay in input pixels,
    unclipped).
    """
    if layout not in LAYOUTS:
        raise BackendError(f"unknown output layout {layout!r}; expected one of {list(LAYOUTS)}")
    if len(pred.shape) != 3 or np.dtype(pred.dtype) != np.float32:
        raise BackendError(
            f"postprocess: pred must be float32 [B, ...], got "
            f"{np.dtype(pred.dtype).name} {tuple(pred.shape)}"
        )
    b = int(pred.shape[0])
    if layout == "yolov8":
        c, n = int(pred.shape[1]) - 4, int(pred.shape[2])
    else:
        n, c = int(pred.shape[1]), int(pred.shape[2]) - 5
    if b < 1 or c < 1 or n < 1:
        raise BackendError(f"{layout} output {tuple(pred.shape)} has no image, class or anchor")
    if score_kind not in SCORE_KINDS:
        raise BackendError(f"score_kind must be one of {SCORE_KINDS}, got {score_kind!r}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise BackendError(f"iou_threshold must be within [0, 1], got {iou_threshold}")
    # up to 512 threads: the kernel takes 72 registers on sm_72 (64K per block)
    if max_detections < 0 or block % 32 or not 32 <= block <= 512:
        raise BackendError(
            f"max_detections must be >= 0 ({max_detections}) and block a "
            f"multiple of 32 up to 512 ({block})"
        )
    ws = workspace_layout(n, max_candidates)
    _check("boxes", boxes, (b, max_detections, 4), np.float32)
    _check("scores", scores, (b, max_detections), np.float32)
    _check("classes", classes, (b, max_detections), np.int32)
    _check("counts", counts, (b,), np.int32)
    if mapping is not None:
        _check("mapping", mapping, (b, 5), np.float32)
    if len(workspace.shape) != 1 or int(workspace.nbytes) < b * ws.stride:
        raise BackendError(
            f"postprocess: workspace must be a 1-D buffer of at least "
            f"{b * ws.stride} bytes (workspace_layout), got {workspace.nbytes}"
        )
    params = PostprocessParams(
        pred=ptr(pred),
        mapping=ptr(mapping),
        workspace=ptr(workspace),
        boxes=ptr(boxes),
        scores=ptr(scores),
        classes=ptr(classes),
        counts=ptr(counts),
        pred_batch_stride=n * (c + 4 + LAYOUTS[layout]),
        ws_stride=ws.stride,
        ws_sort_score=ws.sort_score,
        ws_sort_index=ws.sort_index,
        ws_box=ws.box,
        ws_score=ws.score,
        ws_class=ws.cls,
        ws_dbox=ws.dbox,
        ws_mask=ws.mask,
        iou_threshold=float(iou_threshold),
        num_anchors=n,
        num_classes=c,
        sort_len=ws.sort_len,
        max_candidates=ws.max_candidates,
        max_detections=int(max_detections),
        score_threshold=float(score_threshold),
        logits=int(score_kind == "logits"),
    )
    return KernelCall(f"ei_postprocess_{layout}", (max(b, 1), 1, 1), (block, 1, 1), params)
