"""qdepthwise_native's stride-2 column path of AVX2 builds (conv_int8_dw.c qdw_s2: int16
pairs of adjacent input columns, vpmaddwd) against the reference QConv, bit for bit: left
pads of 1 and 2, right padding read, kernels 3, 4 and 7 wide (one, two and four pairs a
row), rows 16 wide (the narrowest it takes), partial last vectors, output rows split between
threads (a last vector's bytes past its row go to the next row only where that row is the
same chunk's), and on the direct int8 path with and without proved multipliers (ties that
the exact redo must settle). Builds without AVX2 run the same cases on their own paths.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.tactics import cpu_qdepthwise
from edge_infer.engine.ops.quantize import qconv
from tests.engine.backends.cpu.tactics.test_qconv_native import ACTS
from tests.engine.backends.cpu.test_qdepthwise_native import (
    check,
    make_case,
    prove_none,
    run_native,
    runnable_build,
    tie_case,
)

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

# x shape, kernel, strides, pads (t, l, b, r), dilations (all stride 2 along rows)
S2_CONVS = [
    ((1, 5, 11, 33), (3, 3), (2, 2), (1, 2, 1, 2), (1, 1)),
    ((1, 3, 9, 40), (2, 4), (2, 2), (0, 1, 0, 2), (1, 1)),
    ((1, 3, 8, 50), (3, 7), (1, 2), (1, 3, 1, 3), (1, 1)),
    ((1, 4, 12, 16), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
]


@pytest.fixture(params=["native", "avx2-f16c", "x86-64"])
def workers(request, monkeypatch) -> tuple[int, ...]:
    """The library to run (this CPU's, or another build's), and the thread counts to run
    it with (the other builds run without the engine's pool)."""
    monkeypatch.setattr(cpu_qdepthwise, "MIN_CHUNK", 1)  # row chunks even on small planes
    if request.param == "native":
        return (1, 2)
    built = runnable_build(request.param)
    monkeypatch.setattr(native, "library", lambda: built)
    return (1,)


@pytest.mark.parametrize("k", range(len(S2_CONVS)))
def test_stride2_columns(k: int, workers: tuple[int, ...]) -> None:
    for j, (out_precision, residual) in enumerate(
        [("int8", "none"), ("int8", "none"), ("fp32", "post"), ("int8", "pre")]
    ):
        act = ACTS[(k + j) % 4]
        spec, inputs = make_case(
            S2_CONVS[k], act, residual, np.int8, out_precision, np.int8, 10 * k + j
        )
        want = qconv(*inputs, **spec.attrs())
        for n in workers:
            got = run_native(spec, inputs, workers=n)
            check(spec, got, want, f"{S2_CONVS[k]} {act} {out_precision} {residual} x{n}")


@pytest.mark.parametrize("proved", [False, True], ids=["checked", "proved"])
def test_stride2_ties(proved: bool, workers: tuple[int, ...], monkeypatch) -> None:
    """Small accumulators at out_scale = 2 x channel 0's multiplier: half of its outputs on
    a float32 half step (unproved: redone exactly; proved channels are the others)."""
    if not proved:
        prove_none(monkeypatch)
    for k, conv in enumerate(S2_CONVS):
        s, inputs = tie_case(conv, 40 + k, k)
        want = qconv(*inputs, **s.attrs())
        for n in workers:
            check(s, run_native(s, inputs, workers=n), want, f"{conv} x{n}")
