"""1×1 convolutions as a native GEMM over the pixels of the whole batch
(``kernels/conv_pointwise.c``).

``pointwise_native`` takes a plain 1×1 conv (stride 1, no padding) as
``out[oc, q] = W[oc, :] · x[:, q]`` with ``q`` running over every pixel of every image, so a
batch of 7×7 planes fills register tiles like one large plane and each weight panel is read
once per block of pixels, not once per image. Weights are packed at bind in panels of
``PANEL`` output channels; the kernel packs the input a block at a time for its register
tile (the tile's shape is the kernel's, per instruction set). On planes of at least 8 tile
widths with up to 512 input channels and no more output channels than input channels
(projections) the kernel skips that packing and reads the input where
it lies, a block of one image's pixels at a time, only a plane's last short strip packed:
the layers of few output channels on large planes (MobileNetV2's early projections) spent
as much on the copy as on a panel's products. Bias, residual and the activation are
applied in registers; activations the kernel lacks run in the shared epilogue afterwards.

FP16 layers (``half_io``, tactics/cpu_fp16.py): the kernel reads a float16 input as it packs
it and a float16 residual as it loads it, and stores a float16 output from its registers
(round to nearest even) — no conversion passes; the bits of the FP32 route between them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import split
from edge_infer.engine.backends.cpu.tactics.cpu_conv import flat3
from edge_infer.engine.backends.cpu.tactics.cpu_direct import _NativeConv, is_plain, pack_weights
from edge_infer.engine.tactics.base import ConvSpec, Run, Scratch

#: output channels per packed weight panel (conv_pointwise.c: PANEL)
PANEL = 8
#: floats of each chunk's input-packing buffer (a block of pixels × up to 512 channels;
#: at least KC_MAX × the widest register tile, 512 × 24)
PACK_FLOATS = 32768
#: conv_pointwise.c: input channels per block at most (KC_MAX), the widest strip of pixels
#: (NR), the most pixels of a last strip that tail_strip takes (TAIL_PX)
KC_MAX, STRIP, TAIL_PX = 512, 24, 4
#: chunk boundaries along pixels: a multiple of every tile width (8, 16, 24 pixels)
PIXEL_ALIGN = 48
#: a chunk below this many multiply-adds is not worth a thread hand-off
MIN_CHUNK_MACS = 1 << 18
#: split layers with more output channels than pixels by output channels (see _ranges)
SPLIT_BY_WEIGHTS = True
#: a float16 output holds no partial sums, so all input channels are one block: its packing
#: buffer holds this many strips of the widest tile (24 pixels) of every channel
HALF_STRIPS = 3
#: the kernel's ``half`` bits: x, out, z float16
X_HALF, OUT_HALF, Z_HALF = 1, 2, 4


class PointwiseNative(_NativeConv):
    """Plain 1×1 convs: a register-tiled GEMM over the batch's pixels, weights packed at
    bind, the epilogue in registers."""

    name = "pointwise_native"
    half_io: ClassVar[bool] = True
    #: a chunk whose pixels are at most TAIL_PX past what PACK_FLOATS holds packs them as
    #: one block (_pack_floats); False: PACK_FLOATS always (A/B)
    pack_tail: ClassVar[bool] = True

    def half_ready(self) -> bool:
        """Float16 arrays in and out (cpu_fp16.py): when the kernel does the whole epilogue
        (the shared one runs on float32 outputs)."""
        return self.fused

    @classmethod
    def applicable(cls, spec: ConvSpec) -> bool:
        return (
            is_plain(spec)
            and spec.group == 1
            and spec.weight.dtype == np.float32
            and native.available()
        )

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        s = self.spec
        x, out3, z3, before, after = self._io(inputs, outputs, scratch)
        n, cin, h, w = s.x_shape
        cout = s.cout
        x3 = flat3(x)
        if x3 is None:  # (a float16 input widened: exact)
            xc = scratch(x.shape, np.float32, "conv_in")
            x3 = flat3(xc)
            before.append(lambda: np.copyto(xc, x))
        assert x3 is not None
        wpack = pack_weights(s.weight, PANEL)
        bias = None if s.bias is None else np.ascontiguousarray(s.bias, np.float32)
        ranges = self._ranges(scratch, n * h * w, -(-cout // PANEL))
        zres = z3 if self.residual else None
        half = _half_bits(x3, out3, zres)
        if half and not self.fused:
            raise ValueError(f"{self.name}: float16 storage needs the kernel's epilogue")
        pkn = PACK_FLOATS
        if half & OUT_HALF:
            pkn = max(pkn, HALF_STRIPS * 24 * cin)
        keep = (wpack, bias, x3, out3, zres)
        chunks: list[Run] = []
        for k, ((q0, q1), (o0, o1)) in enumerate(ranges):
            # one packing buffer per chunk: the pool runs chunks concurrently
            kpn = max(pkn, _pack_floats(cin, q1 - q0)) if self.pack_tail else pkn
            pk = scratch((kpn,), np.float32, f"pw_pack{k}")
            args = dict(
                x=x3.ctypes.data,
                xis=x3.strides[0] // x3.itemsize,
                xcs=x3.strides[1] // x3.itemsize,
                hw=h * w,
                cin=cin,
                wpack=wpack.ctypes.data,
                bias=None if bias is None else bias.ctypes.data,
                cout=cout,
                q0=q0,
                q1=q1,
                ob0=o0,
                ob1=o1,
                out=out3.ctypes.data,
                ois=out3.strides[0] // out3.itemsize,
                ocs=out3.strides[1] // out3.itemsize,
                act=self.act,
                p0=self.params[0],
                p1=self.params[1],
                residual=self.residual,
                z=None if zres is None else zres.ctypes.data,
                zcs=0 if zres is None else zres.strides[1] // zres.itemsize,
                zis=0 if zres is None else zres.strides[0] // zres.itemsize,
                pk=pk.ctypes.data,
                pkn=kpn,
                half=half,
            )
            chunks.append(native.NativeCall("conv_pointwise_f32", args, (*keep, pk)))
        phases: list[list[Run]] = [chunks]
        if not self.fused:
            parts = self._parts(scratch, cout * h * w)
            phases.append(
                [
                    self._epilogue(out3, z3, b, 0, h * w, c0, c1)
                    for b in range(n)
                    for c0, c1 in split(cout, parts)
                ]
            )
        return self._assemble(scratch, phases, before, after)

    def _ranges(
        self, scratch: Scratch, pixels: int, panels: int
    ) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """The chunks: (pixel range, weight panel range) pairs. Each chunk reads the weights
        of its panels and packs the inputs of its pixels, so the layer is split along the
        smaller of the two (the other is read once per chunk): pixels where there are more
        pixels than output channels (early layers), output channels where the weights are
        the larger (late layers, small batches: then at most one weight range per thread,
        as each packs the inputs of its pixels again)."""
        workers = getattr(scratch, "workers", 1)
        macs = pixels * panels * PANEL * self.spec.cin
        want = 1 if workers == 1 else min(2 * workers, max(1, macs // MIN_CHUNK_MACS))
        if SPLIT_BY_WEIGHTS and self.spec.cout >= pixels:
            # every panel range packs its pixels again: one per thread (at batch 1, 4 ranges
            # of a 14x14 or 7x7 layer measured 4-12 % more work than 2, one thread)
            by_panels = min(want, panels, workers)
            by_pixels = max(1, min(want // by_panels, pixels // PIXEL_ALIGN))
        else:
            by_pixels = max(1, min(want, pixels // PIXEL_ALIGN))
            by_panels = min(panels, max(1, want // by_pixels))
        return [
            (q, o)
            for q in split(pixels, by_pixels, align=PIXEL_ALIGN)
            for o in split(panels, by_panels)
        ]


def _half_bits(x: np.ndarray, out: np.ndarray, z: np.ndarray | None) -> int:
    """The kernel's ``half`` field: which of the input, output and residual are float16."""
    f16 = np.dtype(np.float16)
    return (
        (X_HALF if x.dtype == f16 else 0)
        | (OUT_HALF if out.dtype == f16 else 0)
        | (Z_HALF if z is not None and z.dtype == f16 else 0)
    )


def _pack_floats(cin: int, pixels: int) -> int:
    """Floats of packing buffer for a chunk of ``pixels``: PACK_FLOATS, or all of them where
    they are at most TAIL_PX past the strips PACK_FLOATS holds. The kernel packs a block of
    pixels at a time; a last block of those few pixels alone sends every weight panel through
    tail_strip again for them (MobileNetV2's 960-channel 7 x 7 projections at batch 1: two
    strips of 480 channels fill PACK_FLOATS, 49 = 2 x 24 + 1), where in one block the tail
    runs beside each group of panels."""
    kc = -(-cin // -(-cin // KC_MAX))
    nc = max(1, PACK_FLOATS // (kc * STRIP)) * STRIP
    if nc < pixels <= nc + TAIL_PX:
        return -(-pixels // STRIP) * kc * STRIP
    return PACK_FLOATS
