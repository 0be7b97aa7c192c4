"""``winograd_native``: 3×3 stride-1 convolution by Winograd's F(4×4, 3×3) in a C kernel
(``backends/cpu/kernels/conv_winograd.c``).

A 4×4 output tile costs 36 multiplies per channel pair instead of 144 (4× fewer; the
transforms take some back). Tiles are numbered across the whole batch and taken 16 at a time:
transform the inputs, 36 small matrix products, transform the outputs and apply bias,
residual and activation — one block's data never leaves the core's cache, and the padded
input is never materialised. The weights are transformed once, at bind, in float64.

FP32 error grows by the transforms' coefficients: about 2e-5 of the output's scale against
~1e-6 for a direct sum (tests/engine/tactics/test_native.py holds every case to 2e-5 of the
scale plus 1e-4 relative).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import split
from edge_infer.engine.backends.cpu.tactics.cpu_direct import _NativeConv
from edge_infer.engine.tactics.base import ConvSpec, Run, Scratch

TB, KR = 16, 6  # tiles per block, output channels per register tile (conv_winograd.c)

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
    return np.ascontiguousarray(packed, np.float32)


class WinogradNative(_NativeConv):
    name = "winograd_native"

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

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        s = self.spec
        x, out3, z3, before, after = self._io(inputs, outputs, scratch)
        x = self._unit_rows(x, scratch, before)
        n, cin, h, w = s.x_shape
        _, cout, ho, wo = s.out_shape
        pt, pl, _, _ = s.pads
        th, tw = -(-ho // 4), -(-wo // 4)
        u = transform_weights(s.weight)
        bias = None if s.bias is None else np.ascontiguousarray(s.bias, np.float32)
        lib = native.library()
        assert lib is not None
        work = int(lib.winograd_work_f32(cin, cout))
        tiles = n * th * tw
        workers = getattr(scratch, "workers", 1)
        parts = 1 if workers == 1 else min(2 * workers, -(-tiles // TB))
        zres = z3 if self.residual else None
        chunks: list[Run] = []
        for k, (t0, t1) in enumerate(split(tiles, parts, align=TB)):
            buf = scratch((work,), np.float32, f"wino_work{k}")
            args = dict(
                x=x.ctypes.data,
                xis=x.strides[0] // 4,
                xcs=x.strides[1] // 4,
                xrs=x.strides[2] // 4,
                h=h,
                w=w,
                pt=pt,
                pl=pl,
                cin=cin,
                U=u.ctypes.data,
                bias=None if bias is None else bias.ctypes.data,
                cout=cout,
                ho=ho,
                wo=wo,
                t0=t0,
                t1=t1,
                out=out3.ctypes.data,
                ois=out3.strides[0] // 4,
                ocs=out3.strides[1] // 4,
                act=self.act,
                p0=self.params[0],
                p1=self.params[1],
                residual=self.residual,
                z=None if zres is None else zres.ctypes.data,
                zis=0 if zres is None else zres.strides[0] // 4,
                zcs=0 if zres is None else zres.strides[1] // 4,
                work=buf.ctypes.data,
            )
            chunks.append(
                native.NativeCall("conv_winograd_f32", args, (u, bias, x, out3, zres, buf))
            )
        phases: list[list[Run]] = [chunks]
        if not self.fused:  # the kernel added the bias; the shared epilogue does the rest
            phases.append([self._epilogue(out3, z3, b, 0, ho * wo) for b in range(n)])
        return self._assemble(scratch, phases, before, after)
