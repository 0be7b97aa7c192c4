"""depthwise_native reads nothing outside its input: the float32 input placed against an
inaccessible page (first float just after one, last float just before one), then the layer
run and compared with the reference, in a subprocess (a stray read kills it with SIGSEGV).
The AVX2 vectors along rows (conv_depthwise.c dw_v8_layer) mask the loads that reach outside
a row, but at stride 2 only the lanes that reach a stored output: the others read on past
the row (the next row's first floats, or the next plane's) except in the call's last plane's
last pass. Stride 2 with the last vector inside (40, 56, 112 wide) and reaching past the
row (41, 30 wide), rows of two vectors (28 wide), of one vector (14 wide: 3 floats past the
row; 13 and 7 wide: masked), stride 1 from the input (60 wide); one thread and two (each
chunk a call: its last plane's last pass)."""

from __future__ import annotations

import sys
import textwrap

import pytest

from edge_infer.engine.backends.cpu import native
from tests.engine.backends.cpu.guard_pages import run_isolated

pytestmark = pytest.mark.skipif(
    not native.available() or sys.platform != "linux", reason="no C compiler / not Linux"
)

# x shape, strides, pads (t, l, b, r)
CONVS = [
    ((1, 3, 40, 40), (2, 2), (1, 1, 1, 1)),
    ((1, 2, 56, 56), (2, 2), (1, 1, 1, 1)),
    ((1, 2, 24, 112), (2, 2), (1, 1, 1, 1)),
    ((1, 3, 41, 41), (2, 2), (1, 1, 1, 1)),
    ((1, 2, 30, 30), (2, 2), (0, 0, 1, 1)),
    ((1, 4, 28, 28), (2, 2), (1, 1, 1, 1)),
    ((1, 5, 14, 14), (2, 2), (1, 1, 1, 1)),
    ((1, 3, 13, 13), (2, 2), (1, 1, 1, 1)),
    ((1, 3, 7, 7), (2, 2), (1, 1, 1, 1)),
    ((1, 2, 60, 60), (1, 1), (1, 1, 1, 1)),
]

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from edge_infer.engine.backends.cpu.parallel import WorkPool
    from edge_infer.engine.backends.cpu.program import ScratchPool
    from edge_infer.engine.backends.cpu.tactics.cpu_depthwise import DepthwiseNative
    from edge_infer.engine.ops import get_registry
    from edge_infer.engine.tactics.base import ConvSpec
    from tests.engine.backends.cpu.guard_pages import guarded

    CONV = get_registry().resolve("", "Conv", 17).kernel
    pool = WorkPool(2)
    for k, (xs, strides, pads) in enumerate(eval(sys.argv[1])):
        rng = np.random.default_rng(k)
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal((xs[1], 1, 3, 3)).astype(np.float32)
        b = rng.standard_normal(xs[1]).astype(np.float32)
        want = CONV(x, w, b, strides=list(strides), pads=list(pads), dilations=[1, 1],
                    group=xs[1])
        spec = ConvSpec(xs, want.shape, w, b, strides, pads, (1, 1), xs[1], "", ())
        for xg in guarded(x):  # after / before a guard
            for scratch in (ScratchPool(None), ScratchPool(pool)):
                out = np.zeros(want.shape, np.float32)
                DepthwiseNative(spec).bind([xg, w, b], [out], scratch)()
                np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
            del xg
    pool.close()
    print("ok")
    """
)


def test_reads_stay_inside_the_input() -> None:
    run = run_isolated(SCRIPT, repr(CONVS))
    assert run.returncode == 0 and run.stdout.strip() == "ok", (run.returncode, run.stderr)
