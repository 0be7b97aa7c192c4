"""Full convolutions with few input channels — a network's stem — as a native kernel
(``kernels/conv_stem.c``).

``stem_native`` takes a conv whose input has at most ``MAX_CIN`` channels (ResNet-50's 7×7/2
3→64, MobileNetV2's and YOLOv8n's 3×3/2 3→32 / 3→16). With so few (channel, tap) terms per
output, the general kernels' per-strip input packing and whole-image phase split cost about
as much as the products; here each chunk of output rows goes a band at a time, the band's
input rows laid out once (zero-padded, split into column phases) in a small buffer, and a
register tile of output channels × vectors of consecutive outputs reads every term as one
vector. Outputs are stored NCHW from the registers after bias, residual and activation;
activations the kernel lacks run in the shared epilogue afterwards.

FP16 layers (``half_io``, tactics/cpu_fp16.py): the kernel widens a float16 input as it lays
out the band's rows, widens a float16 residual as it loads it and narrows float16 outputs as
it stores them — when it does the whole epilogue (``half_ready``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import sequence, split
from edge_infer.engine.backends.cpu.tactics.cpu_direct import _NativeConv, pack_weights
from edge_infer.engine.tactics.base import ConvSpec, Run, Scratch

#: output channels per packed weight panel (conv_stem.c: PANEL)
PANEL = 8
#: the widest output vector of any build (conv_stem.c: VW, 16 floats with AVX-512): the
#: laid-out rows are padded for it
VECTOR = 16
#: the kernel's limit on (channel, tap) terms (conv_stem.c: MAX_TERMS)
MAX_TERMS = 1024
#: inputs with more channels go to the general kernels
MAX_CIN = 4
#: a band's laid-out input rows take about this many bytes (they stay in L2)
BAND_BYTES = 48 << 10
#: the kernel's ``half`` bits: x, out, z float16
X_HALF, OUT_HALF, Z_HALF = 1, 2, 4
#: ... and x float32, rounded to float16's values as it is laid out (an FP16 layer's rounded
#: float32 input: ``round_x``)
X_ROUND = 8
F16 = np.dtype(np.float16)


def _layout_width(spec: ConvSpec) -> int:
    """Floats per column phase of a laid-out row: every vector read of the band's outputs
    (whole VECTORs, the kernel's reach to the right) and every input column."""
    _, _, _, w = spec.x_shape
    wo = spec.out_shape[3]
    sx, pl = spec.strides[1], spec.pads[1]
    reach = VECTOR * -(-wo // VECTOR) + (spec.kernel[1] - 1) // sx
    return max(reach, -(-(w + pl) // sx))


class StemNative(_NativeConv):
    """Few-channel full convs: a band of input rows laid out per chunk, vectors along output
    columns, output channels broadcast (conv_stem.c)."""

    name = "stem_native"
    half_io: ClassVar[bool] = True
    #: rounds a float32 input to float16's values itself when ``round_x`` is set (cpu_fp16.py:
    #: the layer's rounded input, the image, without a rounding pass before)
    rounds_input: ClassVar[bool] = True
    round_x = False

    def half_ready(self) -> bool:
        """Float16 arrays in and out (cpu_fp16.py): when the kernel does the whole epilogue
        (the shared one runs on float32 outputs)."""
        return self.fused

    @classmethod
    def applicable(cls, spec: ConvSpec) -> bool:
        kh, kw = spec.kernel
        return (
            spec.group == 1
            and spec.cin <= MAX_CIN
            and spec.dilations == (1, 1)
            and spec.cin * kh * kw <= MAX_TERMS
            and spec.weight.dtype == np.float32
            and native.available()
        )

    def _band(self, wq: int) -> int:
        """Output rows per band: the band's laid-out input about BAND_BYTES."""
        s = self.spec
        sy, sx = s.strides
        kh = s.kernel[0]
        row_bytes = s.cin * sx * wq * 4
        rows = max(1, (BAND_BYTES // row_bytes - kh) // sy + 1)
        return min(rows, s.out_shape[2])

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        s = self.spec
        x, out3, z3, before, after = self._io(inputs, outputs, scratch)
        if x.dtype != F16 or x.strides[3] != 2 or any(v % 2 for v in x.strides):
            x = self._unit_rows(x, scratch, before)  # (a float16 input widened: exact)
        zres = z3 if self.residual else None
        half = (
            (X_HALF if x.dtype == F16 else 0)
            | (OUT_HALF if out3.dtype == F16 else 0)
            | (Z_HALF if zres is not None and zres.dtype == F16 else 0)
        )
        if half and not self.fused:
            raise ValueError(f"{self.name}: float16 storage needs the kernel's epilogue")
        half |= X_ROUND if self.round_x and x.dtype == np.float32 else 0
        n, cin, _, _ = s.x_shape
        _, cout, ho, wo = s.out_shape
        (sy, sx), (kh, kw) = s.strides, s.kernel
        wpack = pack_weights(s.weight, PANEL)
        bias = None if s.bias is None else np.ascontiguousarray(s.bias, np.float32)
        wq = _layout_width(s)
        band = self._band(wq)
        per_image = self._per_image(scratch, n)
        parts = 1 if per_image else self._whole_rounds(self._chunks(scratch), scratch)
        ranges = [(0, ho)] if per_image else split(ho, parts)
        work = [(b, r0, r1) for b in range(n) for r0, r1 in ranges]
        # a layout buffer per chunk that may run at the same time (the pool claims chunks
        # dynamically); one thread runs them in turn through one, cache-hot
        workers = getattr(scratch, "workers", 1)
        floats = cin * ((band - 1) * sy + kh) * sx * wq
        bufs = [
            scratch((floats,), np.float32, f"stem_rows{k}")
            for k in range(1 if workers == 1 else len(work))
        ]
        keep = (wpack, bias, x, out3, z3)
        chunks: list[Run] = []
        for k, (b, r0, r1) in enumerate(work):
            buf = bufs[0 if workers == 1 else k]
            args = dict(
                self._phase_input(x, b),
                cin=cin,
                kh=kh,
                kw=kw,
                wq=wq,
                band=band,
                r0=r0,
                r1=r1,
                wpack=wpack.ctypes.data,
                bias=None if bias is None else bias.ctypes.data,
                cout=cout,
                wo=wo,
                **self._output_args(out3, z3, b),
                buf=buf.ctypes.data,
                half=half,
            )
            if half:  # _phase_input and _output_args count strides in float32 elements
                args.update(xcs=x.strides[1] // x.itemsize, xrs=x.strides[2] // x.itemsize)
                args.update(ocs=out3.strides[1] // out3.itemsize)
                args.update(zcs=0 if zres is None else zres.strides[1] // zres.itemsize)
            call = native.NativeCall("conv_stem_f32", args, (*keep, buf))
            chunks.append(
                call
                if self.fused
                else sequence([call, self._epilogue(out3, z3, b, r0 * wo, r1 * wo)])
            )
        return self._assemble(scratch, [chunks], before, after)
