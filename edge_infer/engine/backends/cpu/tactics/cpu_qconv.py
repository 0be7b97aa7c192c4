"""INT8 convolution (``edge_infer::QConv``) tactics.

- ``qconv_reference``: the registry's reference op (:func:`edge_infer.engine.ops.quantize
  .qconv`, also the self-check's yardstick), for the layers ``qconv_native`` cannot run.
- ``qconv_native`` (``kernels/conv_int8.c``): the input laid out once as int32 quads (4
  channels' bytes per pixel) in zero-padded stride phases, quantized there when it is the
  float engine input (a layer of 1-3 input channels, a stem, packs its taps' bytes into
  quads of 4 after them: a 3 x 3's 27 bytes 7 terms, not 9 quads of 3 and a zero); then an
  implicit GEMM of int8 dot products (AVX-512 VNNI, AVX-VNNI,
  AVX2 on activations shifted to u8 where the weights' limit row allows
  (:func:`~.qconv_terms.shift_limits`), aarch64 sdot or C, whichever this CPU has) over the
  phase grid, with the reference's epilogue (requantization in float64, residual, activation,
  fp32/fp16/int8 store) applied to the register tile; an int8 output's channels with a
  proved requantization multiplier (``tactics/qdw_requant.py``'s proof, rows after the
  weights) skip the near-half check there. Bit-identical to the reference except where an
  exp-based activation's float32 result differs in its last bit (see conv_int8.c).
  One pool call a layer where it can: an unpadded 1x1 stride-1 layer of an int8 input in
  chunks of positions (each its own small layout, then its GEMM), a batch image by image;
  a layout of fewer channel quads than threads (a stem's 3 channels) in chunks of output
  rows the same way (both in :mod:`.qconv_chunks`); small maps lay out every channel quad,
  then split the GEMM between the threads.
- ``qconv_native_oc``: the same on the AVX2 path with register tiles along output channels
  (:class:`QConvNativeOC`), chosen against ``qconv_native`` by timing.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from edge_infer.engine.backends.cpu import hugemem, native
from edge_infer.engine.backends.cpu.activations import ACTIVATION_CODES
from edge_infer.engine.backends.cpu.parallel import sequence, split
from edge_infer.engine.backends.cpu.tactics import qconv_chunks
from edge_infer.engine.backends.cpu.tactics.cpu_conv import flat3
from edge_infer.engine.backends.cpu.tactics.qconv_blocks import OC_VECTOR, QConvBlocks
from edge_infer.engine.backends.cpu.tactics.qconv_chunks import (
    AVX2_PATH,
    MIN_TASK_MACS,
    ONE_IMAGE,
    STRIP,
    QConvChunks,
    _int8_path,
)
from edge_infer.engine.backends.cpu.tactics.qconv_terms import pair_terms, shift_limits, shift_span
from edge_infer.engine.backends.cpu.tactics.qdw_requant import MONOTONIC, proved_multipliers
from edge_infer.engine.ops.quantize import qconv
from edge_infer.engine.tactics.base import Run, Scratch, Tactic
from edge_infer.engine.tactics.quantized import QConvSpec

#: output channels of a group's weight block are padded to a multiple of COUT_ALIGN, and
#: split between kernel calls at multiples of OC_ALIGN (every path's tile height divides
#: both: conv_int8.c MR)
COUT_ALIGN = 48
OC_ALIGN = 24
#: channels of conv_int8.c's output-channel tiles by their positions (qconv_int8_tile): a
#: layer taking them splits its channels between calls at multiples of these
OC_TILE_CHANNELS = {6: 64, 7: 48}
#: the layout kernel's ``xf`` bit for "lay out the first stride phase only" (conv_int8.c)
FIRST_PHASE = 2
#: int32 the weight array holds past its last row: an output-channel tile of conv_int8.c
#: reads 64 channels from a call's first (EI_OCN_MAX)
WEIGHT_TAIL = 64
#: rows of float32 after a group's term rows in the weight array: each channel's proved
#: requantization multiplier (0: not proved) and its byte bounds (conv_int8.c "proved")
PROVED_ROWS = 3
#: then one row of int32 (conv_int8.c EI_SIGN_ROW): 1 in every column where no weight of the
#: group is -128 (the AVX2 path's |x| . (w * sign(x)) tile is exact there), else 0
SIGN_ROWS = 1
#: the sign row's bit asking conv_int8.c's AVX2 path for output-channel tiles (EI_OC_MODE,
#: :class:`QConvNativeOC`)
OC_MODE = 2
#: then one row of int32 (conv_int8.c EI_LIMIT_ROW): each channel's limit L on the AVX2
#: path's shifted activations x + k in [0, L] (see :func:`~.qconv_terms.shift_limits`)
LIMIT_ROWS = 1
#: the sign row's bits from this one up: how many leading terms the AVX2 tiles read two at a
#: time (:func:`~.qconv_terms.pair_terms`; conv_int8.c EI_PAIRED_SHIFT)
PAIRED_SHIFT = 8
#: the sign row's bit for terms ordered per block of BLOCK_CHANNELS output channels
#: (:class:`QConvNativeOC`; conv_int8.c EI_BLOCK_ORDER, EI_BLOCK_CHANNELS)
BLOCK_ORDER = 4
BLOCK_CHANNELS = 24
_RESIDUAL = {"none": 0, "pre": 1, "post": 2}
_STORE = {"fp32": 0, "fp16": 1, "int8": 2}
_Z_DTYPES = (np.dtype(np.float32), np.dtype(np.int8))


def epilogue_applicable(spec: QConvSpec) -> bool:
    """Whether conv_int8.c's epilogue (its own kernels', and through qconv_int8_finish the
    Winograd kernel's) takes the spec's activation, residual and output storage."""
    return (
        spec.activation in ACTIVATION_CODES
        and (spec.z_dtype is None or np.dtype(spec.z_dtype) in _Z_DTYPES)
        and spec.out_precision in _STORE
        and spec.residual in _RESIDUAL
    )


def activation_fields(spec: QConvSpec) -> tuple[int, tuple[float, float]]:
    """The epilogue's activation code and its two parameters (0 where it has fewer)."""
    params = (*spec.activation_params, 0.0, 0.0)
    return ACTIVATION_CODES[spec.activation], (float(params[0]), float(params[1]))


#: a layer of at most this many input channels packs its taps' bytes into quads (the
#: layout kernel's xf bits from PACK_SHIFT: conv_int8.c pack_taps): a 3 x 3 stem's 27 bytes
#: 7 terms, not 9 quads of 3 bytes and a zero
PACKED_CHANNELS = 3
PACK_SHIFT = 8
#: a layer's GEMM calls split its grid at multiples of this many positions on the AVX2 path
#: (other paths: STRIP), so that the threads' shares are (nearly) equal: ResNet-50's 14 x 14
#: 3x3 grid (224 positions) as 48, 64, 48, 64, where strips of 64 left 64, 64, 64, 32 (shares
#: 128 against 96, one short tile); 28 x 28 (840) in 6 as 128-144, not 128-192. 16 (whole
#: two-vector tiles, tile_shift16) not 8: the calls' sum grew 0.9 % at 8, 0.2-0.8 % at 16
GRID_ALIGN = 16


class QConvReference(Tactic):
    """The reference op, as the layer ran before it had tactics (it allocates): the layers
    the native kernel cannot run (no C compiler here, a float16 input, an activation it does
    not implement). Where the native kernel applies it computes the same numbers 10-100x
    faster, so the reference is no candidate there: a timing disturbed by other processes
    (a helper thread descheduled for a time slice) must not make it the choice."""

    name = "qconv_reference"

    def __init__(self, spec: QConvSpec) -> None:
        self.spec = spec

    @classmethod
    def applicable(cls, spec: QConvSpec) -> bool:
        return not QConvNative.applicable(spec)

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        x, w, ws = inputs[0], inputs[1], inputs[2]
        b = inputs[3] if len(inputs) > 3 else None
        z = inputs[4] if len(inputs) > 4 else None
        out, attrs = outputs[0], self.spec.attrs()

        def run() -> None:
            np.copyto(out, qconv(x, w, ws, b, z, **attrs), casting="unsafe")

        return run


class QConvNative(QConvBlocks, QConvChunks, Tactic):
    """INT8 implicit GEMM in C (see the module docstring); any group count (per group)."""

    name = "qconv_native"
    #: a 1x1 layer's position chunks (:meth:`_position_chunks`) are multiples of this many
    #: positions but the last: whole position tiles (conv_int8.c NT; AVX2_CHUNK_ALIGN on the
    #: AVX2 path)
    chunk_align = STRIP
    #: a 1x1 layer of more output channels than this many times its output positions (all
    #: images') splits its channels between the threads (each reads its part of the
    #: weights, the weights outweighing the layout), not its positions
    channels_per_position = 2

    def __init__(self, spec: QConvSpec) -> None:
        self.spec = spec
        self.act, self.params = activation_fields(spec)

    @classmethod
    def applicable(cls, spec: QConvSpec) -> bool:
        return (
            epilogue_applicable(spec)
            and np.dtype(spec.x_dtype) in (np.dtype(np.int8), np.dtype(np.float32))
            and native.available()
        )

    # -- geometry -----------------------------------------------------------------------

    def _phase_grid(self) -> tuple[int, int]:
        s = self.spec
        _, _, h, w = s.x_shape
        (sy, sx), (pt, pl, pb, pr) = s.strides, s.pads
        return -(-(h + pt + pb) // sy), -(-(w + pl + pr) // sx)

    def _prepared(self) -> dict[str, Any]:
        """Weights, term offsets and per-channel constants, computed once per tactic."""
        cached = getattr(self, "_prep", None)
        if cached is not None:
            return cached
        s = self.spec
        groups, cout = s.group, s.cout
        cg, cog = s.cin // groups, cout // groups
        kh, kw = s.kernel
        (sy, sx), (dy, dx) = s.strides, s.dilations
        taps = kh * kw
        cq = -(-cg // 4)
        hq, wq = self._phase_grid()
        plen = hq * wq
        # term t = (quad q, tap (i, j)): its offset in the layout [sy][sx][cq][hq][wq]
        tap_off = [
            ((i * dy) % sy * sx + (j * dx) % sx) * cq * plen
            + ((i * dy) // sy) * wq
            + (j * dx) // sx
            for i in range(kh)
            for j in range(kw)
        ]
        toff = (np.arange(cq, dtype=np.int64)[:, None] * plen + np.asarray(tap_off)).ravel()
        terms = cq * taps
        coutp = -(-cog // COUT_ALIGN) * COUT_ALIGN
        w = np.zeros((groups, cog, cq * 4, taps), np.int8)
        w[:, :, :cg] = np.asarray(s.weight, np.int8).reshape(groups, cog, cg, taps)
        # [group][quad][tap][oc][4 channels] -> int32 quads [group][term][coutp]
        quads = np.zeros((groups, cq, taps, coutp, 4), np.int8)
        quads[:, :, :, :cog] = w.reshape(groups, cog, cq, 4, taps).transpose(0, 2, 4, 1, 3)
        quads = quads.reshape(groups, terms, coutp, 4)
        planes = sy * sx * cq  # the layout's planes of hq * wq
        packed = self._packed()
        if packed:  # the taps' bytes in quads of 4 (conv_int8.c pack_taps)
            nbytes = taps * cg
            direct = nbytes % 4 == cg
            stream = np.zeros((cog, -(-nbytes // 4) * 4), np.int8)  # [oc][tap][channel]
            stream[:, :nbytes] = w[0, :, :cg].transpose(0, 2, 1).reshape(cog, nbytes)
            terms = stream.shape[1] // 4
            toff = (planes + np.arange(terms, dtype=np.int64)) * plen
            if direct:  # the last quad is the last tap's: read from the phases as they lie
                toff[-1] = tap_off[-1]
            quads = np.zeros((1, terms, coutp, 4), np.int8)
            quads[0, :, :cog] = stream.reshape(cog, terms, 4).transpose(1, 0, 2)
            planes += terms - direct
        # a group's rows: its terms' weights, then PROVED_ROWS of float32 per channel (the
        # proved requantization: vmq, lo, hi; conv_int8.c), then the sign row (SIGN_ROWS);
        # readable WEIGHT_TAIL int32 past the last row (conv_int8.c's output-channel tiles)
        rows = terms + PROVED_ROWS + SIGN_ROWS + LIMIT_ROWS
        flat = _aligned_zeros(groups * rows * coutp + WEIGHT_TAIL)
        wts = flat[: groups * rows * coutp].reshape(groups, rows, coutp)
        # the terms in the order the AVX2 tiles read them in pairs (pair_terms)
        order, paired = pair_terms(quads, shift_span(s))
        toff = np.ascontiguousarray(toff[order])
        quads_t = quads[:, order]
        wts[:, :terms] = np.ascontiguousarray(quads_t).view(np.int32)[..., 0]
        wsum = np.asarray(s.weight, np.int64).reshape(cout, -1).sum(axis=1).astype(np.int32)
        mult = float(s.x_scale) * np.asarray(s.w_scale, np.float64).reshape(cout)
        bias = None if s.bias is None else np.ascontiguousarray(s.bias, np.int32).reshape(cout)
        # (the paired count where it is not every term's: 0 reads as all of them)
        wts[:, terms + PROVED_ROWS] = (w != -128).all(axis=(1, 2, 3))[:, None] | (
            paired << PAIRED_SHIFT if paired != terms // 2 * 2 else 0
        )
        wts[:, terms + PROVED_ROWS + SIGN_ROWS] = shift_limits(
            quads_t.reshape(groups, terms, 1, coutp, 4), paired
        )
        proved = wts[:, terms : terms + PROVED_ROWS].view(np.float32)
        proved[:, :, :cog] = (
            self._proved(mult, bias).reshape(PROVED_ROWS, groups, cog).swapaxes(0, 1)
        )
        grid = s.out_shape[2] * wq
        strips = -(-grid // STRIP) * STRIP
        layout = planes * plen
        # reads of the last strip's dropped positions stay inside the buffer
        size = max(layout, int(toff.max()) + strips) + STRIP
        self._prep = dict(
            cg=cg, cog=cog, cq=cq, hq=hq, wq=wq, terms=terms, coutp=coutp, toff=toff,
            wts=wts, wsum=wsum, mult=np.ascontiguousarray(mult), bias=bias, grid=grid,
            size=size, order=order, block_toff=0, planes=planes, packed=packed,
        )  # fmt: skip
        return self._prep

    def _proved(self, mult: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
        """[PROVED_ROWS, Cout] float32: each channel's proved requantization (vmq, lo, hi:
        tactics/qdw_requant.py's proof, which holds for any kernel shape: the accumulator
        with bias lies between the taps' extreme products and the bias), under which
        conv_int8.c stores clamp(rint(float32(acc) * vmq), lo, hi) with no check near half
        steps; zeros (the checked path) where it does not apply: not an int8 output, a
        residual, an activation that is not monotonic, a channel the proof fails."""
        s = self.spec
        out = np.zeros((PROVED_ROWS, s.cout), np.float32)
        if s.out_precision != "int8" or s.residual != "none" or s.activation not in MONOTONIC:
            return out
        w = np.asarray(s.weight, np.int8).reshape(s.cout, -1)
        vmq, lo, hi = proved_multipliers(
            w, bias, mult, float(s.out_scale), s.activation, tuple(s.activation_params)
        )
        out[0], out[1], out[2] = vmq, lo, hi
        return out

    # -- binding ------------------------------------------------------------------------

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        s, p = self.spec, self._prepared()
        x, out3, z3, before, after = bound_arrays(s, inputs, outputs, scratch, "qconv")
        n, groups = s.x_shape[0], s.group
        workers = getattr(scratch, "workers", 1)
        pool = getattr(scratch, "pool", None)
        chunks = self._position_chunks(x, out3, z3, workers, scratch)
        if chunks is None:
            chunks = self._row_chunks(x, out3, z3, workers, scratch)
        if chunks is not None:
            steps_: list[Run] = list(before)
            if pool is not None and workers > 1:
                steps_.append(pool.bind(chunks))
            else:
                steps_.extend(chunks)
            return sequence([*steps_, *after])
        layouts = scratch((n * groups, p["size"]), np.int32, "qconv_layout")
        keep = (p["toff"], *self._constants(), layouts, x, out3, z3)
        # a few more tasks than threads (a late thread costs less), none too small
        tasks = 1 if workers == 1 else qconv_chunks.TASKS_PER_WORKER * workers
        macs = p["grid"] * p["terms"] * 4 * p["cog"]
        per = max(1, min(-(-tasks // (n * groups)), macs // MIN_TASK_MACS))
        # output-channel tiles (conv_int8.c): channel parts of whole tiles first (a part of
        # 24 channels would pad a 64-channel tile), then grid strips
        oc_align = OC_TILE_CHANNELS.get(self._oc_tile(), 0)
        if oc_align:
            oparts = min(per, -(-p["cog"] // oc_align))
            gparts = min(-(-per // oparts), -(-p["grid"] // STRIP))
        elif self._by_channels(workers):
            oc_align, gparts = OC_ALIGN, 1
            oparts = min(per, -(-p["cog"] // OC_ALIGN))
        else:
            oc_align = OC_ALIGN
            gparts = min(per, -(-p["grid"] // STRIP))
            oparts = min(-(-per // gparts), -(-p["cog"] // OC_ALIGN))
        qparts = 1 if workers == 1 else max(1, min(p["cq"], workers, x[0].size // 16384))
        galign = GRID_ALIGN if _int8_path() in qconv_chunks.VECTOR_POSITIONS else STRIP
        # per image and group: its layout calls, then its GEMM calls
        units: list[tuple[list[Any], list[Any]]] = []
        for b in range(n):
            for gi in range(groups):
                lay = layouts[b * groups + gi]
                splits: list[Any] = []
                gemms: list[Any] = []
                units.append((splits, gemms))
                for q0, q1 in split(p["cq"], qparts):
                    args = self._split_fields(x, b, gi, q0, q1, lay)
                    splits.append(native.NativeCall("qconv_split_f32", args, keep))
                for g0, g1 in split(p["grid"], gparts, align=galign):
                    # (threads' shares by channels where the grid is not split)
                    sharing = workers if gparts == 1 else 1
                    for o0, o1 in self._channel_ranges(oparts, oc_align, sharing):
                        oc0 = gi * p["cog"] + o0
                        args = dict(
                            layout=lay.ctypes.data,
                            toff=p["toff"].ctypes.data + 8 * p["terms"] * (o0 // p["block_toff"])
                            if p["block_toff"]
                            else p["toff"].ctypes.data,
                            T=p["terms"],
                            wts=p["wts"][gi].ctypes.data + 4 * o0,
                            **self._weight_fields(gi, o0),
                            coutp=p["coutp"],
                            cout=o1 - o0,
                            bias=None if p["bias"] is None else p["bias"].ctypes.data + 4 * oc0,
                            wsum=p["wsum"].ctypes.data + 4 * oc0,
                            mult=p["mult"].ctypes.data + 8 * oc0,
                            g0=g0,
                            g1=g1,
                            wg=p["wq"],
                            ho=s.out_shape[2],
                            wo=s.out_shape[3],
                            **self._out_fields(out3, z3, b, oc0),
                            **ONE_IMAGE,
                        )
                        gemms.append(native.NativeCall("qconv_int8_f32", args, keep))
        steps: list[Run] = list(before)
        if pool is None or workers == 1:
            # image by image: each layout is read back while it is still in the caches (a
            # batch's layouts together outgrow them)
            for unit_splits, unit_gemms in units:
                steps.extend([*unit_splits, *unit_gemms])
        elif len(units) >= 2 * workers:
            # whole images per task: one pool call a layer, no wait between layout and GEMM
            steps.append(pool.bind([native.NativeSequence([*us, *ug]) for us, ug in units]))
        else:
            # every layout, then every GEMM chunk (they read other chunks' layouts)
            for chunks in ([c for us, _ in units for c in us], [c for _, ug in units for c in ug]):
                steps.append(pool.bind(chunks) if len(chunks) > 1 else chunks[0])
        steps.extend(after)
        return sequence(steps)

    def _channel_ranges(self, parts: int, align: int, workers: int) -> list[tuple[int, int]]:
        """A group's output channels in ``parts`` ranges at multiples of ``align``; for
        output-channel tiles on several threads, the threads' shares equal at multiples of
        OC_VECTOR first (the pool gives each thread its share of the calls in order), each
        share in parts of whole tiles from its start: 256 channels on 2 threads 48 + 80 and
        48 + 80 (tiles 48 | 48 + 32), where whole tiles from channel 0 gave one thread 144."""
        cog = self._prepared()["cog"]
        if parts < 2 or workers < 2 or align not in OC_TILE_CHANNELS.values():
            return split(cog, parts, align=align)
        shares = split(cog, min(workers, parts), align=OC_VECTOR)
        each = -(-parts // len(shares))
        return [(a + u0, a + u1) for a, b in shares for u0, u1 in split(b - a, each, align=align)]

    def _packed(self) -> int:
        """The layout kernel's ``xf`` bits asking for the taps' bytes packed in quads
        (conv_int8.c pack_taps): a layer of at most PACKED_CHANNELS input channels (one
        quad, the others' bytes zeros) and more than one tap; else 0."""
        s = self.spec
        geometry = (*s.kernel, *s.dilations)
        if s.group != 1 or s.cin > PACKED_CHANNELS or s.kernel == (1, 1) or max(geometry) > 15:
            return 0
        kh, kw, dy, dx = geometry
        return (kh | kw << 4 | dy << 8 | dx << 12) << PACK_SHIFT

    def _by_channels(self, workers: int) -> bool:
        """Split the layer by output channels on ``workers`` threads (see
        :attr:`channels_per_position`): ResNet-50's 14 x 14 256 -> 1024 layers."""
        s = self.spec
        positions = s.out_shape[0] * s.out_shape[2] * s.out_shape[3]
        return (
            workers > 1
            and s.kernel == (1, 1)
            and s.cout // s.group > self.channels_per_position * positions
        )

    def _oc_tile(self) -> int:
        """The register tile conv_int8.c takes for one image's whole grid and every output
        channel of a group (``qconv_int8_tile``): 7 or 6 positions of an output-channel
        tile, 0 for position tiles (and on builds without that path)."""
        s, p = self.spec, self._prepared()
        lib = native.library()
        fn = getattr(lib, "qconv_int8_tile", None) if lib is not None else None
        if fn is None:
            return 0
        fn.restype, fn.argtypes = ctypes.c_long, [ctypes.c_void_p]
        struct = native.ARGS["qconv_int8_f32"]
        fields: dict[str, Any] = {name: 0 for name, _ in struct._fields_}
        fields.update({k: None for k in ("layout", "toff", "wts", "bias", "wsum", "mult")})
        fields.update(out=None, z=None, oinv=0.0, oscale=0.0, p0=0.0, p1=0.0, zscale=0.0)
        fields.update(
            T=p["terms"], coutp=p["coutp"], cout=p["cog"], g0=0, g1=p["grid"], wg=p["wq"],
            ho=s.out_shape[2], wo=s.out_shape[3],
        )  # fmt: skip
        return int(fn(ctypes.byref(struct(**fields))))

    def _split_fields(
        self, x: np.ndarray, b: int, gi: int, q0: int, q1: int, lay: np.ndarray
    ) -> dict[str, Any]:
        """The layout kernel's fields: channel quads [q0, q1) of group gi of image b."""
        s, p = self.spec, self._prepared()
        isz = x.itemsize
        return dict(
            x=x.ctypes.data + b * x.strides[0] + gi * p["cg"] * x.strides[1],
            # bit 1: a strided 1x1 kernel reads only the first stride phase (EI_FIRST_PHASE)
            xf=int(np.dtype(x.dtype) == np.float32)
            | (FIRST_PHASE if s.kernel == (1, 1) and s.strides != (1, 1) else 0)
            | p["packed"],
            inv=1.0 / float(s.x_scale),
            scale=float(s.x_scale),
            xcs=x.strides[1] // isz,
            xrs=x.strides[2] // isz,
            h=s.x_shape[2],
            w=s.x_shape[3],
            pt=s.pads[0],
            pl=s.pads[1],
            sy=s.strides[0],
            sx=s.strides[1],
            hq=p["hq"],
            wq=p["wq"],
            cg=p["cg"],
            cq=p["cq"],
            q0=q0,
            q1=q1,
            out=lay.ctypes.data,
            ps=0,
        )

    def _out_fields(
        self, out3: np.ndarray, z3: np.ndarray | None, b: int, oc0: int
    ) -> dict[str, Any]:
        s = self.spec
        osz = out3.itemsize
        fields: dict[str, Any] = dict(
            out=out3.ctypes.data + b * out3.strides[0] + oc0 * out3.strides[1],
            ocs=out3.strides[1] // osz,
            otype=_STORE[s.out_precision],
            oinv=1.0 / s.out_scale if s.out_precision == "int8" else 0.0,
            oscale=float(s.out_scale),
            act=self.act,
            p0=self.params[0],
            p1=self.params[1],
            residual=_RESIDUAL[s.residual] if z3 is not None else 0,
        )
        if z3 is None:
            fields.update(z=None, zcs=0, ztype=0, zscale=0.0)
        else:
            zsz = z3.itemsize
            fields.update(
                z=z3.ctypes.data + b * z3.strides[0] + oc0 * z3.strides[1],
                zcs=z3.strides[1] // zsz,
                ztype=2 if z3.dtype == np.int8 else 0,
                zscale=float(s.z_scale),
            )
        return fields


class QConvNativeOC(QConvNative):
    """``qconv_native`` with conv_int8.c's AVX2 output-channel tiles (4 positions x 24
    channels, each activation quad broadcast to 3 vectors of weights): the sign row's
    :data:`OC_MODE` bit asks for them. The kernel takes them where every channel's shift
    limit holds the call's bytes (else its position tiles): the same bits either way.
    Each block of 24 channels reads the terms in its own order, paired for its own
    channels (:meth:`_block_order`). Only where the kernel runs the AVX2 path; chosen
    against ``qconv_native`` by timing."""

    name = "qconv_native_oc"

    @classmethod
    def applicable(cls, spec: QConvSpec) -> bool:
        return QConvNative.applicable(spec) and _int8_path() == AVX2_PATH

    def _prepared(self) -> dict[str, Any]:
        cached = getattr(self, "_prep", None)
        if cached is not None:
            return cached
        prep = super()._prepared()
        self._block_order(prep)
        prep["wts"][:, prep["terms"] + PROVED_ROWS] |= OC_MODE
        return prep

    def _block_order(self, prep: dict[str, Any]) -> None:
        """Each block of BLOCK_CHANNELS output channels its own order of the terms (its
        weight rows and term offsets in it, :func:`~.qconv_terms.pair_terms` of its own
        channels) and paired count, where the layer's one order leaves terms unpaired (one
        group): a layer of many channels pairs few terms in all of them (ResNet-50's 1x1
        512 -> 2048: 8 of 128), a block of 24 all (conv_int8.c EI_BLOCK_ORDER)."""
        s, T = self.spec, prep["terms"]
        span = shift_span(s)
        if s.group != 1 or span >= 255 or T < 2 or prep["order"].size != T:
            return
        sign = prep["wts"][0, T + PROVED_ROWS]
        lim2 = prep["wts"][0, T + PROVED_ROWS + SIGN_ROWS, : s.cout] >> 16
        if not sign[0] >> PAIRED_SHIFT and lim2.min() >= span:
            return  # every term paired in the layer's order
        # the terms in their own order again, from the layer's order (kept nowhere: a second
        # copy of the weights for every layer's lifetime)
        coutp, layer_order = prep["coutp"], prep["order"]
        quads = np.empty((T, coutp, 4), np.int8)
        quads[layer_order] = prep["wts"][0, :T].view(np.int8).reshape(T, coutp, 4)
        toff_natural = np.empty_like(prep["toff"])
        toff_natural[layer_order] = prep["toff"]
        orders, toffs = [], []
        for c0 in range(0, coutp, BLOCK_CHANNELS):
            cols = slice(c0, c0 + BLOCK_CHANNELS)
            order, paired = pair_terms(quads[None, :, cols], span)
            q = np.ascontiguousarray(quads[order][:, cols])
            prep["wts"][0, :T, cols] = q.view(np.int32)[..., 0]
            keep = sign[cols] & ((1 << PAIRED_SHIFT) - 1)
            sign[cols] = keep | (paired << PAIRED_SHIFT if paired != T // 2 * 2 else 0)
            prep["wts"][0, T + PROVED_ROWS + SIGN_ROWS, cols] = shift_limits(
                q.reshape(1, T, 1, BLOCK_CHANNELS, 4), paired
            )[0]
            orders.append(order)
            toffs.append(toff_natural[order])
        sign |= BLOCK_ORDER
        prep["order"] = np.stack(orders)
        prep["toff"] = np.ascontiguousarray(np.concatenate(toffs))
        prep["block_toff"] = BLOCK_CHANNELS


def _aligned_zeros(n: int) -> np.ndarray:
    """n int32 zeros starting on a 64-byte line: a call's weights (its first channel a
    multiple of OC_ALIGN, 96 bytes; rows of COUT_ALIGN channels, 192 bytes) start on 32
    bytes, so no 32-byte vector of them spans two lines (the output-channel tiles read
    them as they lie: split loads cost up to a third of their time), on huge pages."""
    return hugemem.zeros(n, np.int32)


def bound_arrays(
    spec: QConvSpec, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch, role: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[Run], list[Run]]:
    """What an INT8 conv's native calls read and write: the input with unit-stride rows, the
    output and the residual (None without one) as (N, C, H*W) views, each a scratch copy
    where the caller's array is not so, and the copies to run before and after the calls
    (scratch roles ``role``_in, _out, _residual)."""
    z = inputs[4] if len(inputs) > 4 and spec.residual != "none" else None
    before: list[Run] = []
    after: list[Run] = []
    x = _unit_rows(inputs[0], scratch, before, f"{role}_in")
    out3 = _flat_or_scratch(outputs[0], scratch, f"{role}_out", after, out=True)
    z3 = None if z is None else _flat_or_scratch(z, scratch, f"{role}_residual", before)
    return x, out3, z3, before, after


def _flat_or_scratch(
    a: np.ndarray, scratch: Scratch, role: str, steps: list[Run], out: bool = False
) -> np.ndarray:
    """(N, C, H*W) view of ``a``, or of a scratch copy (copied back after the layer when
    ``out``, else before) when its planes are not contiguous."""
    a3 = flat3(a)
    if a3 is not None:
        return a3
    tmp = scratch(a.shape, a.dtype, role)
    steps.append((lambda: np.copyto(a, tmp)) if out else (lambda: np.copyto(tmp, a)))
    return flat3(tmp)  # type: ignore[return-value]


def _unit_rows(x: np.ndarray, scratch: Scratch, before: list[Run], role: str) -> np.ndarray:
    """``x``, or a scratch copy when its rows are not unit-stride (whole-element strides)."""
    isz = x.itemsize
    if x.strides[3] == isz and not any(v % isz for v in x.strides):
        return x
    xc = scratch(x.shape, x.dtype, role)
    before.append(lambda: np.copyto(xc, x))
    return xc


__all__ = ["QConvNative", "QConvNativeOC", "QConvReference"]
