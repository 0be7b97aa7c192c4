"""MatMul, Gemm and Einsum against onnxruntime and the ONNX reference evaluator."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.ops.linalg import matmul, parse_einsum
from edge_infer.errors import EdgeInferError, ShapeInferenceError
from tests.engine.ops.harness import check_op

RNG = np.random.default_rng(3)


def rand(*shape: int, dtype: str = "float32") -> np.ndarray:
    if np.dtype(dtype).kind in "iu":
        return RNG.integers(-5, 6, shape).astype(dtype)
    return RNG.standard_normal(shape).astype(dtype)


MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((2, 3, 4), (4, 5)),
    ((2, 3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (5, 4, 6)),  # batch broadcast
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((2, 3, 4), (4,)),
    ((4,), (2, 4, 5)),
    ((1, 4), (4, 1)),
]


@pytest.mark.parametrize(("a", "b"), MATMUL_SHAPES)
def test_matmul(a, b):
    check_op("MatMul", [rand(*a), rand(*b)])


@pytest.mark.parametrize("dtype", ["float16", "float64", "int32", "int64"])
def test_matmul_dtypes(dtype):
    check_op("MatMul", [rand(2, 3, 4, dtype=dtype), rand(4, 5, dtype=dtype)])


def test_matmul_empty_and_readonly():
    # the builder refuses zero-sized inputs, so the kernel is checked directly
    a = np.zeros((0, 4), np.float32)
    b = rand(4, 5)
    b.setflags(write=False)
    assert matmul(a, b).shape == (0, 5)
    assert matmul(rand(3, 4), b.T.T).dtype == np.float32


@pytest.mark.parametrize("opset", [7, 9, 13])
def test_matmul_opsets(opset):
    check_op("MatMul", [rand(2, 3, 4), rand(4, 5)], opset=opset, const_inputs=[1])


def test_matmul_mismatch_is_a_located_error():
    with pytest.raises(ShapeInferenceError, match="inner dimensions"):
        check_op("MatMul", [rand(3, 4), rand(5, 6)])


GEMM_CASES = [
    ((3, 4), (4, 5), (3, 5), {}),
    ((4, 3), (4, 5), (5,), {"transA": 1}),
    ((3, 4), (5, 4), (1, 5), {"transB": 1, "alpha": 0.5, "beta": 2.0}),
    ((4, 3), (5, 4), (3, 1), {"transA": 1, "transB": 1}),
    ((3, 4), (4, 5), (), {"beta": 0.25}),
    ((3, 4), (4, 5), None, {"alpha": 2.0}),
]


@pytest.mark.parametrize("opset", [9, 11, 13])
@pytest.mark.parametrize(("a", "b", "c", "attrs"), GEMM_CASES)
def test_gemm(a, b, c, attrs, opset):
    opset = max(opset, 11) if c is None else opset  # C is optional from opset 11
    inputs = [rand(*a), rand(*b)] + ([] if c is None else [rand(*c)])
    check_op("Gemm", inputs, attrs, opset=opset, const_inputs=[1, 2])


@pytest.mark.parametrize("dtype", ["float16", "float64", "int32", "int64"])
def test_gemm_dtypes(dtype):
    # onnxruntime's CPU Gemm has no integer kernels
    oracles = ("reference",) if "int" in dtype else ("onnxruntime", "reference")
    check_op(
        "Gemm",
        [rand(3, 4, dtype=dtype), rand(5, 4, dtype=dtype), rand(5, dtype=dtype)],
        {"transB": 1},
        opset=13,
        oracles=oracles,
    )


def test_gemm_bad_c():
    with pytest.raises(EdgeInferError, match="does not broadcast"):
        check_op("Gemm", [rand(3, 4), rand(4, 5), rand(4, 5)], opset=13)


EINSUM_CASES = [
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("bhwc->bchw", [(2, 3, 4, 5)]),
    ("nchw,nkc->nkhw", [(2, 3, 4, 5), (2, 6, 3)]),
    ("ij->", [(3, 4)]),
    ("ij->j", [(3, 4)]),
    ("ii->i", [(4, 4)]),
    ("ij,jk", [(3, 4), (4, 5)]),  # implicit output
    ("ji", [(3, 4)]),  # implicit: transpose
    ("...ij,...jk->...ik", [(2, 3, 4), (1, 4, 5)]),
    ("bhqd,bhkd->bhqk", [(1, 2, 5, 8), (1, 2, 6, 8)]),
    ("i,j->ij", [(3,), (4,)]),
    ("b i d, b j d -> b i j", [(2, 3, 4), (2, 5, 4)]),
]


@pytest.mark.parametrize(("equation", "shapes"), EINSUM_CASES)
def test_einsum(equation, shapes):
    check_op("Einsum", [rand(*s) for s in shapes], {"equation": equation}, opset=12)


@pytest.mark.parametrize("dtype", ["float16", "float64", "int32", "int64"])
def test_einsum_dtypes(dtype):
    check_op(
        "Einsum",
        [rand(2, 3, 4, dtype=dtype), rand(2, 4, 5, dtype=dtype)],
        {"equation": "bij,bjk->bik"},
        opset=12,
    )


@pytest.mark.parametrize(
    ("equation", "shapes", "match"),
    [
        ("ij,jk->ik", [(3, 4)], "operand terms"),
        ("ij->ik", [(3, 4)], "not in any input"),
        ("ij,jk->ik", [(3, 4), (5, 6)], "sizes 4 and 5"),
        ("ijk->i", [(3, 4)], "rank 2"),
        ("i1->i", [(3, 4)], "only letters"),
        ("ij->ii", [(3, 4)], "repeats"),
    ],
)
def test_einsum_bad_equations(equation, shapes, match):
    with pytest.raises(ShapeInferenceError, match=match):
        parse_einsum(equation, shapes)


def test_einsum_bad_equation_through_the_importer():
    with pytest.raises(EdgeInferError, match="Einsum"):
        check_op("Einsum", [rand(3, 4)], {"equation": "ij->ik"}, opset=12)
