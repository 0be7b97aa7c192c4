"""``depthwise_native``: depthwise convolutions by the native kernel (kernels/conv_depthwise.c),
on the shared native-conv machinery of :mod:`.cpu_direct` (``_NativeConv``: argument
layout, epilogue, float16 storage bits, thread chunks)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import sequence, split
from edge_infer.engine.backends.cpu.tactics.cpu_direct import (
    _OUT_HALF,
    _X_HALF,
    _Z_HALF,
    F16,
    _NativeConv,
)
from edge_infer.engine.tactics.base import ConvSpec, Run, Scratch

#: depthwise_native goes DW_GROUP channels at a time, vectors along channels (conv_depthwise.c:
#: CV), for strided layers and inputs at most GROUPED_MAX_WIDTH wide; row by row otherwise.
#: Measured on MobileNetV2's 3x3 layers, one thread: grouped 1.5-3.5x faster at 7, 14 and 28
#: wide and at stride 2 (1.15x at 112 wide); at stride 1, 56 wide the same, 112 wide 1.5x
#: slower.
GROUPED_MAX_WIDTH = 32
GROUPED_STRIDED = True
DW_GROUP = 8
#: depthwise_native on AVX-512 builds: vectors along output rows straight from the input
#: (conv_depthwise.c: dw_wide) for 3x3 at stride 1 and 2; the paths above are its fallback
#: elsewhere (the kernel picks by what it was compiled for). Measured in the MobileNetV2
#: engine (b1, one thread, layer profile, under load): its 17 depthwise layers 2039 -> 1212
#: us (onnxruntime's nodes 1282), each layer 0.45-0.85x the fallback paths. AVX2 builds take
#: it for every 3x3 layer at stride 1 or 2 (conv_depthwise.c: dw_v8_range, 8-float vectors
#: along rows; MobileNetV2's layers 0.54-0.8x the fallback's time at stride 1, 0.85-0.95x at
#: stride 2, one thread, CPU time), float16 storage included.
DW_WIDE = True
#: images last to first: the layer before (a 1x1 expand, images first to last) leaves its
#: last images in cache, and the layer after (a 1x1 project, first to last) then finds this
#: layer's first images, written last, in cache. Same bits either way. Measured at batch 8
#: (MobileNetV2 features.2: 38.5 MB of depthwise input, more than the 32 MB L3), one thread,
#: CPU time, under load: after a first-to-last writer (C harness) the depthwise 0.72-0.82x;
#: the engine's expand / depthwise / project in sequence (bench/dw_order_ab.py, 15 rounds, 5
#: runs) depthwise 0.96-1.02x, project 0.86-0.94x (two identical programs differ by up to
#: 13 % on the project there).
REVERSE_IMAGES = True
#: the kernel's path field ("grouped" in args.h): bit 0 channel groups (else row by row),
#: bit 1 vectors along rows where the build has them (else bit 0's path)
_DW_GROUPS, _DW_WIDE = 1, 2


def _v8_ws(w: int, wo: int) -> int:
    """Floats of a padded-plane row of the vectors along rows on AVX2 builds
    (conv_depthwise.c: v8_ws)."""
    return (8 + max(w, 2 * wo + 2) + 24) // 8 * 8


def wide_fits(spec: ConvSpec) -> bool:
    """A layer the depthwise kernel's vectors along rows take (conv_depthwise.c: wide_fits,
    and on AVX2 builds v8_fits: left pad at most 8, output rows at most 256 wide)."""
    return (
        spec.kernel == (3, 3)
        and spec.dilations == (1, 1)
        and spec.strides[0] == spec.strides[1]
        and spec.strides[1] in (1, 2)
        and 0 <= spec.pads[1] <= 8
        and spec.out_shape[3] <= 256
    )


def wide_built() -> bool:
    """Whether this machine's kernel library has the vectors along rows (AVX-512 or AVX2)."""
    lib = native.library()
    return lib is not None and bool(lib.conv_depthwise_wide())


class DepthwiseNative(_NativeConv):
    """Depthwise convs (conv_depthwise.c): on AVX-512 builds 3x3 layers at stride 1 or 2
    with vectors along output rows, read straight from the input (DW_WIDE); otherwise small
    planes and strided layers DW_GROUP channels at a time, vectors along channels, and large
    stride-1 planes row by row, each input row laid out once per channel as zero-padded
    column phases in a small ring of row slots. The kernel field ``grouped`` carries both:
    bit 1 the wide path where the build has it, bit 0 its fallback."""

    name = "depthwise_native"
    half_io: ClassVar[bool] = True

    def half_ready(self) -> bool:
        """Float16 arrays in and out (cpu_fp16.py): where the vectors along rows take the
        layer (AVX-512 or AVX2 builds: their loads widen and their stores narrow, as the
        conversion passes do) and the kernel does the whole epilogue; elsewhere the
        conversion route."""
        return self.fused and wide_fits(self.spec) and wide_built()

    @classmethod
    def applicable(cls, spec: ConvSpec) -> bool:
        return (
            spec.group == spec.cin == spec.cout
            and spec.group > 1
            and spec.weight.dtype == np.float32
            and native.available()
        )

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        s = self.spec
        x, out3, z3, before, after = self._io(inputs, outputs, scratch)
        n, c, _, _ = s.x_shape
        _, _, ho, wo = s.out_shape
        kh, kw = s.kernel
        sx = s.strides[1]
        dy, dx = s.dilations
        zres = z3 if self.residual else None
        if x.dtype == F16:  # a float16 input read as it is (rows of unit stride)
            if x.strides[3] != 2 or any(v % 2 for v in x.strides):
                xc = scratch(x.shape, F16, "conv_in_half")
                before.append(lambda: np.copyto(xc, x))
                x = xc
        else:
            x = self._unit_rows(x, scratch, before)
        half = (
            (_X_HALF if x.dtype == F16 else 0)
            | (_OUT_HALF if out3.dtype == F16 else 0)
            | (_Z_HALF if zres is not None and zres.dtype == F16 else 0)
        )
        if half and not self.fused:
            raise ValueError(f"{self.name}: float16 storage needs the kernel's epilogue")
        # a phase row: the output row rounded up to whole vectors, plus the taps' reach
        wq = -(-wo // 8) * 8 + ((kw - 1) * dx) // sx
        grouped = s.x_shape[3] <= GROUPED_MAX_WIDTH or (GROUPED_STRIDED and s.strides != (1, 1))
        if grouped:  # DW_GROUP channels' padded input planes, interleaved
            sy = s.strides[0]
            hp, wp = (ho - 1) * sy + (kh - 1) * dy + 1, (wo - 1) * sx + (kw - 1) * dx + 1
            size = DW_GROUP * hp * wp
        else:  # the ring, then a zero slot
            size = ((kh - 1) * dy + 2) * sx * wq
        wide = DW_WIDE and sx in (1, 2)
        if wide:  # AVX2 builds: a channel's zero-padded plane (conv_depthwise.c: v8_ws)
            size = max(size, (s.x_shape[2] + 1) * _v8_ws(s.x_shape[3], wo))
        mode = (_DW_GROUPS if grouped else 0) | (_DW_WIDE if wide else 0)
        weights = np.ascontiguousarray(s.weight.reshape(c, -1), np.float32)
        bias = None if s.bias is None else np.ascontiguousarray(s.bias, np.float32)
        parts = self._chunks(scratch)
        if parts > 1:  # 2 chunks a thread: a descheduled thread holds up half as much
            parts = max(parts, 2 * getattr(scratch, "workers", 1))
        chunks: list[Run] = []
        for b in reversed(range(n)) if REVERSE_IMAGES else range(n):
            for c0, c1 in split(c, parts, align=DW_GROUP if grouped else 1):
                # one buffer per chunk: chunks run concurrently
                rows = scratch((size,), np.float32, None)
                keep = (weights, bias, rows, x, out3, z3)
                args = dict(
                    self._phase_input(x, b),
                    xcs=x.strides[1] // x.itemsize,
                    xrs=x.strides[2] // x.itemsize,
                    kh=kh,
                    kw=kw,
                    dy=dy,
                    dx=dx,
                    wq=wq,
                    grouped=mode,
                    rows=rows.ctypes.data,
                    wts=weights.ctypes.data,
                    bias=None if bias is None else bias.ctypes.data,
                    c0=c0,
                    c1=c1,
                    ho=ho,
                    wo=wo,
                    **self._output_args(out3, z3, b),
                    half=half,
                )
                # element strides (float16 arrays: 2 bytes an element)
                args["ocs"] = out3.strides[1] // out3.itemsize
                args["zcs"] = 0 if zres is None else zres.strides[1] // zres.itemsize
                steps: list[Run] = [native.NativeCall("conv_depthwise_f32", args, keep)]
                if not self.fused:
                    steps.append(self._epilogue(out3, z3, b, 0, ho * wo, c0, c1))
                chunks.append(sequence(steps))
        return self._assemble(scratch, [chunks], before, after)
