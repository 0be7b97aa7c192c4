"""``qwinograd_native``: INT8 3x3 stride-1 convolutions (``edge_infer::QConv``) of an int8
input by Winograd's F(2x2, 3x3) in integers (``kernels/conv_int8_wino.c``): the input
transform B^T d B and the weights' G' g G'^T (G' = 2 G: integers) in int16, 16 products of
channel pairs by vpmaddwd, the output transform A^T M A = 4 acc exactly (int32 sums that wrap
mod 2^32; 4 acc fits for fewer than :data:`MAX_CIN` input channels), then conv_int8.c's
epilogue on acc: the same bits as the reference and the direct kernels. 16 multiplies per 4
outputs of a channel pair where the direct sum takes 36. Chosen against ``qconv_native`` /
``qconv_native_oc`` by timing.

The weights are packed at bind: ``[ceil(cout / 6)][16][ceil(cin / 2)][6]`` int32, each the
int16 pair of channels (2k, 2k + 1), channel 2k in the low half (:func:`pack_weights`). Work
is split between the threads by tile ranges of an image (multiples of the register tile's 16
tiles, :data:`SPLIT_TILES`), and by blocks of 6 output channels where an image has few tiles."""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from edge_infer.engine.backends.cpu import hugemem, native
from edge_infer.engine.backends.cpu.parallel import sequence, split
from edge_infer.engine.backends.cpu.tactics import qconv_chunks
from edge_infer.engine.backends.cpu.tactics.cpu_qconv import (
    MIN_TASK_MACS,
    PROVED_ROWS,
    QConvNative,
    activation_fields,
    bound_arrays,
    epilogue_applicable,
)
from edge_infer.engine.tactics.base import Run, Scratch, Tactic
from edge_infer.engine.tactics.quantized import QConvSpec

#: input channels at most: 4 acc fits in int32 below this (4 cin 9 128 128 < 2^31), and so
#: does every sum of M (cin 512 1152 < 2^31)
MAX_CIN = 3639
#: the packed weights' bytes at most (32 cin cout: int16, 16 points for 9 taps, 3.6 times the
#: direct kernels' int8): each block of the kernel's tiles streams them all, and past the L2
#: cache's size, in an engine whose other layers evict them between runs, that cost more than
#: the multiplies saved, where the tuner's warm timing took it (ResNet-50's 256 -> 256 14 x 14
#: layers, 2 MiB: 1.14-1.21 times qconv_native_oc's time in the engine, 1.06 timed alone;
#: YOLOv8n's 128 -> 144 20 x 20, 0.58 MiB: 0.95)
MAX_WEIGHT_BYTES = 1 << 20
#: output channels of the kernel's register tile: thread splits by channels are multiples
OB = 6
#: tile ranges split between threads at multiples of this many tiles (None: the kernel's
#: block, qwino_int8_tb = 32): the register tile's 16, so a small map's tiles divide
#: evenly (YOLOv8n's 20 x 20 maps, 100 tiles: 16 + 32 + 32 + 20, not 32 + 32 + 32 + 4), and
#: without splitting output channels, which lays the same tiles' input out twice
SPLIT_TILES: int | None = 16
#: G' = 2 G of F(2x2, 3x3): integer weight transforms
G2 = np.array([[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]], np.int64)


def transform_weights(weight: np.ndarray) -> np.ndarray:
    """[cout, cin, 4, 4] int16: G' g G'^T of each 3x3 kernel (|U| <= 9 * 128)."""
    g = np.asarray(weight, np.int64)
    return np.einsum("ai,ocij,bj->ocab", G2, g, G2).astype(np.int16)


def pack_weights(weight: np.ndarray) -> np.ndarray:
    """The kernel's U: ``[ceil(cout / 6)][16][ceil(cin / 2)][6]`` int32, each the int16 pair
    of input channels (2k, 2k + 1) (2k in the low half) of point e = 4 i + j; zeros past the
    layer's channels."""
    cout, cin = weight.shape[:2]
    blocks, pairs = -(-cout // OB), -(-cin // 2)
    u = np.zeros((blocks * OB, pairs * 2, 16), np.int16)
    u[:cout, :cin] = transform_weights(weight).reshape(cout, cin, 16)
    # [ob][i][k][2][e] -> [ob][e][k][i][2]
    u = u.reshape(blocks, OB, pairs, 2, 16).transpose(0, 4, 2, 1, 3)
    return np.ascontiguousarray(u).view(np.int32).reshape(blocks, 16, pairs, OB)


class QWinogradNative(Tactic):
    """INT8 Winograd F(2x2, 3x3) in C (see the module docstring)."""

    name = "qwinograd_native"

    def __init__(self, spec: QConvSpec) -> None:
        self.spec = spec
        self.act, self.params = activation_fields(spec)

    @classmethod
    def applicable(cls, spec: QConvSpec) -> bool:
        lib = native.library()
        return (
            lib is not None
            and hasattr(lib, "qwino_int8_f32")
            and spec.kernel == (3, 3)
            and tuple(spec.strides) == (1, 1)
            and tuple(spec.dilations) == (1, 1)
            and spec.group == 1
            and spec.cin <= MAX_CIN
            and 32 * spec.cin * spec.cout <= MAX_WEIGHT_BYTES
            and np.dtype(spec.x_dtype) == np.dtype(np.int8)
            and epilogue_applicable(spec)
        )

    def _prepared(self) -> dict[str, Any]:
        cached = getattr(self, "_prep", None)
        if cached is not None:
            return cached
        s = self.spec
        cout = s.cout
        mult = float(s.x_scale) * np.asarray(s.w_scale, np.float64).reshape(cout)
        bias = None if s.bias is None else np.ascontiguousarray(s.bias, np.int32).reshape(cout)
        # conv_int8.c's proved rows (its epilogue reads them after T = 0 weight rows)
        proved = np.zeros((PROVED_ROWS, cout), np.float32)
        proved[:] = QConvNative(s)._proved(mult, bias)
        lib = native.library()
        lib.qwino_int8_tb.restype = lib.qwino_int8_work.restype = ctypes.c_long
        lib.qwino_int8_work.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_long]
        self._prep = dict(
            U=hugemem.copy(pack_weights(np.asarray(s.weight, np.int8))),
            mult=np.ascontiguousarray(mult),
            bias=bias,
            proved=np.ascontiguousarray(proved.view(np.int32)),
            tb=int(lib.qwino_int8_tb()),
            work=int(lib.qwino_int8_work(s.cin, s.out_shape[2], s.out_shape[3])),
        )
        return self._prep

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        s, p = self.spec, self._prepared()
        x, out3, z3, before, after = bound_arrays(s, inputs, outputs, scratch, "qwino")
        n, _, h, w = s.x_shape
        ho, wo = s.out_shape[2], s.out_shape[3]
        tiles = -(-ho // 2) * -(-wo // 2)
        workers = getattr(scratch, "workers", 1)
        pool = getattr(scratch, "pool", None)
        tb = p["tb"]
        # a few more tasks than threads, none too small: tile ranges first (multiples of
        # SPLIT_TILES), then blocks of output channels
        tasks = 1 if workers == 1 else qconv_chunks.TASKS_PER_WORKER * workers
        macs = ho * wo * s.cout * s.cin * 9
        per = max(1, min(-(-tasks // n), macs // MIN_TASK_MACS))
        talign = SPLIT_TILES or tb
        tparts = min(per, -(-tiles // talign))
        oparts = min(-(-per // tparts), -(-s.cout // OB))
        parts = [
            (t, o)
            for t in split(tiles, tparts, align=talign)
            for o in split(s.cout, oparts, align=OB)
        ]
        work = scratch((n * len(parts), p["work"]), np.int32, "qwino_work")
        keep = (p["U"], p["mult"], p["bias"], p["proved"], work, x, out3, z3)
        isz = x.itemsize
        calls = []
        for b in range(n):
            for k, ((t0, t1), (o0, o1)) in enumerate(parts):
                fields = dict(
                    x=x.ctypes.data + b * x.strides[0],
                    xcs=x.strides[1] // isz,
                    xrs=x.strides[2] // isz,
                    h=h,
                    w=w,
                    pt=s.pads[0],
                    pl=s.pads[1],
                    cin=s.cin,
                    U=p["U"].ctypes.data + p["U"][0].nbytes * (o0 // OB),
                    cout=o1 - o0,
                    bias=None if p["bias"] is None else p["bias"].ctypes.data + 4 * o0,
                    mult=p["mult"].ctypes.data + 8 * o0,
                    proved=p["proved"].ctypes.data + 4 * o0,
                    coutp=s.cout,
                    ho=ho,
                    wo=wo,
                    t0=t0,
                    t1=t1,
                    work=work[b * len(parts) + k].ctypes.data,
                    **self._out_fields(out3, z3, b, o0),
                )
                calls.append(native.NativeCall("qwino_int8_f32", fields, keep))
        steps: list[Run] = list(before)
        if pool is not None and workers > 1 and len(calls) > 1:
            steps.append(pool.bind(calls))
        else:
            steps.extend(calls)
        steps.extend(after)
        return sequence(steps)

    def _out_fields(
        self, out3: np.ndarray, z3: np.ndarray | None, b: int, oc0: int
    ) -> dict[str, Any]:
        return QConvNative._out_fields(self, out3, z3, b, oc0)  # type: ignore[arg-type]


__all__ = ["QWinogradNative", "pack_weights", "transform_weights"]
