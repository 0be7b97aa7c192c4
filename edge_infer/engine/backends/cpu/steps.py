"""Step factories: an op bound to its arena views, as a no-argument closure that writes in place.

``STEPS`` maps op type → factory. A factory gets the node, its input arrays (arena views or
constants), its output views and a scratch allocator, and returns ``run() -> None``. Ops
without a factory fall back to the registry's reference kernel plus a copy into the output
(correct, but it allocates). Conv-like layers get their factory from the chosen tactic.

Here: layout and glue ops (Transpose, reshapes, Concat, Split, Slice, Resize, MaxPool) and
the BLAS products (Gemm, MatMul, GlobalAveragePool); the elementwise steps are in
steps_elementwise.py, the INT8 ones in steps_int8.py (imported here, so ``STEPS`` holds
them all; the registry itself is stepkit.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_infer.engine.backends.cpu import (
    dense,
    half,
    native,
    permute,
    pooling,
    steps_elementwise,
    steps_int8,
)
from edge_infer.engine.backends.cpu.parallel import share
from edge_infer.engine.backends.cpu.stepkit import (
    STEPS,
    Run,
    Scratch,
    int8_planes,
    is_const,
    planes_ok,
    step,
    thread_kwargs,
    thread_parts,
    unit_planes,
)
from edge_infer.engine.ir import Node
from edge_infer.engine.ops.linalg import matmul_shape
from edge_infer.engine.ops.slice_pad import slice_index
from edge_infer.errors import ShapeInferenceError

__all__ = ["STEPS"]
#: the step modules beside this one: importing them registers their steps in ``STEPS``
MODULES = (steps_elementwise, steps_int8)


@step("Transpose")
def _transpose(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run:
    """One native pass over the merged axes, split between threads (permute.py); numpy's
    strided copy where the kernel cannot run it."""
    perm = node.attrs.get("perm") or list(reversed(range(np.ndim(ins[0]))))
    run = permute.bind_transpose(ins[0], outs[0], perm, **thread_kwargs(scratch))
    if run is not None:
        return run
    src, out = np.transpose(ins[0], perm), outs[0]
    return lambda: np.copyto(out, src)


@step("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")
def _copy_reshape(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run:
    # Only reached when the memory plan could not alias the output onto the input.
    x, out = ins[0], outs[0]
    return lambda: np.copyto(out, np.reshape(x, out.shape))


@step("Concat")
def _concat(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run:
    axis = int(node.attrs.get("axis", 0)) % outs[0].ndim
    parts = [a for a in ins if a is not None and np.size(a)]
    out = outs[0]
    return lambda: np.concatenate(parts, axis=axis, out=out)


@step("Split")
def _split(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run:
    axis = int(node.attrs.get("axis", 0)) % np.ndim(ins[0])
    x, pairs, start = ins[0], [], 0
    for out in outs:
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, start + out.shape[axis])
        pairs.append((out, x[tuple(index)]))
        start += out.shape[axis]

    def run() -> None:
        for out, src in pairs:
            np.copyto(out, src)

    return run


@step("Resize")
def _resize(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    """Integer nearest-neighbour upsampling (the YOLO neck) as one broadcast copy."""
    x, out = ins[0], outs[0]
    halves = _half_planes(x, out) and native.library() is not None  # copied as they are
    if not halves and half.is_half(x, out) and native.available():  # exact through float32
        return half.around_f32(_resize, node, ins, outs, scratch)
    if node.attrs.get("mode", "nearest") != "nearest" or x.ndim != 4:
        return None
    fh, rh = divmod(out.shape[2], x.shape[2])
    fw, rw = divmod(out.shape[3], x.shape[3])
    if rh or rw or out.shape[:2] != x.shape[:2] or fh < 1 or fw < 1:
        return None
    mode = node.attrs.get("coordinate_transformation_mode", "half_pixel")
    nearest = node.attrs.get("nearest_mode", "round_prefer_floor")
    if (
        (fh, fw) != (1, 1)
        and not (mode == "asymmetric" and nearest == "floor")
        and not (
            mode in ("half_pixel", "pytorch_half_pixel")
            and nearest == "round_prefer_floor"
            and fh % 2 == 0
            and fw % 2 == 0
        )
    ):
        return None  # other modes pick other source pixels: keep the reference
    n, c, h, w = x.shape
    if int8_planes(x, out) and native.library() is not None:  # INT8 engines' storage
        calls = []
        for c0, c1 in thread_parts(out.size, scratch, c):  # channel ranges, every image
            args = dict(
                x=x.ctypes.data + c0 * x.strides[1],
                y=out.ctypes.data + c0 * out.strides[1],
                n=n,
                c=c1 - c0,
                xis=x.strides[0],
                xcs=x.strides[1],
                yis=out.strides[0],
                ycs=out.strides[1],
                h=h,
                w=w,
                fh=fh,
                fw=fw,
            )
            calls.append(native.NativeCall("upsample_nearest_s8_f32", args, (x, out)))
        return share(calls, getattr(scratch, "pool", None))
    if halves or (planes_ok(x, out) and native.library() is not None):  # concat slices too
        size = x.itemsize
        args = dict(
            x=x.ctypes.data,
            y=out.ctypes.data,
            n=n,
            c=c,
            xis=x.strides[0] // size,
            xcs=x.strides[1] // size,
            yis=out.strides[0] // size,
            ycs=out.strides[1] // size,
            h=h,
            w=w,
            fh=fh,
            fw=fw,
            half=int(halves),
        )
        return native.NativeCall("upsample_nearest_f32", args, (x, out))
    return _upsample_copies(x, out, fh, fw)


def _half_planes(x: Any, out: np.ndarray) -> bool:
    """Both float16 (N, C, H, W) ndarrays with contiguous (H, W) planes (float16 storage of
    FP16 engines: the native upsampling copies the values as they are)."""
    return all(
        isinstance(a, np.ndarray) and a.dtype == np.float16 and unit_planes(a) for a in (x, out)
    )


#: above this many output phases (fh * fw) one broadcast copy beats a copy per phase
_UPSAMPLE_PHASES = 16


def _upsample_copies(x: np.ndarray, out: np.ndarray, fh: int, fw: int) -> Run:
    """Nearest upsampling without native kernels (any dtype, any strides): one plain strided
    copy of ``x`` per output phase ``out[..., r::fh, k::fw]``. numpy's broadcast copy into the
    6-D view (n, c, h, fh, w, fw) walks its two innermost axes of size 2 and 1 element by
    element: 790 µs against 280 µs on YOLOv8n-640's 256 x 20 x 20 layer (under load)."""
    if fh * fw > _UPSAMPLE_PHASES:  # splitting h and w: a view of any strided out
        n, c, h, w = x.shape
        view, src = out.reshape(n, c, h, fh, w, fw), x[:, :, :, None, :, None]
        return lambda: np.copyto(view, src)
    pairs = [(out[:, :, r::fh, k::fw], x) for r in range(fh) for k in range(fw)]

    def run() -> None:
        for dst, src in pairs:
            np.copyto(dst, src)

    return run


@step("MaxPool")
def _maxpool(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    """Max pooling: 2-D float32, float16 and int8 poolings with the native kernels (pooling.py:
    one pass, padding never wins, planes split between threads; int8 column-stride-1 pools
    such as SPPF's separable: rows' running maxima, then columns'); else stride-1 'same'
    pools as separable running maxima over shifted views (numpy)."""
    x, out = ins[0], outs[0]
    k = node.attrs.get("kernel_shape", [])
    strides = node.attrs.get("strides", [1, 1])
    pads = node.attrs.get("pads", [0, 0, 0, 0])
    window = pooling.Window.of(node.attrs)
    if window is not None and len(outs) == 1:
        run = pooling.bind_maxpool(x, out, window, **thread_kwargs(scratch))
        if run is not None:
            return run
    if half.is_half(x, out) and native.available():  # float16 storage: exact through float32
        return half.around_f32(_maxpool, node, ins, outs, scratch)
    if (
        len(outs) != 1
        or x.ndim != 4
        or len(k) != 2
        or k[0] != k[1]
        or k[0] % 2 == 0
        or list(strides) != [1, 1]
        or list(pads) != [k[0] // 2] * 4
        or node.attrs.get("dilations", [1, 1]) != [1, 1]
        or out.shape != x.shape
        or node.attrs.get("auto_pad", "NOTSET") != "NOTSET"
    ):
        return None
    r = k[0] // 2
    n, c, h, w = x.shape
    padded = scratch((n, c, h + 2 * r, w + 2 * r), x.dtype, "pool_pad")
    rows = scratch((n, c, h, w + 2 * r), x.dtype, "pool_rows")
    lowest = np.finfo(x.dtype).min if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    interior = padded[:, :, r : r + h, r : r + w]

    def run() -> None:
        padded.fill(lowest)
        np.copyto(interior, x)
        np.copyto(rows, padded[:, :, 0:h])
        for d in range(1, 2 * r + 1):
            np.maximum(rows, padded[:, :, d : d + h], out=rows)
        np.copyto(out, rows[:, :, :, 0:w])
        for d in range(1, 2 * r + 1):
            np.maximum(out, rows[:, :, :, d : d + w], out=out)

    return run


@step("Gemm")
def _gemm(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    """Float32 Gemm in place with BLAS (dense.py): a constant B laid out once for BLAS,
    ``beta * C`` once, columns split between threads. Other dtypes: the reference."""
    a, b, out = ins[0], ins[1], outs[0]
    c = ins[2] if len(ins) > 2 else None
    if not (dense.is_f32(a, b, c, out) and a.ndim == b.ndim == out.ndim == 2 and a.size):
        return None
    op_a = a.T if node.attrs.get("transA", 0) else a
    op_b = b.T if node.attrs.get("transB", 0) else b
    shape = (op_a.shape[0], op_b.shape[1])
    if op_a.shape[1] != op_b.shape[0] or out.shape != shape or not out.size:
        return None
    if c is not None and (c.ndim > 2 or np.broadcast_shapes(c.shape, shape) != shape):
        return None
    return dense.bind_product(
        op_a,
        op_b,
        out,
        b_const=is_const(node, 1),
        c=c,
        c_const=is_const(node, 2),
        alpha=float(node.attrs.get("alpha", 1.0)),
        beta=float(node.attrs.get("beta", 1.0)),
        **thread_kwargs(scratch),
    )


@step("MatMul")
def _matmul(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    """Float32 MatMul in place: (..., K) @ a 2-D B as one BLAS product over every row
    (dense.py; a constant B laid out once); other shapes numpy's ``matmul`` into the
    output (the reference's own product, without its copy). Other dtypes: the reference."""
    a, b, out = ins[0], ins[1], outs[0]
    if not dense.is_f32(a, b, out) or a.ndim == 0 or b.ndim == 0:
        return None
    try:
        if matmul_shape(a.shape, b.shape) != out.shape:
            return None
    except ShapeInferenceError:
        return None
    if a.ndim >= 2 and b.ndim == 2 and a.size and out.size and a.flags.c_contiguous:
        a2 = a.reshape(-1, a.shape[-1])
        out2 = out.reshape(-1, out.shape[-1]) if out.flags.c_contiguous else None
        if out2 is not None:
            return dense.bind_product(
                a2, b, out2, b_const=is_const(node, 1), **thread_kwargs(scratch)
            )
    return lambda: np.matmul(a, b, out=out)


@step("GlobalAveragePool")
def _global_average_pool(
    node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch
) -> Run | None:
    """Float32 plane means as BLAS matrix-vector products (dense.py), split between
    threads. Other dtypes (int8 storage, float16): the reference."""
    x, out = ins[0], outs[0]
    if not dense.is_f32(x, out) or x.ndim < 3 or out.shape != (*x.shape[:2], *[1] * (x.ndim - 2)):
        return None
    return dense.bind_global_average_pool(x, out, **thread_kwargs(scratch))


@step("Slice")
def _slice(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    """A Slice with constant starts/ends/axes/steps: the reference's own index (ops/
    slice_pad.py slice_index), taken once as a view and copied at run time (any dtype)."""
    x, out = ins[0], outs[0]
    if not isinstance(x, np.ndarray):
        return None
    if len(node.inputs) > 1:  # opset 10+: inputs
        if not all(ins[k] is None or is_const(node, k) for k in range(1, len(ins))):
            return None
        args = [ins[k] if k < len(ins) else None for k in range(1, 5)]
    elif "starts" in node.attrs and "ends" in node.attrs:  # opset 1: attributes
        args = [node.attrs["starts"], node.attrs["ends"], node.attrs.get("axes"), None]
    else:
        return None
    try:
        view = x[slice_index(x.shape, *args)]
    except (ValueError, TypeError, IndexError):
        return None  # the reference kernel reports it
    if view.shape != out.shape or view.dtype != out.dtype:
        return None
    return lambda: np.copyto(out, view)
