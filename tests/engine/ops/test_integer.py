"""DynamicQuantizeLinear, MatMulInteger, ConvInteger, QLinearMatMul and QLinearConv: bit-exact
against onnxruntime on random inputs (the integer outputs compared with assert_array_equal),
and against the ONNX reference evaluator where it computes the same thing.

The reference evaluator rounds QLinear* after adding the output zero point (``rint(v + zp)``)
where onnxruntime rounds first (``rint(v) + zp``); the two differ only on exact .5 ties, which
random float scales do not produce, so both are checked.

onnxruntime's uint8 x int8 kernels on an x86 CPU without VNNI multiply byte pairs with
vpmaddubsw, whose int16 pair sums saturate (its quantization docs' reason for reduce_range):
there its results are not the exact ones ours and the reference evaluator compute. On such a
host the int8 operand beside a uint8 one is drawn from [-64, 63] (pairs of at most
2 x 255 x 64 = 32640 < 2^15), so onnxruntime stays an exact oracle.
"""

from __future__ import annotations

import platform

import numpy as np
import pytest

from edge_infer.engine.ops.integer import dynamic_quantize_linear
from edge_infer.errors import ShapeInferenceError
from tests.engine.backends.cpu.isa_builds import host_flags
from tests.engine.ops.harness import check_op

RNG = np.random.default_rng(16)
BOTH = ("onnxruntime", "reference")


def ints(dtype: type, *shape: int) -> np.ndarray:
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max + 1, shape).astype(dtype)


#: onnxruntime's uint8 x int8 pair sums saturate on this host (module docstring)
ORT_U8S8_SATURATES = platform.machine() == "x86_64" and not (
    {"avx512_vnni", "avx_vnni"} & host_flags()
)


def beside(dtype: type, other: type, *shape: int) -> np.ndarray:
    """Values of ``dtype`` multiplied by values of ``other``: the whole range, but int8 beside
    uint8 from [-64, 63] where onnxruntime's pair sums saturate (it puts the uint8 operand
    first, inputs or weights)."""
    if dtype is np.int8 and other is np.uint8 and ORT_U8S8_SATURATES:
        return RNG.integers(-64, 64, shape).astype(np.int8)
    return ints(dtype, *shape)


def zp(dtype: type, *shape: int) -> np.ndarray:
    """A zero point away from the ends of the range (as calibrated ones are)."""
    info = np.iinfo(dtype)
    return RNG.integers(info.min // 2, info.max // 2 + 1, shape).astype(dtype)


def scale(*shape: int) -> np.ndarray:
    return RNG.uniform(0.002, 0.05, shape).astype(np.float32)


# (x dtype, w dtype) pairs onnxruntime implements for every op below (int8 x uint8 weights
# exist for the Integer ops only)
PAIRS = [(np.uint8, np.uint8), (np.uint8, np.int8), (np.int8, np.int8)]
PAIR_IDS = [f"{a.__name__}-{b.__name__}" for a, b in PAIRS]


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4, 5), (1, 1000)])
@pytest.mark.parametrize("kind", ["normal", "positive", "negative", "wide"])
def test_dynamic_quantize_linear(shape: tuple[int, ...], kind: str) -> None:
    x = RNG.standard_normal(shape).astype(np.float32)
    if kind == "positive":
        x = np.abs(x)
    elif kind == "negative":
        x = -np.abs(x) * 3
    elif kind == "wide":
        x = x * 1e3
    check_op("DynamicQuantizeLinear", [x], num_outputs=3, opset=11, oracles=BOTH)


def test_dynamic_quantize_linear_all_zero_follows_onnxruntime() -> None:
    """max == min: onnxruntime uses scale 1 (the reference evaluator 1/255); y is 0 either
    way. Bit-exact with onnxruntime."""
    x = np.zeros((2, 3), np.float32)
    y, s, z = check_op(
        "DynamicQuantizeLinear", [x], num_outputs=3, opset=11, oracles=("onnxruntime",)
    )
    assert float(s) == 1.0 and int(z) == 0 and not y.any()
    assert dynamic_quantize_linear(x)[1].dtype == np.float32


MATMUL_SHAPES = [
    ((4, 6), (6, 5)),
    ((2, 3, 8), (8, 7)),
    ((2, 3, 8), (2, 8, 4)),
    ((1, 300), (300, 9)),
]


@pytest.mark.parametrize(("xa", "wb"), [*PAIRS, (np.int8, np.uint8)], ids=[*PAIR_IDS, "int8-uint8"])
@pytest.mark.parametrize(("a", "b"), MATMUL_SHAPES)
def test_matmul_integer(xa: type, wb: type, a: tuple[int, ...], b: tuple[int, ...]) -> None:
    check_op(
        "MatMulInteger",
        [beside(xa, wb, *a), beside(wb, xa, *b), zp(xa), zp(wb)],
        opset=10,
        oracles=BOTH,
    )


def test_matmul_integer_without_zero_points_and_per_column() -> None:
    check_op("MatMulInteger", [ints(np.uint8, 5, 6), ints(np.uint8, 6, 4)], opset=10, oracles=BOTH)
    # per-column b zero points: what quantize_dynamic writes with per_channel=True
    check_op(
        "MatMulInteger",
        [ints(np.uint8, 5, 6), beside(np.int8, np.uint8, 6, 4), zp(np.uint8), zp(np.int8, 4)],
        opset=10,
        oracles=BOTH,
    )


CONV_CASES = [
    ((1, 3, 7, 7), (4, 3, 3, 3), {}),
    ((2, 4, 9, 8), (6, 4, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ((1, 6, 8, 8), (6, 1, 3, 3), {"group": 6, "pads": [1, 1, 1, 1]}),
    ((1, 4, 10, 10), (8, 2, 3, 3), {"group": 2, "dilations": [2, 2], "pads": [2, 1, 2, 1]}),
    ((1, 8, 6, 6), (16, 8, 1, 1), {}),
    ((1, 2, 7, 7), (3, 2, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
]


@pytest.mark.parametrize(("xa", "wb"), [*PAIRS, (np.int8, np.uint8)], ids=[*PAIR_IDS, "int8-uint8"])
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv_integer(xa: type, wb: type, case: int) -> None:
    x, w, attrs = CONV_CASES[case]
    # onnxruntime's ConvInteger takes scalar zero points; the reference evaluator ignores
    # auto_pad for ConvInteger, so SAME cases are checked against onnxruntime alone
    oracles = ("onnxruntime",) if "auto_pad" in attrs else BOTH
    check_op(
        "ConvInteger",
        [beside(xa, wb, *x), beside(wb, xa, *w), zp(xa), zp(wb)],
        attrs,
        opset=10,
        oracles=oracles,
    )


@pytest.mark.parametrize(("xa", "wb"), PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize(("a", "b"), MATMUL_SHAPES)
def test_qlinear_matmul(xa: type, wb: type, a: tuple[int, ...], b: tuple[int, ...]) -> None:
    inputs = [
        ints(xa, *a),
        scale(),
        zp(xa),
        beside(wb, xa, *b),
        scale(),
        zp(wb),
        np.float32(RNG.uniform(0.05, 0.3)),
        zp(xa),
    ]
    check_op("QLinearMatMul", inputs, opset=10, oracles=BOTH)
    check_op("QLinearMatMul", inputs, opset=21, oracles=BOTH)


def test_qlinear_matmul_per_column_weights() -> None:
    n = 6
    inputs = [
        ints(np.uint8, 4, 5),
        scale(),
        zp(np.uint8),
        beside(np.int8, np.uint8, 5, n),
        scale(n),
        zp(np.int8, n) * 0,
        np.float32(0.2),
        zp(np.uint8),
    ]
    check_op("QLinearMatMul", inputs, opset=10, oracles=("onnxruntime",))


@pytest.mark.parametrize(("xa", "wb"), PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
@pytest.mark.parametrize("per_channel", [False, True])
def test_qlinear_conv(xa: type, wb: type, case: int, per_channel: bool) -> None:
    x, w, attrs = CONV_CASES[case]
    m = w[0]
    w_scale = scale(m) if per_channel else scale()
    # per-channel weights are symmetric in onnxruntime's kernels (zero point 0)
    w_zp = np.zeros(m, wb) if per_channel else zp(wb)
    bias = RNG.integers(-2000, 2000, m).astype(np.int32)
    inputs = [
        ints(xa, *x),
        scale(),
        zp(xa),
        beside(wb, xa, *w),
        w_scale,
        w_zp,
        np.float32(RNG.uniform(0.05, 0.5)),
        zp(xa),
        bias,
    ]
    oracles = ("onnxruntime",) if "auto_pad" in attrs else BOTH
    check_op("QLinearConv", inputs, attrs, opset=10, oracles=oracles)


def test_shape_errors_are_located() -> None:
    with pytest.raises(ShapeInferenceError, match="MatMulInteger.*int8 or uint8"):
        check_op("MatMulInteger", [np.ones((2, 2), np.int32), np.ones((2, 2), np.int32)], opset=10)
    with pytest.raises(ShapeInferenceError, match="inner dimensions"):
        check_op("MatMulInteger", [ints(np.uint8, 2, 3), ints(np.uint8, 4, 2)], opset=10)


@pytest.mark.parametrize(("xa", "wb"), [(np.uint8, np.int8), (np.int8, np.uint8)])
def test_integer_ops_full_range_against_the_reference(xa: type, wb: type) -> None:
    """Byte pairs whose int16 sums would saturate (the whole int8 range beside uint8): exact
    against the ONNX reference evaluator, on every host (onnxruntime's own results there depend
    on the CPU: module docstring)."""
    for _ in range(3):
        a, b = ints(xa, 4, 64), ints(wb, 64, 5)
        a[0, :], b[:, 0] = np.iinfo(xa).max, np.iinfo(wb).min  # the extreme products
        check_op("MatMulInteger", [a, b, zp(xa), zp(wb)], opset=10, oracles=("reference",))
        x, w, attrs = CONV_CASES[1]
        check_op(
            "ConvInteger",
            [ints(xa, *x), ints(wb, *w), zp(xa), zp(wb)],
            attrs,
            opset=10,
            oracles=("reference",),
        )
