"""maxpool_s8 (kernels/reformat.c) row by row: ResNet's stem pool (3 x 3 stride 2) and
CRNN's (2 x 2 stride 2, 2 x 1 stride 2 x 1), rows wider than the 64-output vector blocks, odd
and even widths, left pads 0 to 8, column stride 1 or 2, padded tails; the pools with no
padding straight from their input rows (kh x 1 stride 1 column, kh x 2 stride 2 on
AVX-512BW and AVX2: block tails, AVX2's overlapping last block and rows under one block, an
unused last column, windows of 3 rows); column stride 1 (SPPF)
as rows' then columns' running maxima; against the reference
MaxPool, bit for bit, here and through every x86 vector path."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.steps import STEPS
from edge_infer.engine.ir import Node
from edge_infer.engine.ops import get_registry
from tests.engine.backends.cpu import isa_builds

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

# (h, w), kernel, strides, pads (t, l, b, r)
POOLS = [
    ((112, 112), (3, 3), (2, 2), (1, 1, 1, 1)),  # ResNet-50's stem pool
    ((9, 151), (3, 3), (2, 2), (1, 1, 1, 1)),  # 76 outputs: a block and a tail
    ((8, 130), (3, 3), (1, 2), (0, 0, 0, 1)),  # no left pad, a right one
    ((7, 129), (2, 3), (2, 2), (0, 1, 0, 1)),
    ((5, 3), (3, 3), (2, 2), (1, 1, 1, 1)),
    ((32, 128), (2, 2), (2, 2), (0, 0, 0, 0)),  # CRNN's pools
    ((8, 33), (2, 1), (2, 1), (0, 0, 0, 0)),
    ((6, 131), (2, 2), (2, 2), (0, 0, 1, 1)),  # ceil-mode style right pad
    ((7, 70), (3, 3), (1, 1), (0, 1, 0, 0)),  # stride 1 (the compiler's vectors)
    ((5, 9), (1, 8), (1, 1), (0, 8, 0, 0)),  # the widest window, the widest left pad
    ((4, 32), (2, 1), (2, 1), (0, 0, 0, 0)),  # CRNN's last pool: two output rows
    ((9, 40), (3, 1), (2, 1), (0, 0, 0, 0)),  # 3 rows a window, an unused last row
    ((5, 259), (2, 2), (2, 2), (0, 0, 0, 0)),  # 129 outputs: two blocks, a 1-output tail
    ((7, 67), (3, 2), (2, 2), (0, 0, 0, 0)),  # 3 rows, an unused last column
    ((10, 10), (5, 5), (1, 1), (2, 2, 2, 2)),  # SPPF: rows' then columns' running maxima
    ((20, 37), (5, 5), (1, 1), (2, 2, 2, 2)),  # three 16-output vectors a row
    ((9, 19), (3, 4), (2, 1), (1, 3, 0, 2)),  # row stride 2, left pad 3
    ((4, 77), (2, 2), (2, 2), (0, 0, 0, 0)),  # 38 outputs: AVX2's last block overlaps
    ((4, 21), (2, 2), (2, 2), (0, 0, 0, 0)),  # 10 outputs: under one AVX2 block
]


def _case(case: tuple) -> tuple[Node, np.ndarray, np.ndarray, np.ndarray]:
    (h, w), k, s, p = case
    rng = np.random.default_rng(h * w)
    big = rng.integers(-128, 128, (2, 6, h, w)).astype(np.int8)
    x = big[:, 1:5]  # planes strided within a bigger buffer
    attrs = {"kernel_shape": list(k), "strides": list(s), "pads": list(p)}
    want = get_registry().resolve("", "MaxPool", 17).kernel(x, **attrs)
    want = np.asarray(want[0] if isinstance(want, tuple | list) else want)
    out = np.full((2, 7, *want.shape[2:]), 3, np.int8)[:, 1:5]
    return Node("MaxPool", "mp", "", attrs), x, out, want


@pytest.mark.parametrize("case", POOLS, ids=str)
def test_stride2_rows(case: tuple) -> None:
    node, x, out, want = _case(case)
    run = STEPS["MaxPool"](node, [x], [out], ScratchPool())
    assert isinstance(run, native.NativeCall) and run.name == "maxpool_s8_f32"
    run()
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("build", list(isa_builds.X86_BUILDS))
def test_every_x86_vector_path_gives_the_same_bits(build: str, tmp_path) -> None:
    """The step's bound calls through reformat.c built for each x86 path (AVX-512BW's stride-2
    and AVX2's stride-2 blocks; plain x86-64's padded rows and straight kh x 1 rows)."""
    flags, needs = isa_builds.X86_BUILDS[build]
    isa_builds.need_features(needs)
    fn = isa_builds.build_kernels(tmp_path, ["reformat.c"], flags).maxpool_s8_f32
    fn.restype = None
    for case in POOLS:
        node, x, out, want = _case(case)
        run = STEPS["MaxPool"](node, [x], [out], ScratchPool())
        assert isinstance(run, native.NativeCall)
        fn(ctypes.byref(run.args))
        np.testing.assert_array_equal(out, want, err_msg=f"{build} {case}")
