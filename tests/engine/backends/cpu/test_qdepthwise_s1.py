"""qdepthwise_native's stride-1 rows path of AVX2 builds (conv_int8_dw.c qdw_s1: a channel's
int8 rows widened into a zero-padded float plane by 16-byte windows and byte shuffles, then
fmas along output rows) against the reference QConv, bit for bit: left pads of 0 to 9 (chunks
of padding only), right padding read, kernels 3, 4, 5 and 7 wide (the 3 x 3 loops and the
general one), partial last vectors, planes under 16 bytes (rows byte by byte) and windows
moved inside the plane at its first and last rows, channel slices of bigger buffers, output
rows split between threads (a last vector's bytes past its row go to the next row only where
that row is the same chunk's), fp32 output and residuals (the general epilogue), and the
direct int8 path with and without proved multipliers (ties that the exact redo must settle).
3 x 3 layers up to 112 wide take the int16 pairs path (conv_int8_dw.c qdw_p3) instead: the
same cases test it (and a 3 x 3 layer 120 wide qdw_s1's 3 x 3 loop). Builds without AVX2 run
the same cases on their own paths.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.tactics import cpu_qdepthwise
from edge_infer.engine.backends.cpu.tactics.cpu_qdepthwise import QDepthwiseNative
from tests.engine.backends.cpu.tactics.test_qconv_native import ACTS
from tests.engine.backends.cpu.test_qdepthwise_native import (
    check_epilogues,
    check_ties,
    library_workers,
    make_case,
    prove_none,
)

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

# x shape, kernel, strides, pads (t, l, b, r), dilations (all stride 1)
S1_CONVS = [
    ((1, 5, 11, 33), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((1, 3, 9, 20), (2, 4), (1, 1), (0, 1, 0, 2), (1, 1)),
    ((1, 3, 8, 18), (3, 7), (1, 1), (1, 3, 1, 3), (1, 1)),
    ((1, 4, 12, 24), (5, 5), (1, 1), (2, 2, 2, 2), (1, 1)),
    ((1, 3, 3, 4), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((1, 2, 6, 9), (3, 3), (1, 1), (2, 9, 1, 0), (1, 1)),
    ((1, 3, 7, 7), (3, 3), (1, 1), (0, 0, 0, 0), (1, 1)),
    ((1, 2, 4, 120), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    # a last vector of 6 and 5 outputs beside inner ones (qp3_proved's RAW: not that one)
    ((1, 3, 6, 30), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((1, 2, 5, 21), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
]


@pytest.fixture(params=["native", "avx2-f16c", "x86-64"])
def workers(request, monkeypatch) -> tuple[int, ...]:
    """(every width takes the path)"""
    monkeypatch.setattr(cpu_qdepthwise, "S1_MIN_WIDTH", 1)
    return library_workers(request.param, monkeypatch)


@pytest.mark.parametrize("k", range(len(S1_CONVS)))
def test_stride1_rows(k: int, workers: tuple[int, ...]) -> None:
    check_epilogues(S1_CONVS[k], k, 20 * k, workers, slicings=(False, True))


@pytest.mark.parametrize("proved", [False, True], ids=["checked", "proved"])
def test_stride1_ties(proved: bool, workers: tuple[int, ...], monkeypatch) -> None:
    if not proved:
        prove_none(monkeypatch)
    check_ties(S1_CONVS, 60, workers)


def test_the_path_is_taken_where_documented() -> None:
    """On an AVX2 build without AVX-512, stride-1 layers S1_MIN_WIDTH or more wide take it;
    narrower and strided ones do not."""
    if not cpu_qdepthwise.has_s1():
        pytest.skip("this build has no stride-1 rows path")

    def spec(conv: tuple) -> Any:
        return make_case(conv, ACTS[0], "none", None, "int8", np.int8, 1)[0]

    wide = spec(S1_CONVS[0])
    narrow = spec(((1, 3, 7, 7), *S1_CONVS[0][1:]))
    strided = spec(((1, 3, 40, 40), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)))
    assert QDepthwiseNative(wide)._s1()
    assert not QDepthwiseNative(narrow)._s1()
    assert not QDepthwiseNative(strided)._s1()
