"""``ocvec_native``: convolutions on small output grids by the native kernel
(kernels/conv_ocvec.c), on the shared native-conv machinery of :mod:`.cpu_direct`
(``_NativeConv``: argument layout, epilogue, float16 storage bits, thread chunks): the terms
of 6 or 7 positions packed in tile order (a small im2col), a 16-channel × 6- or 7-position
tile with vectors along output channels — for the late layers, where positions cannot fill a
vector."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import sequence, split
from edge_infer.engine.backends.cpu.tactics.cpu_conv import flat3
from edge_infer.engine.backends.cpu.tactics.cpu_direct import (
    _OUT_HALF,
    _X_HALF,
    _Z_HALF,
    F16,
    _NativeConv,
    is_plain,
    pack_weights,
)
from edge_infer.engine.tactics.base import ConvSpec, Run, Scratch

PB, OB = 6, 16  # conv_ocvec.c: positions per tile (or PB7), output channels per tile
#: conv_ocvec's other tile width: 7 positions fill 7x7, 14x14 and 28x28 grids exactly
PB7 = 7
#: plain 1×1 projections on grids above this many positions read their input in place (no
#: pack phase); at 7×7 in place measured no less work than pack + tile (one thread) and
#: up to 1.09x slower on two threads under load (960->320)
PLAIN_MIN_POSITIONS = 65
#: ... and, where the positions leave a last short tile (AVX2's tiles of 6 on 14x14: 196 =
#: 32 x 6 + 4), only up to this many input channels. In place the kernel goes through the
#: terms 128 at a time past 192 (their input lines and weights stay in L1; without that,
#: 576 input lines a tile overflowed L1 and 576 in measured 1.04 of pack + tile). One image
#: (its channel blocks split between threads), input in cache: 384 -> 96, 384 -> 64 and
#: 576 -> 96 on 14x14 0.91-0.97 of pack + tile (1 and 2 threads); 1024 -> 256 and
#: 2048 -> 512 on 14x14 1.10-1.15 (one thread: a group's input no longer stays in L2)
PLAIN_TAIL_MAX_CIN = 768
#: ... and where each image is a chunk of its own (a batch), up to this many: its input
#: comes from memory, and the pack's one sweep over it beat the tiles' strided reads there
#: (576 -> 96 on 14x14 at batch 8: 1.08x on one thread, 1.30x on two, in place)
PLAIN_TAIL_MAX_CIN_BATCH = 384
#: a float16 input read in place: at most this many input channels (conv_ocvec.c widens a
#: group of position blocks, every input channel of at least one block of up to 7
#: positions, into a WIDE_FLOATS = 16K-float stack buffer); more are packed
HALF_IN_PLACE_MAX_CIN = (16 << 10) // 7
#: conv_ocvec packs an im2col of the whole layer: only for small grids
OCVEC_MAX_POSITIONS = 1024
OCVEC_MAX_PACK_BYTES = 16 << 20
#: a chunk below this many multiply-adds is not worth a thread hand-off. The shared
#: ``_chunks`` counts output values (4096 per chunk), which kept 960->160 and 576->160
#: projections on 7x7 (7840 outputs, 7.5 M multiply-adds) on one thread
OCVEC_MIN_CHUNK_MACS = 1 << 18


def positions_per_tile(positions: int) -> int:
    """conv_ocvec's ``pb``: 7 where the library's 7-position tile keeps its vectors in
    registers (AVX-512) and pads the grid no more than 6 does (49 positions: 49, not 54),
    else 6."""
    lib = native.library()
    if lib is None or not lib.conv_ocvec_pb7_fits():
        return PB
    return PB7 if -(-positions // PB7) * PB7 <= -(-positions // PB) * PB else PB


class OcVecNative(_NativeConv):
    """Small output grids: an im2col packed in register-tile order, vectors along output
    channels (conv_ocvec.c)."""

    name = "ocvec_native"
    half_io: ClassVar[bool] = True
    #: positions per tile (conv_ocvec's pb); None: :func:`positions_per_tile` (benches force 6)
    tile_positions: ClassVar[int | None] = None
    #: a plain 1×1 conv whose positions fill whole tiles reads its input in place
    #: (no pack phase); False: packed as any other conv (benches, tests)
    plain_in_place: ClassVar[bool] = True
    #: ... and a float16 input too (the kernel widens each group of positions once, every
    #: channel block reading it there); False: float16 packed (benches, tests)
    half_in_place: ClassVar[bool] = True
    #: one image of a float16 input read in place split between threads by ranges of
    #: position blocks (each chunk the layer cut to its positions, every output channel),
    #: not by output-channel blocks: each thread widens its positions only, where by channel
    #: blocks every thread widened all of them (MobileNetV2 b1, 2 threads: 384 -> 96 and
    #: 576 -> 96 on 14x14 1.07-1.10x of the float16 pack + tile split by channel blocks)
    half_by_positions: ClassVar[bool] = True

    def half_ready(self) -> bool:
        """Float16 arrays in and out (cpu_fp16.py): the pack (or the layout copy) widens the
        input, the stores narrow the output — where the kernel does the whole epilogue."""
        return self.fused

    @classmethod
    def applicable(cls, spec: ConvSpec) -> bool:
        _, _, ho, wo = spec.out_shape
        terms = spec.cin * spec.kernel[0] * spec.kernel[1]
        return (
            spec.group == 1
            and spec.weight.dtype == np.float32
            and spec.cout >= 8
            and ho * wo <= OCVEC_MAX_POSITIONS
            and terms * (-(-ho * wo // PB) * PB) * 4 <= OCVEC_MAX_PACK_BYTES
            and native.available()
        )

    def _chunks(self, scratch: Scratch) -> int:
        """Chunks of one image's channel blocks: by multiply-adds, not output values (a
        1x1 conv on 7x7 with 960 input channels has few outputs and much work), a few more
        than threads where there is work enough (a late thread costs less)."""
        s = self.spec
        _, cout, ho, wo = s.out_shape
        macs = cout * ho * wo * s.cin * s.kernel[0] * s.kernel[1]
        workers = getattr(scratch, "workers", 1)
        parts = max(1, min(workers, macs // OCVEC_MIN_CHUNK_MACS))
        if parts > 1:
            parts = min(2 * workers, max(parts, macs // (8 * OCVEC_MIN_CHUNK_MACS)))
        return parts

    def _in_place(
        self, x: np.ndarray, scratch: Scratch, before: list[Run]
    ) -> tuple[np.ndarray, int, np.ndarray, np.ndarray] | None:
        """For an unpadded strided or k×k conv: (base, floats per image, term offsets,
        position offsets) reading ``x`` in place — the pack gathers straight from the input
        (ResNet-50's 1×1 stride-2 shortcuts: the phase split wrote four planes for the one
        they read). None where the input needs its zero-padded layout, or is plain."""
        s = self.spec
        if any(s.pads) or is_plain(s):
            return None
        x = self._unit_rows_any(x, scratch, before)
        if any(v <= 0 for v in x.strides):
            return None
        (sy, sx), (dy, dx), (kh, kw) = s.strides, s.dilations, s.kernel
        xcs, xrs = x.strides[1] // x.itemsize, x.strides[2] // x.itemsize
        taps = np.asarray([i * dy * xrs + j * dx for i in range(kh) for j in range(kw)])
        toff = (np.arange(s.x_shape[1], dtype=np.int64)[:, None] * xcs + taps[None, :]).ravel()
        _, _, ho, wo = s.out_shape
        p = np.arange(ho * wo, dtype=np.int64)
        posoff = (p // wo) * sy * xrs + (p % wo) * sx
        return x, x.strides[0] // x.itemsize, toff.astype(np.int64), posoff

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        s = self.spec
        x, out3, z3, before, after = self._io(inputs, outputs, scratch)
        n = s.x_shape[0]
        _, cout, ho, wo = s.out_shape
        half = self._half_bits(x, out3, z3 if self.residual else None)
        if half and not self.fused:
            raise ValueError(f"{self.name}: float16 storage needs the kernel's epilogue")
        positions = ho * wo
        pb = self.tile_positions or positions_per_tile(positions)
        npb = -(-positions // pb)
        wpack = pack_weights(s.weight, OB)
        bias = None if s.bias is None else np.ascontiguousarray(s.bias, np.float32)
        per_image = self._per_image(scratch, n)
        parts = 1 if per_image else self._whole_rounds(self._chunks(scratch), scratch)
        plain = self._plain_rows(x, positions, pb, per_image)
        if plain is not None:
            return self._bind_plain(
                plain, out3, z3, scratch, before, after, pb, per_image, parts, wpack, bias, half
            )
        direct = self._in_place(x, scratch, before)
        if direct is not None:  # no padding: terms read the input itself, no layout pass
            base, image, toff, posoff = direct
            copies: list[list[Any]] = [[] for _ in range(n)]
        else:
            base, image, toff, wg, _, copies = self._terms(
                x, scratch, parts, before, half_in_place=True
            )
            p = np.arange(positions, dtype=np.int64)
            posoff = (p // wo) * wg + p % wo
        packs = [
            scratch((npb * len(toff) * pb,), np.float32, f"ocvec_pack{k}")
            for k in range(n if per_image else 1)
        ]
        keep = (wpack, bias, toff, posoff, base, out3, z3)

        def pack(b: int, q0: int, q1: int, pk: np.ndarray) -> Any:
            args = dict(
                base=base.ctypes.data + base.itemsize * b * image,
                toff=toff.ctypes.data,
                T=len(toff),
                posoff=posoff.ctypes.data,
                P=positions,
                pb0=q0,
                pb1=q1,
                pk=pk.ctypes.data,
                half=_X_HALF if base.dtype == F16 else 0,
                pb=pb,
            )
            return native.NativeCall("pack_positions_f32", args, (*keep, pk))

        def conv(b: int, o0: int, o1: int, pk: np.ndarray) -> Any:
            args = self._conv_args(pk.ctypes.data, len(toff), npb, 0, wpack, bias, half, pb)
            args.update(ob0=o0, ob1=o1, **self._output_args(out3, z3, b))
            return native.NativeCall("conv_ocvec_f32", args, (*keep, pk))

        blocks = -(-cout // OB)
        if per_image:
            chunks: list[Run] = []
            for b in range(n):
                call = native.NativeSequence(
                    [*copies[b], pack(b, 0, npb, packs[b]), conv(b, 0, blocks, packs[b])]
                )
                chunks.append(
                    call
                    if self.fused
                    else sequence([call, self._epilogue(out3, z3, b, 0, positions)])
                )
            return self._assemble(scratch, [chunks], before, after)
        phases: list[list[Run]] = [[c for per in copies for c in per]]
        for b in range(n):
            phases.append([pack(b, q0, q1, packs[0]) for q0, q1 in split(npb, parts)])
            chunks = []
            for o0, o1 in split(blocks, parts):
                steps: list[Run] = [conv(b, o0, o1, packs[0])]
                if not self.fused:
                    steps.append(
                        self._epilogue(out3, z3, b, 0, positions, o0 * OB, min(o1 * OB, cout))
                    )
                chunks.append(sequence(steps))
            phases.append(chunks)
        return self._assemble(scratch, [p for p in phases if p], before, after)

    def _conv_args(
        self,
        pk: int,
        terms: int,
        npb: int,
        xcs: int,
        wpack: np.ndarray,
        bias: np.ndarray | None,
        half: int,
        pb: int,
    ) -> dict[str, Any]:
        """conv_ocvec_f32's fields common to every call of this layer: the terms at ``pk``
        (a pack, or the input itself ``xcs`` floats a channel apart), weights, bias, tile."""
        _, cout, ho, wo = self.spec.out_shape
        return dict(
            pk=pk,
            T=terms,
            npb=npb,
            wpack=wpack.ctypes.data,
            bias=None if bias is None else bias.ctypes.data,
            cout=cout,
            P=ho * wo,
            half=half & (_OUT_HALF | _Z_HALF | (_X_HALF if xcs else 0)),
            pb=pb,
            xcs=xcs,
        )

    def _plain_rows(
        self, x: np.ndarray, positions: int, pb: int, per_image: bool = False
    ) -> np.ndarray | None:
        """A plain 1×1 projection's input (float32, or float16 the kernel widens a group of
        positions at a time: :attr:`half_in_place`) as (N, C, H·W) with unit-stride positions:
        the kernel reads its terms there, a channel stride apart (a last tile of the
        positions left over reads those only: inside each channel's row). None: pack as
        any other conv — and expansions (more output than input channels: in place they
        measured 4-9 % slower, one thread, their many channel blocks each reading the input
        again), and short last tiles above :data:`PLAIN_TAIL_MAX_CIN` input channels
        (:data:`PLAIN_TAIL_MAX_CIN_BATCH` where each image is a chunk: ``per_image``)."""
        s = self.spec
        if not (self.plain_in_place and is_plain(s)) or s.cout > s.cin:
            return None
        limit = PLAIN_TAIL_MAX_CIN_BATCH if per_image else PLAIN_TAIL_MAX_CIN
        if positions % pb and s.cin > limit:
            return None
        if positions < PLAIN_MIN_POSITIONS:
            return None
        x3 = flat3(x)
        dtypes = (np.float32, F16) if self.half_in_place else (np.float32,)
        if x3 is None or x3.dtype not in dtypes or x3.strides[2] != x3.itemsize:
            return None
        if x3.dtype == F16 and s.cin > HALF_IN_PLACE_MAX_CIN:
            return None
        if any(v % x3.itemsize for v in x3.strides):
            return None
        return x3

    def _bind_plain(
        self,
        x3: np.ndarray,
        out3: np.ndarray,
        z3: np.ndarray | None,
        scratch: Scratch,
        before: list[Run],
        after: list[Run],
        pb: int,
        per_image: bool,
        parts: int,
        wpack: np.ndarray,
        bias: np.ndarray | None,
        half: int,
    ) -> Run:
        """No pack: each chunk (an image, or a range of its channel blocks, or of its
        positions: :attr:`half_by_positions`) one kernel call reading the input in place —
        one phase per image instead of a pack phase and a convolution phase."""
        s = self.spec
        n, cin = s.x_shape[0], s.x_shape[1]
        _, cout, ho, wo = s.out_shape
        positions = ho * wo
        keep = (wpack, bias, x3, out3, z3)
        blocks = -(-cout // OB)
        xis, xcs = x3.strides[0] // x3.itemsize, x3.strides[1] // x3.itemsize
        npb = -(-positions // pb)

        def conv(b: int, o0: int, o1: int, q0: int = 0, q1: int = npb) -> Run:
            """Output-channel blocks [o0, o1) of image b's position blocks [q0, q1): the
            layer cut to those positions (input, output and residual offset)."""
            p0, p1 = q0 * pb, min(positions, q1 * pb)
            pk = x3.ctypes.data + x3.itemsize * (b * xis + p0)
            args = self._conv_args(pk, cin, q1 - q0, xcs, wpack, bias, half, pb)
            args.update(ob0=o0, ob1=o1, **self._output_args(out3, z3, b))
            args.update(P=p1 - p0, out=args["out"] + out3.itemsize * p0)
            if args["z"] is not None and z3 is not None:
                args["z"] += z3.itemsize * p0
            call = native.NativeCall("conv_ocvec_f32", args, keep)
            if self.fused:
                return call
            return sequence(
                [call, self._epilogue(out3, z3, b, p0, p1, o0 * OB, min(o1 * OB, cout))]
            )

        if per_image:
            return self._assemble(scratch, [[conv(b, 0, blocks) for b in range(n)]], before, after)
        if self.half_by_positions and x3.dtype == F16:
            phases = [
                [conv(b, 0, blocks, q0, q1) for q0, q1 in split(npb, parts)] for b in range(n)
            ]
        else:
            phases = [[conv(b, o0, o1) for o0, o1 in split(blocks, parts)] for b in range(n)]
        return self._assemble(scratch, phases, before, after)
