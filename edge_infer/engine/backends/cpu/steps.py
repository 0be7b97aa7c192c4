"""Step factories: an op bound to its arena views, as a no-argument closure that writes in place.

``STEPS`` maps op type → factory. A factory gets the node, its input arrays (arena views or
constants), its output views and a scratch allocator, and returns ``run() -> None``. Ops
without a factory fall back to the registry's reference kernel plus a copy into the output
(correct, but it allocates). Conv-like layers get their factory from the chosen tactic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edge_infer.engine.backends.cpu import dense, half, native, permute, pooling
from edge_infer.engine.backends.cpu.parallel import share, split
from edge_infer.engine.ir import Node
from edge_infer.engine.ops.linalg import matmul_shape
from edge_infer.engine.ops.slice_pad import slice_index
from edge_infer.errors import ShapeInferenceError

Run = Callable[[], None]
Scratch = Callable[[tuple[int, ...], Any, "str | None"], np.ndarray]
Factory = Callable[[Node, list[Any], list[np.ndarray], Scratch], Run | None]

STEPS: dict[str, Factory] = {}


def step(*op_types: str) -> Callable[[Factory], Factory]:
    def register(factory: Factory) -> Factory:
        for op in op_types:
            if op in STEPS:
                raise ValueError(f"step factory for {op} registered twice")
            STEPS[op] = factory
        return factory

    return register


def _float(*arrays: Any) -> bool:
    return all(a is None or np.asarray(a).dtype.kind == "f" for a in arrays)


def _native_ok(*arrays: Any) -> Any | None:
    """The native kernel library when every array is a C-contiguous float32 ndarray."""
    if not all(
        isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous for a in arrays
    ):
        return None
    return native.library()


def _planes_ok(*arrays: Any) -> bool:
    """Every array a float32 (N, C, H, W) ndarray whose (H, W) planes are contiguous (a
    channel slice of a bigger buffer qualifies)."""
    for a in arrays:
        if not (isinstance(a, np.ndarray) and a.dtype == np.float32 and a.ndim == 4):
            return False
        w = a.shape[3]
        if a.strides[3] != 4 or a.strides[2] != 4 * w or a.strides[0] % 4 or a.strides[1] % 4:
            return False
    return True


def _int8_planes(*arrays: Any) -> bool:
    """Every array an int8 (N, C, H, W) ndarray whose (H, W) planes are contiguous."""
    return all(
        isinstance(a, np.ndarray)
        and a.dtype == np.int8
        and a.ndim == 4
        and a.strides[3] == 1
        and a.strides[2] == a.shape[3]
        for a in arrays
    )


#: an elementwise or per-row native pass is split between threads from this many values
#: (each part at least half of it)
_ELEMENTWISE_SPLIT = 1 << 16


def _parts(size: int, scratch: Scratch, units: int) -> list[tuple[int, int]]:
    """``units`` (planes, rows, values) of a pass over ``size`` values split into ranges for
    the layer's threads: one range below _ELEMENTWISE_SPLIT values or without threads."""
    workers = getattr(scratch, "workers", 1)
    parts = max(1, min(workers, size // (_ELEMENTWISE_SPLIT // 2))) if workers > 1 else 1
    return split(units, parts)


_BINARY = {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": np.divide,
    "Max": np.maximum,
    "Min": np.minimum,
}
_UNARY = {
    "Neg": np.negative,
    "Abs": np.abs,
    "Exp": np.exp,
    "Log": np.log,
    "Sqrt": np.sqrt,
    "Tanh": np.tanh,
    "Reciprocal": np.reciprocal,
    "Floor": np.floor,
    "Ceil": np.ceil,
}


@step(*_BINARY)
def _binary(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    if len(ins) != 2 or not _float(*ins) or ins[0].dtype != ins[1].dtype:
        return None
    ufunc, (a, b), out = _BINARY[node.op_type], ins, outs[0]
    if np.broadcast_shapes(np.shape(a), np.shape(b)) != out.shape:
        return None
    return lambda: ufunc(a, b, out=out)


@step(*_UNARY)
def _unary(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    if not _float(ins[0]):
        return None
    ufunc, x, out = _UNARY[node.op_type], ins[0], outs[0]
    return lambda: ufunc(x, out=out)


@step("Relu")
def _relu(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    x, out = ins[0], outs[0]
    return lambda: np.maximum(x, 0, out=out)


@step("Sigmoid")
def _sigmoid(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    if not _float(ins[0]):
        return None
    x, out = ins[0], outs[0]
    lib = _native_ok(x, out)
    if lib is not None and x.shape == out.shape:  # one vectorized pass, split between threads
        calls = [
            native.NativeCall("unary_f32", dict(x=x.ctypes.data + 4 * a, y=out.ctypes.data + 4 * a,
                              n=b - a, kind=native.Activation.SIGMOID), (x, out))
            for a, b in _parts(x.size, scratch, -(-x.size // 64))
            for a, b in [(64 * a, min(x.size, 64 * b))]
        ]  # fmt: skip
        return share(calls, getattr(scratch, "pool", None))

    def run() -> None:  # 1 / (1 + exp(-x)), in place; exp overflow gives the right limit
        np.negative(x, out=out)
        with np.errstate(over="ignore"):
            np.exp(out, out=out)
        np.add(out, 1, out=out)
        np.reciprocal(out, out=out)

    return run


@step("Transpose")
def _transpose(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run:
    """One native pass over the merged axes, split between threads (permute.py); numpy's
    strided copy where the kernel cannot run it."""
    perm = node.attrs.get("perm") or list(reversed(range(np.ndim(ins[0]))))
    run = permute.bind_transpose(ins[0], outs[0], perm, **_threads(scratch))
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
    if half.is_half(x, out) and native.available():  # float16 storage: exact through float32
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
    if _int8_planes(x, out) and native.library() is not None:  # INT8 engines' storage
        calls = []
        for c0, c1 in _parts(out.size, scratch, c):  # channel ranges, every image
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
    if _planes_ok(x, out) and native.library() is not None:  # channel slices (concat) too
        args = dict(
            x=x.ctypes.data,
            y=out.ctypes.data,
            n=n,
            c=c,
            xis=x.strides[0] // 4,
            xcs=x.strides[1] // 4,
            yis=out.strides[0] // 4,
            ycs=out.strides[1] // 4,
            h=h,
            w=w,
            fh=fh,
            fw=fw,
        )
        return native.NativeCall("upsample_nearest_f32", args, (x, out))
    return _upsample_copies(x, out, fh, fw)


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
        run = pooling.bind_maxpool(x, out, window, **_threads(scratch))
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


@step("Softmax")
def _softmax(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    x, out = ins[0], outs[0]
    opset_axis = node.attrs.get("axis", -1)
    if node.graph is not None and node.graph.opsets.get("", 17) < 13:
        return None  # old flatten-to-2D semantics: keep the reference
    if not _float(x):
        return None
    axis = int(opset_axis) % x.ndim
    lib = _native_ok(x, out)
    if lib is not None and x.shape == out.shape:
        outer, inner = int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis + 1 :]))
        block = 4 * x.shape[axis] * inner  # bytes of one outer index
        calls = [
            native.NativeCall("softmax_f32", dict(x=x.ctypes.data + a * block,
                              y=out.ctypes.data + a * block, outer=b - a, axis=x.shape[axis],
                              inner=inner), (x, out))
            for a, b in _parts(x.size, scratch, outer)
        ]  # fmt: skip
        return share(calls, getattr(scratch, "pool", None))
    reduced = list(x.shape)
    reduced[axis] = 1
    tmp = scratch(tuple(reduced), x.dtype, "softmax")

    def run() -> None:
        np.max(x, axis=axis, keepdims=True, out=tmp)
        np.subtract(x, tmp, out=out)
        np.exp(out, out=out)
        np.sum(out, axis=axis, keepdims=True, out=tmp)
        np.divide(out, tmp, out=out)

    return run


#: storage kinds of the INT8 kernels (kernels/qsimd.h enum ei_storage)
_KINDS = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(np.int8): 2}
#: a storage conversion is split between threads from this many values (each part at least
#: half of it)
_REFORMAT_SPLIT = 1 << 16


@step("edge_infer::Reformat")
def _reformat(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    """edge_infer::Reformat (int8 <-> fp32 / fp16, fp32 <-> fp16) with the reformat kernel:
    the reference's numbers (ops/quantize.py reformat), in one pass, threaded when large."""
    x, out = ins[0], outs[0]
    if not (
        isinstance(x, np.ndarray)
        and x.dtype in _KINDS
        and out.dtype in _KINDS
        and x.shape == out.shape
        and x.flags.c_contiguous
        and out.flags.c_contiguous
        and native.library() is not None
    ):
        return None
    x_scale = float(node.attrs.get("x_scale", 0.0))
    y_scale = float(node.attrs.get("y_scale", 0.0))
    if out.dtype == np.int8 and not (y_scale > 0 and 1.0 / y_scale < np.finfo(np.float32).max):
        return None
    workers = getattr(scratch, "workers", 1)
    parts = max(1, min(workers, x.size // (_REFORMAT_SPLIT // 2))) if workers > 1 else 1
    calls = []
    for a, b in split(x.size, parts, align=64):
        args = dict(
            x=x.ctypes.data + a * x.itemsize,
            xkind=_KINDS[x.dtype],
            xscale=x_scale,
            xrs=0,
            y=out.ctypes.data + a * out.itemsize,
            ykind=_KINDS[out.dtype],
            yscale=y_scale,
            yrs=0,
            rows=1,
            n=b - a,
        )
        calls.append(native.NativeCall("reformat_f32", args, (x, out)))
    pool = getattr(scratch, "pool", None)
    if pool is not None and len(calls) > 1:
        return pool.bind(calls)
    return calls[0]


#: a QGemm is split between threads from this many int8 multiply-adds
_QGEMM_SPLIT = 1 << 20
#: qgemm_packed.c's output block (the packed weights' 16 outputs) and row tile
_QGEMM_BLOCK, _QGEMM_ROWS = 16, 8


def pack_qgemm(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 W [n, k] → qgemm_packed.c's wp [n / 16][ceil(k / 4)][16][4] (zeros past n and k)
    and wsum [n / 16 * 16] = 128 x each row's sum (int32)."""
    n, k = w.shape
    nb, kq = -(-n // _QGEMM_BLOCK), -(-k // 4)
    padded = np.zeros((nb * _QGEMM_BLOCK, kq * 4), np.int8)
    padded[:n, :k] = w
    wp = np.ascontiguousarray(padded.reshape(nb, _QGEMM_BLOCK, kq, 4).transpose(0, 2, 1, 3))
    wsum = np.zeros(nb * _QGEMM_BLOCK, np.int32)
    wsum[:n] = 128 * w.sum(axis=1, dtype=np.int64)
    return wp, wsum


@step("edge_infer::QGemm")
def _qgemm(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    """edge_infer::QGemm with the qgemm_packed_s8 kernel (exact int32 dot products: VNNI's
    over the packed weights where compiled, else row by row; the reference's float64
    requantization and fp32 / fp16 / int8 store); a float X quantized first. Threads split
    the rows (8-row tiles), or the outputs (16-output blocks) when the rows are few."""
    x, w, w_scale = ins[0], ins[1], ins[2]
    bias = ins[3] if len(ins) > 3 else None
    out = outs[0]
    a = node.attrs
    out_kind = {"fp32": 0, "fp16": 1, "int8": 2}.get(a.get("out_precision", "fp32"))
    out_scale, x_scale = float(a.get("out_scale", 0.0)), float(a["x_scale"])
    if not (
        isinstance(x, np.ndarray)
        and x.dtype in _KINDS
        and x.flags.c_contiguous
        and isinstance(w, np.ndarray)
        and w.dtype == np.int8
        and w.ndim == 2
        and (bias is None or (isinstance(bias, np.ndarray) and bias.dtype == np.int32))
        and out_kind is not None
        and out.flags.c_contiguous
        and (out_kind != 2 or (out_scale > 0 and 1.0 / out_scale < np.finfo(np.float32).max))
        and native.library() is not None
    ):
        return None
    n, k = w.shape
    rows = x.size // k
    wq = np.ascontiguousarray(w)
    wp, wsum = pack_qgemm(wq)
    bq = None if bias is None else np.ascontiguousarray(bias)
    mult = np.ascontiguousarray(x_scale * np.asarray(w_scale, np.float64))
    before: list[Run] = []
    if x.dtype != np.int8:  # the float input quantized as the reference does
        xq = scratch((rows, k), np.int8, "qgemm_in")
        args = dict(x=x.ctypes.data, xkind=_KINDS[x.dtype], xscale=0.0, xrs=0, y=xq.ctypes.data,
                    ykind=2, yscale=x_scale, yrs=0, rows=1, n=x.size)  # fmt: skip
        before.append(native.NativeCall("reformat_f32", args, (x, xq)))
        x = xq
    workers = getattr(scratch, "workers", 1)
    parts = max(1, min(2 * workers, rows * n * k // _QGEMM_SPLIT)) if workers > 1 else 1
    by_rows = rows >= parts * _QGEMM_ROWS
    ranges = [
        ((r0, r1), (0, n)) if by_rows else ((0, rows), (r0, r1))
        for r0, r1 in split(
            rows if by_rows else n, parts, align=_QGEMM_ROWS if by_rows else _QGEMM_BLOCK
        )
    ]
    calls = []
    for (r0, r1), (n0, n1) in ranges:
        args = dict(x=x.ctypes.data, xrs=k, w=wq.ctypes.data, k=k, n0=n0, n1=n1,
                    bias=None if bq is None else bq.ctypes.data, mult=mult.ctypes.data,
                    rows=rows, out=out.ctypes.data, okind=out_kind, ors=n, oscale=out_scale,
                    wp=wp.ctypes.data, wsum=wsum.ctypes.data, r0=r0, r1=r1)  # fmt: skip
        keep = (x, wq, wp, wsum, bq, mult, out)
        calls.append(native.NativeCall("qgemm_packed_s8_f32", args, keep))
    pool = getattr(scratch, "pool", None)
    if pool is not None and len(calls) > 1:
        steps: list[Run] = [*before, pool.bind(calls)]
    else:
        steps = [*before, *calls]
    if len(steps) == 1:
        return steps[0]

    def run() -> None:
        for one in steps:
            one()

    return run


def _const(node: Node, k: int) -> bool:
    """Input ``k`` of ``node`` is a constant (its array never changes after bind). A node
    without inputs (an FP16 layer's wrapped op) says nothing: treated as changing."""
    return k < len(node.inputs) and node.inputs[k] is not None and node.inputs[k].const is not None


def _threads(scratch: Scratch) -> dict[str, Any]:
    return {"workers": getattr(scratch, "workers", 1), "pool": getattr(scratch, "pool", None)}


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
        b_const=_const(node, 1),
        c=c,
        c_const=_const(node, 2),
        alpha=float(node.attrs.get("alpha", 1.0)),
        beta=float(node.attrs.get("beta", 1.0)),
        **_threads(scratch),
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
            return dense.bind_product(a2, b, out2, b_const=_const(node, 1), **_threads(scratch))
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
    return dense.bind_global_average_pool(x, out, **_threads(scratch))


@step("Slice")
def _slice(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    """A Slice with constant starts/ends/axes/steps: the reference's own index (ops/
    slice_pad.py slice_index), taken once as a view and copied at run time (any dtype)."""
    x, out = ins[0], outs[0]
    if not isinstance(x, np.ndarray):
        return None
    if len(node.inputs) > 1:  # opset 10+: inputs
        if not all(ins[k] is None or _const(node, k) for k in range(1, len(ins))):
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


#: the ops a float32 edge_infer::Pointwise chain runs here: the same numpy ufuncs as their
#: reference kernels (ops/elementwise.py) for float32
_CHAIN: dict[str, Any] = {**_BINARY, **_UNARY}


@step("edge_infer::Pointwise")
def _pointwise(node: Node, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run | None:
    """A float32 chain of elementwise ops (fused Add/Sub/Mul/Div/... with constants) as
    ufuncs writing the output in place, step after step; anything else: the reference."""
    out = outs[0]
    steps = node.attrs.get("steps")
    if not (steps and dense.is_f32(out) and all(dense.is_f32(a) for a in ins if a is not None)):
        return None
    calls: list[tuple[Any, list[Any]]] = []
    acc: Any = ins[0]
    for one in steps:
        ufunc = _CHAIN.get(one.get("op")) if isinstance(one, dict) else None
        if ufunc is None or one.get("attrs") or ufunc.nin != len(one.get("args", ())):
            return None
        args = []
        for a in one["args"]:
            arg = acc if a == "$acc" else None if a is None else ins[int(a)]
            if arg is None:
                return None
            if calls and a != "$acc" and np.may_share_memory(arg, out):
                return None  # an input in the output's memory, read after a step wrote it
            args.append(arg)
        if np.broadcast_shapes(*(np.shape(a) for a in args)) != out.shape:
            return None
        calls.append((ufunc, args))
        acc = out

    def run() -> None:
        with np.errstate(divide="ignore", invalid="ignore"):  # as the reference's Div
            for ufunc, args in calls:
                ufunc(*args, out=out)

    return run
