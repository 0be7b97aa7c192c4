"""``winograd_native``: 3×3 stride-1 convolution by Winograd's F(4×4, 3×3) in a C kernel
(``backends/cpu/kernels/conv_winograd.c``).

A 4×4 output tile costs 36 multiplies per channel pair instead of 144 (4× fewer; the
transforms take some back). Tiles are numbered across the whole batch and taken in blocks:
transform the inputs, 36 small matrix products, transform the outputs and apply bias,
residual and activation; the padded input is never materialised. The weights are
transformed once, at bind, in float64.

Two ways to share a layer between threads: with many tiles (large grids, batches) each
thread takes whole blocks of ``TB`` tiles; with few (at most ``SHARED_TILES``: the 14×14
layers of a ResNet at batch 1, where a 16-tile split left one thread idle) all tiles are one
block whose output channels are split between threads — every thread busy, the transformed
weights (4× the weights) read once in all. Transformed weights past ``WEIGHTS_ONE_BLOCK``
(512 channels: 38 MB) are one block whenever the tiles allow, on any number of threads.

FP16 layers (``half_io``, tactics/cpu_fp16.py): the kernel widens a float16 input as its
input transform loads it and a float16 residual as it copies it, and narrows each finished
output row (round to nearest even) — no conversion passes; the bits of the FP32 route.

FP32 error grows by the transforms' coefficients: about 2e-5 of the output's scale against
~1e-6 for a direct sum (tests/engine/backends/cpu/tactics/test_native.py and
test_winograd_native.py hold every case to 2e-5 of the scale plus 1e-4 relative).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from edge_infer.engine.backends.cpu import hugemem, native
from edge_infer.engine.backends.cpu.parallel import split
from edge_infer.engine.backends.cpu.tactics.cpu_direct import _NativeConv
from edge_infer.engine.tactics.base import ConvSpec, Run, Scratch

KR = 6  # output channels per register tile (conv_winograd.c)
#: tiles per block (a multiple of 16, at most conv_winograd.c's TBMAX) when there are many
TB = 16
#: with at most this many tiles all tiles are one block, split between threads by channels
#: instead of by tiles
SHARED_TILES = 128
#: one block of all tiles split by output channels costs this much more than the same tiles
#: in blocks of TB, per thread: V and M leave L2 (1.03-1.15 at 32-128 tiles, ResNet-50's
#: 3x3 layers, one thread) and every thread transforms the whole input (5-8%)
ONE_BLOCK_COST = 1.35
#: transformed weights (bytes) above which few tiles are always one block: 512 -> 512
#: channels (38 MB) ran 0.70x on one thread as one block of 32 tiles than as two of 16
WEIGHTS_ONE_BLOCK = 16 << 20
#: the kernel's ``half`` bits: x, out, z float16
X_HALF, OUT_HALF, Z_HALF = 1, 2, 4
F16 = np.dtype(np.float16)

#: F(4x4, 3x3) with interpolation points 0, ±1, ±2, ∞ (Lavin & Gray)
G = np.array(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ]
)
BT = np.array(
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    np.float64,
)
AT = np.array(
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], np.float64
)


def transform_weights(weight: np.ndarray) -> np.ndarray:
    """(Cout, Cin, 3, 3) → U = G g Gᵀ packed [36][ceil(Cout / 6)][Cin][6], zero past Cout."""
    cout, cin = weight.shape[:2]
    # G g Gᵀ as two batched matrix products ([o, c, a, b]): 2-3x faster than the
    # three-operand einsum on YOLOv8n's layers (paid at every bind: engine load, tactic check)
    u = (G @ weight.astype(np.float64) @ G.T).transpose(2, 3, 0, 1).reshape(36, cout, cin)
    blocks = -(-cout // KR)
    padded = np.zeros((36, blocks * KR, cin))
    padded[:, :cout] = u
    packed = padded.reshape(36, blocks, KR, cin).transpose(0, 1, 3, 2)
    return hugemem.copy(packed, np.float32)


class WinogradNative(_NativeConv):
    name = "winograd_native"
    tb = TB
    shared_tiles = SHARED_TILES
    half_io: ClassVar[bool] = True

    def half_ready(self) -> bool:
        """Float16 arrays in and out (cpu_fp16.py): when the kernel does the whole epilogue
        (the shared one runs on float32 outputs)."""
        return self.fused

    @classmethod
    def applicable(cls, spec: ConvSpec) -> bool:
        return (
            spec.kernel == (3, 3)
            and spec.strides == (1, 1)
            and spec.dilations == (1, 1)
            and spec.group == 1
            and spec.weight.dtype == np.float32
            and native.available()
        )

    def _one_block(self, tiles: int, workers: int) -> bool:
        """All tiles as one block split by channels: when the transformed weights are larger
        than a last-level cache (every block would read them from memory again), or when a
        split by blocks of ``tb`` tiles would leave a thread idle long enough to cost more
        than the larger block does."""
        if tiles > self.shared_tiles:
            return False
        if 36 * self.spec.cin * self.spec.cout * 4 > WEIGHTS_ONE_BLOCK:
            return True
        if workers == 1:
            return False
        parts = min(2 * workers, -(-tiles // self.tb))
        loads = [0] * workers  # the pool hands chunks out in order to whichever is free
        for t0, t1 in split(tiles, parts, align=self.tb):
            loads[loads.index(min(loads))] += t1 - t0
        return max(loads) > ONE_BLOCK_COST * tiles / workers

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        s = self.spec
        x, out3, z3, before, after = self._io(inputs, outputs, scratch)
        if x.dtype != F16 or x.strides[3] != 2 or any(v % 2 for v in x.strides):
            x = self._unit_rows(x, scratch, before)  # (a float16 input widened: exact)
        n, cin, h, w = s.x_shape
        _, cout, ho, wo = s.out_shape
        tiles = n * -(-ho // 4) * -(-wo // 4)
        u = transform_weights(s.weight)
        bias = None if s.bias is None else np.ascontiguousarray(s.bias, np.float32)
        lib = native.library()
        assert lib is not None
        kblocks = -(-cout // KR)
        workers = getattr(scratch, "workers", 1)
        zres = z3 if self.residual else None
        half = (
            (X_HALF if x.dtype == F16 else 0)
            | (OUT_HALF if out3.dtype == F16 else 0)
            | (Z_HALF if zres is not None and zres.dtype == F16 else 0)
        )
        if half and not self.fused:
            raise ValueError(f"{self.name}: float16 storage needs the kernel's epilogue")
        fixed = dict(
            x=x.ctypes.data,
            xis=x.strides[0] // x.itemsize,
            xcs=x.strides[1] // x.itemsize,
            xrs=x.strides[2] // x.itemsize,
            h=h,
            w=w,
            pt=s.pads[0],
            pl=s.pads[1],
            cin=cin,
            U=u.ctypes.data,
            bias=None if bias is None else bias.ctypes.data,
            cout=cout,
            ho=ho,
            wo=wo,
            ois=out3.strides[0] // out3.itemsize,
            zis=0 if zres is None else zres.strides[0] // zres.itemsize,
            **self._output_args(out3, z3, 0),
            half=half,
        )
        if half:  # _output_args counts strides in float32 elements
            fixed["ocs"] = out3.strides[1] // out3.itemsize
            fixed["zcs"] = 0 if zres is None else zres.strides[1] // zres.itemsize
        keep = (u, bias, x, out3, zres)

        if self._one_block(tiles, workers):
            # few tiles: all of them one block, output channels split between threads (each
            # transforms the whole input; no wait between phases) — weights read once in all
            tb, ranges = -(-tiles // 16) * 16, [(0, tiles)]
            kparts = split(kblocks, workers)
        else:
            tb, kparts = self.tb, [(0, kblocks)]
            parts = 1 if workers == 1 else min(2 * workers, -(-tiles // tb))
            ranges = split(tiles, parts, align=tb)
        chunks: list[Run] = []
        for t0, t1 in ranges:
            for k0, k1 in kparts:
                k = len(chunks)
                v = scratch((int(lib.winograd_v_f32(cin, tb)),), np.float32, f"wino_v{k}")
                work = scratch(
                    (int(lib.winograd_work_f32((k1 - k0) * KR, tb)),), np.float32, f"wino_work{k}"
                )
                args = dict(fixed, work=work.ctypes.data, V=v.ctypes.data, tb=tb)
                args.update(t0=t0, t1=t1, k0=k0, k1=k1)
                chunks.append(native.NativeCall("conv_winograd_f32", args, (*keep, work, v)))
        phases: list[list[Run]] = [chunks]
        if not self.fused:  # the kernel added the bias; the shared epilogue does the rest
            phases.append([self._epilogue(out3, z3, b, 0, ho * wo) for b in range(n)])
        return self._assemble(scratch, phases, before, after)
