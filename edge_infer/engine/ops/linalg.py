"""Linear algebra: MatMul (numpy semantics), Gemm and Einsum.

Float16 products are computed in float32 and rounded once, as onnxruntime's CPU kernels do;
integer products stay exact in their own dtype.
"""

from __future__ import annotations

import re
import string

import numpy as np

from edge_infer.engine.ir import Shape, TensorType
from edge_infer.engine.ops.conv import accumulation_dtype
from edge_infer.engine.ops.registry import InferContext, OpList, broadcast_shapes
from edge_infer.errors import ShapeInferenceError

OPS = OpList()


def matmul_shape(a: Shape, b: Shape) -> Shape:
    """Output shape of ``numpy.matmul`` (1-D operands promoted and the added axis removed)."""
    if len(a) == 0 or len(b) == 0:
        raise ShapeInferenceError("MatMul operands must have rank >= 1 (got a scalar)")
    a2 = (1, *a) if len(a) == 1 else tuple(a)
    b2 = (*b, 1) if len(b) == 1 else tuple(b)
    if a2[-1] != b2[-2]:
        raise ShapeInferenceError(
            f"MatMul inner dimensions differ: A {list(a)} has K={a2[-1]}, B {list(b)} has "
            f"K={b2[-2]}"
        )
    batch = broadcast_shapes(a2[:-2], b2[:-2])
    out = (*batch, a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


def _infer_matmul(ctx: InferContext) -> list[TensorType]:
    if ctx.dtype(0) != ctx.dtype(1):
        ctx.fail(f"A and B must have the same dtype, got {ctx.dtype(0)} and {ctx.dtype(1)}")
    try:
        shape = matmul_shape(ctx.shape(0), ctx.shape(1))
    except ShapeInferenceError as exc:
        ctx.fail(str(exc))
    return [TensorType(shape, ctx.dtype(0))]


@OPS.register("MatMul", 1, infer=_infer_matmul)
def matmul(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    acc = accumulation_dtype(A.dtype)
    return np.matmul(np.asarray(A, dtype=acc), np.asarray(B, dtype=acc)).astype(A.dtype, copy=False)


def _infer_gemm(ctx: InferContext) -> list[TensorType]:
    a, b = ctx.shape(0), ctx.shape(1)
    if len(a) != 2 or len(b) != 2:
        ctx.fail(f"A and B must be 2-D, got {a} and {b}")
    m, k = a[::-1] if ctx.attrs.get("transA", 0) else a
    k2, n = b[::-1] if ctx.attrs.get("transB", 0) else b
    if k != k2:
        ctx.fail(
            f"inner dimensions differ: op(A) is {m}x{k}, op(B) is {k2}x{n} (check transA/transB)"
        )
    if ctx.has(2):
        c = ctx.shape(2)
        try:
            if len(c) > 2 or broadcast_shapes(c, (m, n)) != (m, n):
                raise ShapeInferenceError("not unidirectional")
        except ShapeInferenceError:
            ctx.fail(f"C of shape {c} does not broadcast to the output ({m}, {n})")
    return [TensorType((m, n), ctx.dtype(0))]


@OPS.register("Gemm", 7, infer=_infer_gemm)
def gemm(
    A: np.ndarray,
    B: np.ndarray,
    C: np.ndarray | None = None,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    transA: int = 0,
    transB: int = 0,
) -> np.ndarray:
    """``alpha * op(A) @ op(B) + beta * C`` with C broadcast to (M, N)."""
    acc = accumulation_dtype(A.dtype)
    a = np.asarray(A, dtype=acc)
    b = np.asarray(B, dtype=acc)
    y = (a.T if transA else a) @ (b.T if transB else b)
    # scalars in the operand dtype: float32 stays float32 (integer Gemm takes integral
    # alpha/beta, as onnxruntime does)
    if alpha != 1.0:
        y = y * acc.type(alpha)
    if C is not None and beta != 0.0:
        y = y + acc.type(beta) * np.asarray(C, dtype=acc)
    return y.astype(A.dtype, copy=False)


# -- Einsum ------------------------------------------------------------------------------------

_TERM = re.compile(r"^[A-Za-z]*(\.\.\.)?[A-Za-z]*$")


def parse_einsum(equation: str, shapes: list[Shape]) -> tuple[list[list[str]], list[str], Shape]:
    """Validate ``equation`` against the operand shapes.

    Returns the labels of each operand and of the output (``...`` expanded to labels ``0``,
    ``1``, ... for the broadcast batch axes) and the output shape. Implicit mode (no ``->``)
    outputs the labels used once, in alphabetical order, after the ellipsis axes.
    """
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ShapeInferenceError(
            f"Einsum: equation {equation!r} has {len(terms)} operand terms, got {len(shapes)} "
            "inputs"
        )
    for term in [*terms, rhs]:
        if not _TERM.match(term):
            raise ShapeInferenceError(
                f"Einsum: term {term!r} of {equation!r} may hold only letters and one '...'"
            )
    sizes: dict[str, int | str] = {}
    ellipsis_rank = 0
    operand_labels: list[list[str]] = []
    for term, shape in zip(terms, shapes, strict=True):
        letters = term.replace("...", "")
        has_ellipsis = "..." in term
        if len(letters) > len(shape) or (not has_ellipsis and len(letters) != len(shape)):
            raise ShapeInferenceError(
                f"Einsum: term {term!r} does not match an operand of rank {len(shape)}"
            )
        rank = len(shape) - len(letters) if has_ellipsis else 0
        ellipsis_rank = max(ellipsis_rank, rank)
        head, _, tail = term.partition("...")
        # batch labels are numbered from the right so that ellipses of different ranks
        # broadcast against each other
        labels = list(head) + [str(j) for j in range(rank - 1, -1, -1)] + list(tail)
        operand_labels.append(labels)
    batch = [str(j) for j in range(ellipsis_rank - 1, -1, -1)]
    for labels, shape in zip(operand_labels, shapes, strict=True):
        for label, dim in zip(labels, shape, strict=True):
            known = sizes.get(label)
            if known is None or known == 1:
                sizes[label] = dim
            elif dim != 1 and dim != known:
                raise ShapeInferenceError(
                    f"Einsum: label {label!r} of {equation!r} has sizes {known} and {dim}"
                )
    if arrow:
        head, _, tail = rhs.partition("...")
        out = list(head) + (batch if "..." in rhs else []) + list(tail)
        for label in out:
            if label not in sizes:
                raise ShapeInferenceError(
                    f"Einsum: output label {label!r} of {equation!r} is not in any input"
                )
        if len(set(out)) != len(out):
            raise ShapeInferenceError(f"Einsum: output of {equation!r} repeats a label")
    else:
        counts: dict[str, int] = {}
        for labels in operand_labels:
            for label in labels:
                if label in string.ascii_letters:
                    counts[label] = counts.get(label, 0) + 1
        out = batch + sorted(c for c, n in counts.items() if n == 1)
    return operand_labels, out, tuple(sizes[label] for label in out)


def _infer_einsum(ctx: InferContext) -> list[TensorType]:
    equation = ctx.attrs.get("equation")
    if not equation:
        ctx.fail("attribute 'equation' is required")
    dtypes = {ctx.dtype(i) for i in range(ctx.num_inputs)}
    if len(dtypes) != 1:
        ctx.fail(f"all inputs must have the same dtype, got {sorted(str(d) for d in dtypes)}")
    try:
        _, _, shape = parse_einsum(equation, [ctx.shape(i) for i in range(ctx.num_inputs)])
    except ShapeInferenceError as exc:
        ctx.fail(str(exc))
    return [TensorType(shape, ctx.dtype(0))]


@OPS.register("Einsum", 12, infer=_infer_einsum)
def einsum(*Inputs: np.ndarray, equation: str = "") -> np.ndarray:
    """Einstein summation (numpy's, with a validated equation and optimize=True)."""
    parse_einsum(equation, [np.shape(x) for x in Inputs])
    acc = accumulation_dtype(Inputs[0].dtype)
    operands = [np.asarray(x, dtype=acc) for x in Inputs]
    y = np.einsum(equation.replace(" ", ""), *operands, optimize=len(operands) > 1)
    # a copy: one-operand equations ('ij->ji', 'ii->i') return views of the input
    return np.array(y, dtype=Inputs[0].dtype, copy=True)
