"""Convolutions: Conv and ConvTranspose (1-D, 2-D and 3-D; groups, dilations, auto_pad).

Conv is im2col: pad once, take a strided window view of the padded input and contract it
with the weights in one batched matmul over the groups. Depthwise convolutions (one input
channel per group) instead accumulate over kernel taps, vectorised over pixels and channels,
so a 512-group layer costs nine array operations rather than 512 small GEMMs.
ConvTranspose is the adjoint: one matmul to columns, then a scatter-add per kernel tap.

Float16 is accumulated in float32, as onnxruntime does. ``window_geometry`` (pads and output
sizes from auto_pad/pads/strides/dilations) is shared with the pooling ops.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from edge_infer.engine.ir import TensorType
from edge_infer.engine.ops.registry import InferContext, OpList
from edge_infer.errors import ShapeInferenceError

OPS = OpList()

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def accumulation_dtype(dtype: np.dtype) -> np.dtype:
    """float16 is accumulated in float32; every other dtype in itself."""
    return np.dtype(np.float32) if np.dtype(dtype) == np.float16 else np.dtype(dtype)


def _ints(op: str, name: str, value: Sequence[int] | None, n: int, default: int) -> list[int]:
    if value is None or len(value) == 0:
        return [default] * n
    if len(value) != n:
        raise ShapeInferenceError(
            f"{op}: attribute '{name}' has {len(value)} values, expected {n} "
            f"(one per spatial axis), got {list(value)}"
        )
    return [int(v) for v in value]


def window_geometry(
    op: str,
    spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int] | None,
    dilations: Sequence[int] | None,
    pads: Sequence[int] | None,
    auto_pad: str,
    ceil_mode: int = 0,
) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    """Resolve a sliding-window layer: ``(strides, dilations, pad_begin, pad_end, out)``.

    ``pad_end`` is the explicit (or auto) padding; with ``ceil_mode`` the last window may read
    past it (see :func:`padded_end`). A last window that would start in the end padding is
    dropped, as onnxruntime and PyTorch do.
    """
    n = len(spatial)
    strides = _ints(op, "strides", strides, n, 1)
    dilations = _ints(op, "dilations", dilations, n, 1)
    if len(kernel) != n:
        raise ShapeInferenceError(
            f"{op}: kernel_shape {list(kernel)} has {len(kernel)} axes, input has {n} spatial axes"
        )
    if min(strides, default=1) < 1 or min(dilations, default=1) < 1 or min(kernel, default=1) < 1:
        raise ShapeInferenceError(
            f"{op}: kernel_shape {list(kernel)}, strides {strides} and dilations {dilations} "
            "must all be >= 1"
        )
    if auto_pad not in AUTO_PADS:
        raise ShapeInferenceError(f"{op}: auto_pad must be one of {AUTO_PADS}, got {auto_pad!r}")
    effective = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    begin, end, out = [0] * n, [0] * n, [0] * n
    for i, (size, eff, s) in enumerate(zip(spatial, effective, strides, strict=True)):
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out[i] = -(-size // s)
            total = max(0, (out[i] - 1) * s + eff - size)
            small, large = total // 2, total - total // 2
            begin[i], end[i] = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
            continue
        if auto_pad == "NOTSET" and pads:
            if len(pads) != 2 * n:
                raise ShapeInferenceError(
                    f"{op}: attribute 'pads' has {len(pads)} values, expected {2 * n} "
                    f"(begin and end per spatial axis), got {list(pads)}"
                )
            if min(pads) < 0:
                raise ShapeInferenceError(f"{op}: pads must be >= 0, got {list(pads)}")
            begin[i], end[i] = int(pads[i]), int(pads[i + n])
        span = size + begin[i] + end[i] - eff
        if span < 0:
            raise ShapeInferenceError(
                f"{op}: the (dilated) kernel {eff} is larger than the padded input "
                f"{size + begin[i] + end[i]} on spatial axis {i}"
            )
        if ceil_mode and auto_pad == "NOTSET":
            out[i] = -(-span // s) + 1
            if (out[i] - 1) * s >= size + begin[i]:
                out[i] -= 1
        else:
            out[i] = span // s + 1
    return strides, dilations, begin, end, out


def padded_end(
    spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    begin: Sequence[int],
    end: Sequence[int],
    out: Sequence[int],
) -> list[int]:
    """End padding that covers every window (``end`` plus what ``ceil_mode`` windows need)."""
    return [
        max(e, (o - 1) * s + (k - 1) * d + 1 - size - b)
        for size, k, s, d, b, e, o in zip(
            spatial, kernel, strides, dilations, begin, end, out, strict=True
        )
    ]


def pad_spatial(
    x: np.ndarray, begin: Sequence[int], end: Sequence[int], value: float
) -> np.ndarray:
    """Pad the trailing spatial axes of ``x`` (no copy when there is nothing to pad)."""
    if not any(begin) and not any(end):
        return x
    widths = [(0, 0)] * (x.ndim - len(begin)) + list(zip(begin, end, strict=True))
    return np.pad(x, widths, mode="constant", constant_values=value)


def tap_view(
    xp: np.ndarray,
    tap: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    out: Sequence[int],
) -> np.ndarray:
    """The strided view of padded ``xp`` that kernel tap ``tap`` reads for every output."""
    lead = (slice(None),) * (xp.ndim - len(tap))
    return xp[
        lead
        + tuple(
            slice(t * d, t * d + (o - 1) * s + 1, s)
            for t, s, d, o in zip(tap, strides, dilations, out, strict=True)
        )
    ]


def window_view(
    xp: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    out: Sequence[int],
) -> np.ndarray:
    """``(..., *out, *kernel)`` strided view of padded ``xp`` (no copy)."""
    n = len(kernel)
    axes = tuple(range(xp.ndim - n, xp.ndim))
    effective = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    view = np.lib.stride_tricks.sliding_window_view(xp, effective, axis=axes)
    lead = (slice(None),) * (xp.ndim - n)
    positions = tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out, strides, strict=True))
    taps = tuple(slice(None, None, d) for d in dilations)
    return view[lead + positions + taps]


def _conv_kernel_shape(
    op: str, w_shape: Sequence[int], kernel_shape: Sequence[int] | None
) -> list[int]:
    kernel = list(w_shape[2:])
    if kernel_shape and list(kernel_shape) != kernel:
        raise ShapeInferenceError(
            f"{op}: kernel_shape {list(kernel_shape)} does not match the weights' spatial "
            f"shape {kernel}"
        )
    return kernel


def _check_conv_inputs(ctx: InferContext, transpose: bool) -> tuple[int, int]:
    x, w = ctx.shape(0), ctx.shape(1)
    op = ctx.node.op_type
    group = int(ctx.attrs.get("group", 1))
    if len(x) < 3 or len(w) != len(x):
        ctx.fail(f"X must be (N, C, spatial...) and W of the same rank; got X {x}, W {w}")
    if group < 1 or x[1] % group:
        ctx.fail(f"attribute 'group'={group} must be >= 1 and divide the {x[1]} input channels")
    if transpose:
        if w[0] != x[1]:
            ctx.fail(f"{op} weights have {w[0]} input channels, X has {x[1]}")
        m = w[1] * group
    else:
        if w[1] * group != x[1]:
            ctx.fail(f"W has {w[1]} channels per group x group={group}, X has {x[1]} channels")
        if w[0] % group:
            ctx.fail(f"{w[0]} output channels are not divisible by group={group}")
        m = w[0]
    if ctx.has(2) and tuple(ctx.shape(2)) != (m,):
        ctx.fail(f"bias B must have shape ({m},), got {ctx.shape(2)}")
    if ctx.dtype(1) != ctx.dtype(0):
        ctx.fail(f"X and W must have the same dtype, got {ctx.dtype(0)} and {ctx.dtype(1)}")
    return group, m


def _infer_conv(ctx: InferContext) -> list[TensorType]:
    _, m = _check_conv_inputs(ctx, transpose=False)
    x, w = ctx.shape(0), ctx.shape(1)
    a = ctx.attrs
    try:
        kernel = _conv_kernel_shape("Conv", w, a.get("kernel_shape"))
        *_, out = window_geometry(
            "Conv",
            x[2:],
            kernel,
            a.get("strides"),
            a.get("dilations"),
            a.get("pads"),
            a.get("auto_pad", "NOTSET"),
        )
    except ShapeInferenceError as exc:
        ctx.fail(str(exc))
    return [TensorType((x[0], m, *out), ctx.dtype(0))]


@OPS.register("Conv", 1, infer=_infer_conv)
def conv(
    X: np.ndarray,
    W: np.ndarray,
    B: np.ndarray | None = None,
    *,
    auto_pad: str = "NOTSET",
    dilations: list[int] | None = None,
    group: int = 1,
    kernel_shape: list[int] | None = None,
    pads: list[int] | None = None,
    strides: list[int] | None = None,
) -> np.ndarray:
    """N-d grouped convolution (cross-correlation) of ``X`` (N, C, ...) with ``W`` (M, C/g, ...)."""
    kernel = _conv_kernel_shape("Conv", W.shape, kernel_shape)
    strides, dilations, begin, end, out = window_geometry(
        "Conv", X.shape[2:], kernel, strides, dilations, pads, auto_pad
    )
    acc = accumulation_dtype(X.dtype)
    x = pad_spatial(np.asarray(X, dtype=acc), begin, end, 0)
    w = np.asarray(W, dtype=acc)
    n = X.shape[0]
    m, cg = W.shape[:2]
    g = int(group)
    mg = m // g
    if cg == 1 and g > 1:
        # depthwise (with channel multiplier mg): accumulate over taps, vectorised over pixels
        wg = w.reshape(g, mg, -1)
        y = np.zeros((n, g, mg, *out), dtype=acc)
        bcast = (slice(None), slice(None)) + (None,) * len(out)
        for k, tap in enumerate(itertools.product(*(range(t) for t in kernel))):
            xs = tap_view(x, tap, strides, dilations, out)
            y += xs[:, :, None] * wg[:, :, k][bcast]
        y = y.reshape(n, m, *out)
    else:
        view = window_view(x, kernel, strides, dilations, out)  # (N, C, *out, *kernel)
        spatial = len(out)
        # im2col per group as (cg * kernel, N * pixels): the pixel axis innermost keeps the
        # copy out of the strided view fast, and each group is one plain 2-D GEMM (numpy's
        # stacked matmul does not always reach BLAS)
        view = view.reshape(n, g, cg, *view.shape[2:])
        order = (1, 2, *range(3 + spatial, 3 + 2 * spatial), 0, *range(3, 3 + spatial))
        cols = view.transpose(order).reshape(g, cg * math.prod(kernel), n * math.prod(out))
        wg = w.reshape(g, mg, -1)
        y = np.empty((g, mg, n * math.prod(out)), dtype=acc)
        for k in range(g):
            np.matmul(wg[k], cols[k], out=y[k])
        y = y.reshape(g, mg, n, *out).swapaxes(0, 2).swapaxes(1, 2).reshape(n, m, *out)
    if B is not None:
        y = y + np.asarray(B, dtype=acc).reshape((m,) + (1,) * len(out))
    return y.astype(X.dtype, copy=False)


# -- ConvTranspose -----------------------------------------------------------------------------


def transpose_geometry(
    spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int] | None,
    dilations: Sequence[int] | None,
    pads: Sequence[int] | None,
    auto_pad: str,
    output_padding: Sequence[int] | None,
    output_shape: Sequence[int] | None,
) -> tuple[list[int], list[int], list[int], list[int]]:
    """``(strides, dilations, pad_begin, out)`` of a ConvTranspose, per the ONNX formulas."""
    op, n = "ConvTranspose", len(spatial)
    strides = _ints(op, "strides", strides, n, 1)
    dilations = _ints(op, "dilations", dilations, n, 1)
    adjust = _ints(op, "output_padding", output_padding, n, 0)
    if auto_pad not in AUTO_PADS:
        raise ShapeInferenceError(f"{op}: auto_pad must be one of {AUTO_PADS}, got {auto_pad!r}")
    full = [
        s * (i - 1) + a + (k - 1) * d + 1
        for i, k, s, d, a in zip(spatial, kernel, strides, dilations, adjust, strict=True)
    ]
    if output_shape:
        out = [int(v) for v in output_shape][-n:]
        if len(out) != n:
            raise ShapeInferenceError(f"{op}: output_shape {list(output_shape)} needs {n} axes")
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = [i * s for i, s in zip(spatial, strides, strict=True)]
    else:
        out = []
    if out:
        total = [f - o for f, o in zip(full, out, strict=True)]
        # the ONNX spec: SAME_UPPER puts the smaller half first, everything else the larger
        upper = auto_pad == "SAME_UPPER"
        begin = [t // 2 if upper else t - t // 2 for t in total]
        return strides, dilations, begin, out
    if auto_pad == "VALID" or not pads:
        return strides, dilations, [0] * n, full
    if len(pads) != 2 * n:
        raise ShapeInferenceError(f"{op}: attribute 'pads' needs {2 * n} values, got {list(pads)}")
    begin = [int(p) for p in pads[:n]]
    out = [f - b - int(e) for f, b, e in zip(full, begin, pads[n:], strict=True)]
    if min(out) < 1:
        raise ShapeInferenceError(f"{op}: pads {list(pads)} leave an empty output {out}")
    return strides, dilations, begin, out


def _infer_conv_transpose(ctx: InferContext) -> list[TensorType]:
    _, m = _check_conv_inputs(ctx, transpose=True)
    x, w = ctx.shape(0), ctx.shape(1)
    a = ctx.attrs
    try:
        kernel = _conv_kernel_shape("ConvTranspose", w, a.get("kernel_shape"))
        *_, out = transpose_geometry(
            x[2:],
            kernel,
            a.get("strides"),
            a.get("dilations"),
            a.get("pads"),
            a.get("auto_pad", "NOTSET"),
            a.get("output_padding"),
            a.get("output_shape"),
        )
    except ShapeInferenceError as exc:
        ctx.fail(str(exc))
    return [TensorType((x[0], m, *out), ctx.dtype(0))]


@OPS.register("ConvTranspose", 1, infer=_infer_conv_transpose)
def conv_transpose(
    X: np.ndarray,
    W: np.ndarray,
    B: np.ndarray | None = None,
    *,
    auto_pad: str = "NOTSET",
    dilations: list[int] | None = None,
    group: int = 1,
    kernel_shape: list[int] | None = None,
    output_padding: list[int] | None = None,
    output_shape: list[int] | None = None,
    pads: list[int] | None = None,
    strides: list[int] | None = None,
) -> np.ndarray:
    """Transposed convolution of ``X`` (N, C, ...) with ``W`` (C, M/g, ...): matmul + col2im."""
    kernel = _conv_kernel_shape("ConvTranspose", W.shape, kernel_shape)
    spatial = list(X.shape[2:])
    strides, dilations, begin, out = transpose_geometry(
        spatial, kernel, strides, dilations, pads, auto_pad, output_padding, output_shape
    )
    acc = accumulation_dtype(X.dtype)
    n, c = X.shape[:2]
    g = int(group)
    cg, mg = c // g, W.shape[1]
    m = mg * g
    x = np.asarray(X, dtype=acc).reshape(n, g, cg, -1)
    w = np.asarray(W, dtype=acc).reshape(g, cg, -1).transpose(0, 2, 1)  # (g, mg*K, cg)
    cols = np.matmul(w, x).reshape(n, m, *kernel, *spatial)  # (N, M, *kernel, *in)
    # canvas covering both the full transposed output and the requested window
    low = [min(0, b) for b in begin]
    size = [
        max((i - 1) * s + (k - 1) * d + 1, b + o) - lo
        for i, k, s, d, b, o, lo in zip(
            spatial, kernel, strides, dilations, begin, out, low, strict=True
        )
    ]
    canvas = np.zeros((n, m, *size), dtype=acc)
    for tap in itertools.product(*(range(k) for k in kernel)):
        target = (
            slice(None),
            slice(None),
            *(
                slice(t * d - lo, t * d - lo + (i - 1) * s + 1, s)
                for t, d, lo, i, s in zip(tap, dilations, low, spatial, strides, strict=True)
            ),
        )
        canvas[target] += cols[(slice(None), slice(None), *tap)]
    y = canvas[
        (
            slice(None),
            slice(None),
            *(slice(b - lo, b - lo + o) for b, lo, o in zip(begin, low, out, strict=True)),
        )
    ]
    if B is not None:
        y = y + np.asarray(B, dtype=acc).reshape((m,) + (1,) * len(out))
    return y.astype(X.dtype)
