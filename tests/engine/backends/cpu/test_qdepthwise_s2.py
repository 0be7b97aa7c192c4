"""qdepthwise_native's stride-2 column path of AVX2 builds (conv_int8_dw.c qdw_s2: int16
pairs of adjacent input columns, vpmaddwd) against the reference QConv, bit for bit: left
pads of 1 and 2, right padding read, kernels 3, 4 and 7 wide (one, two and four pairs a
row), rows 16 wide (the narrowest it takes), partial last vectors, output rows split between
threads (a last vector's bytes past its row go to the next row only where that row is the
same chunk's), and on the direct int8 path with and without proved multipliers (ties that
the exact redo must settle). 3 x 3 layers up to 56 wide take the int16 pairs path
(conv_int8_dw.c qdw_p3) instead: the same 3 x 3 cases test it (outputs up to 7 wide: one
window a row for both column phases), and one 65 wide qdw_s2's 3 x 3 loop. Builds without
AVX2 run the same cases on their own paths.
"""

from __future__ import annotations

import pytest

from edge_infer.engine.backends.cpu import native
from tests.engine.backends.cpu.test_qdepthwise_native import (
    check_epilogues,
    check_ties,
    library_workers,
    prove_none,
)

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

# x shape, kernel, strides, pads (t, l, b, r), dilations (all stride 2 along rows)
S2_CONVS = [
    ((1, 5, 11, 33), (3, 3), (2, 2), (1, 2, 1, 2), (1, 1)),
    ((1, 3, 9, 40), (2, 4), (2, 2), (0, 1, 0, 2), (1, 1)),
    ((1, 3, 8, 50), (3, 7), (1, 2), (1, 3, 1, 3), (1, 1)),
    ((1, 4, 12, 16), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    ((1, 3, 14, 14), (3, 3), (2, 2), (0, 0, 1, 1), (1, 1)),
    ((1, 2, 5, 70), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    ((1, 2, 5, 130), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    # an inner vector (qp3_proved's RAW) beside a last one of 6 outputs
    ((1, 3, 9, 44), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    # outputs 7 and 5 wide after a left pad: qp3_proved's one window a row (qp3_window2)
    ((1, 3, 13, 13), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    ((1, 4, 9, 9), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
]


@pytest.fixture(params=["native", "avx2-f16c", "x86-64"])
def workers(request, monkeypatch) -> tuple[int, ...]:
    return library_workers(request.param, monkeypatch)


@pytest.mark.parametrize("k", range(len(S2_CONVS)))
def test_stride2_columns(k: int, workers: tuple[int, ...]) -> None:
    check_epilogues(S2_CONVS[k], k, 10 * k, workers)


@pytest.mark.parametrize("proved", [False, True], ids=["checked", "proved"])
def test_stride2_ties(proved: bool, workers: tuple[int, ...], monkeypatch) -> None:
    if not proved:
        prove_none(monkeypatch)
    check_ties(S2_CONVS, 40, workers)
