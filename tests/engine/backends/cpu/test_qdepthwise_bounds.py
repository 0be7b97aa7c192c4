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

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge_infer.engine.backends.cpu import native

pytestmark = pytest.mark.skipif(
    not native.available() or sys.platform != "linux", reason="no C compiler / not Linux"
)

ROOT = Path(__file__).resolve().parents[4]

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
    import ctypes, mmap, sys
    import numpy as np
    from edge_infer.engine.backends.cpu.program import ScratchPool
    from edge_infer.engine.backends.cpu.tactics.cpu_qdepthwise import QDepthwiseNative
    from edge_infer.engine.ops.quantize import qconv
    from tests.engine.backends.cpu.test_qdepthwise_native import make_case

    PAGE = mmap.PAGESIZE
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    convs = eval(sys.argv[1])
    for k, conv in enumerate(convs):
        for act in (("clip", (0.0, 6.0)), ("relu", ()), ("", ())):
            spec, inputs = make_case(conv, act, "none", None, "int8", np.int8, 7 * k)
            want = qconv(*inputs, **spec.attrs())
            x = inputs[0]
            pages = -(-x.nbytes // PAGE)
            buf = mmap.mmap(-1, (pages + 2) * PAGE)
            base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
            assert libc.mprotect(base, PAGE, 0) == 0
            assert libc.mprotect(base + (pages + 1) * PAGE, PAGE, 0) == 0
            for at in (PAGE, (pages + 1) * PAGE - x.nbytes):  # after / before a guard
                xg = np.frombuffer(buf, np.int8, x.size, at).reshape(x.shape)
                xg[...] = x
                out = np.zeros(spec.out_shape, np.int8)
                QDepthwiseNative(spec).bind([xg, *inputs[1:]], [out], ScratchPool(None))()
                assert np.array_equal(out, want), (conv, act, at)
                del xg
    print("ok")
    """
)


def test_reads_stay_inside_the_input() -> None:
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, repr(CONVS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), (
        f"exit {run.returncode}\n{run.stdout}\n{run.stderr[-3000:]}"
    )
