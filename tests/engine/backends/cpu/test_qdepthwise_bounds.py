"""qdepthwise_native reads nothing outside its input: the int8 input placed against an
inaccessible page (first byte just after one, last byte just before one), then the layer
run and compared with the reference bit for bit, in a subprocess (a stray read kills it
with SIGSEGV). The AVX2 pairs path (conv_int8_dw.c qdw_p3) loads 16-byte windows of a row
and zeroes what lies outside it; on small planes (qp3_proved's NEAR) a window may reach
into the call's other channels' planes, but only the first plane's start and the last
plane's end bound it. Small planes at stride 1 and 2 (one window a row), wider ones, the
last channel's rows ending exactly at the page.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

from edge_infer.engine.backends.cpu import native
from tests.engine.backends.cpu.guard_pages import run_isolated

pytestmark = pytest.mark.skipif(
    not native.available() or sys.platform != "linux", reason="no C compiler / not Linux"
)

# x shape, kernel, strides, pads (t, l, b, r), dilations
CONVS = [
    ((1, 5, 7, 7), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((1, 4, 7, 7), (3, 3), (1, 1), (0, 0, 0, 0), (1, 1)),
    ((1, 6, 14, 14), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    ((1, 3, 13, 13), (3, 3), (2, 2), (0, 0, 0, 0), (1, 1)),
    ((1, 3, 14, 14), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((1, 2, 28, 28), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
]

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from edge_infer.engine.backends.cpu.program import ScratchPool
    from edge_infer.engine.backends.cpu.tactics.cpu_qdepthwise import QDepthwiseNative
    from edge_infer.engine.ops.quantize import qconv
    from tests.engine.backends.cpu.guard_pages import guarded
    from tests.engine.backends.cpu.test_qdepthwise_native import make_case

    convs = eval(sys.argv[1])
    for k, conv in enumerate(convs):
        for act in (("clip", (0.0, 6.0)), ("relu", ()), ("", ())):
            spec, inputs = make_case(conv, act, "none", None, "int8", np.int8, 7 * k)
            want = qconv(*inputs, **spec.attrs())
            for at, xg in enumerate(guarded(inputs[0])):  # after / before a guard
                out = np.zeros(spec.out_shape, np.int8)
                QDepthwiseNative(spec).bind([xg, *inputs[1:]], [out], ScratchPool(None))()
                assert np.array_equal(out, want), (conv, act, at)
                del xg
    print("ok")
    """
)


def test_reads_stay_inside_the_input() -> None:
    run = run_isolated(SCRIPT, repr(CONVS))
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), (
        f"exit {run.returncode}\n{run.stdout}\n{run.stderr[-3000:]}"
    )
