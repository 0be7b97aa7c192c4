"""Convolution tactics with C kernels compiled for this CPU (``backends/cpu/native.py``).

The input is laid out once so that every (input channel, kernel tap) term reads a contiguous
run: the zero-padded input for stride 1, its polyphase split (one plane per stride phase) for
larger strides, or the input itself for a plain 1×1 conv. Then:

- ``direct_native`` (``kernels/conv_direct.c``): a 6-channel × 16-position output tile in
  vector registers, vectors along positions — for large grids;
- ``ocvec_native`` (``kernels/conv_ocvec.c``, :mod:`.cpu_ocvec`): the terms of 6 or 7
  positions packed in tile order (a small im2col), a 16-channel × 6- or 7-position tile,
  vectors along output channels — for the small grids of late layers;
- both read and write float16 storage themselves (FP16 engines, ``half_io``) where they do
  the whole epilogue: the input widened as it is laid out or packed, the residual as it is
  loaded, the tile narrowed to nearest even as it is stored;
- ``depthwise_native`` (``kernels/conv_depthwise.c``, :mod:`.cpu_depthwise`): on AVX-512,
  3×3 at stride 1 or 2, one channel at a time with vectors along output rows, straight from
  the input (float16 storage read and written there, ``half_io``); elsewhere 8 channels at a
  time, vectors along channels, for small planes and strides, and row by row for large
  stride-1 planes.

Each applies bias, residual and activation to the tile in registers before storing it: no
accumulation or epilogue passes through memory. Activations the kernels do not implement run
in the shared fused epilogue. Every chunk is a :class:`~edge_infer.engine.backends.cpu.native
.NativeCall`, so a layer runs as one call into the native thread pool.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from edge_infer.engine.backends.cpu import hugemem, native
from edge_infer.engine.backends.cpu.activations import ACTIVATION_CODES, make_epilogue
from edge_infer.engine.backends.cpu.parallel import sequence, split
from edge_infer.engine.backends.cpu.tactics.cpu_conv import _ConvTactic, flat3
from edge_infer.engine.tactics.base import ConvSpec, Run, Scratch

MR, NR = 6, 16  # the kernel's register tile (conv_direct.c)
#: direct_native lays out its input (zero padding, stride phases) a band of rows at a time
#: in a buffer of about BAND_BYTES (half an L2) when the whole image's layout would exceed
#: WHOLE_MAX_BYTES; bands thinner than MIN_BAND_ROWS rows are not worth it (the kernel's
#: reach below a band is laid out again for the next). Measured on the demo detector at
#: batch 8: its 320- and 160-pixel stride-2 layers 5-13 % faster in bands, 80- and 40-pixel
#: ones (0.3-0.7 MB laid out) 3-5 % slower, hence the threshold.
BAND_BYTES = 256 << 10
WHOLE_MAX_BYTES = 1 << 20
MIN_BAND_ROWS = 4
#: parameter defaults of the activations that take two (as the ONNX operators define them)
_DEFAULTS = {2: (0.01, 0.0), 3: (-np.inf, np.inf), 7: (0.2, 0.5)}
_RESIDUAL = {"none": 0, "pre": 1, "post": 2}
#: the kernel's ``half`` bits: x, out, z float16
_X_HALF, _OUT_HALF, _Z_HALF = 1, 2, 4
F16 = np.dtype(np.float16)


def pack_weights(weight: np.ndarray, block: int = MR) -> np.ndarray:
    """(Cout, Cin, kh, kw) → [ceil(Cout / block)][Cin·kh·kw][block] float32, zero past
    Cout."""
    cout = weight.shape[0]
    t = int(np.prod(weight.shape[1:]))
    blocks = -(-cout // block)
    w = np.zeros((blocks * block, t), np.float32)
    w[:cout] = weight.reshape(cout, t)
    return hugemem.copy(w.reshape(blocks, block, t).transpose(0, 2, 1))


def is_plain(spec: ConvSpec) -> bool:
    """A 1x1 conv without stride or padding: it reads its input in place, no layout."""
    return spec.kernel == (1, 1) and spec.strides == (1, 1) and spec.pads == (0, 0, 0, 0)


def phase_grid(spec: ConvSpec) -> tuple[int, int]:
    """(hq, wq): rows and columns of one stride phase of the zero-padded input."""
    _, _, h, w = spec.x_shape
    sy, sx = spec.strides
    pt, pl, pb, pr = spec.pads
    return -(-(h + pt + pb) // sy), -(-(w + pl + pr) // sx)


def tap_offsets(spec: ConvSpec, phase_stride: int, wq: int) -> np.ndarray:
    """Offset of each kernel tap in a phase layout whose phase planes are ``phase_stride``
    floats apart and whose rows are ``wq`` wide."""
    kh, kw = spec.kernel
    (sy, sx), (dy, dx) = spec.strides, spec.dilations
    return np.asarray(
        [
            ((i * dy) % sy * sx + (j * dx) % sx) * phase_stride
            + ((i * dy) // sy) * wq
            + (j * dx) // sx
            for i in range(kh)
            for j in range(kw)
        ],
        np.int64,
    )


def term_offsets(spec: ConvSpec, plen: int, wq: int) -> np.ndarray:
    """Offset of each (input channel, tap) term in the layout [sy][sx][cin][plen]."""
    cin = spec.x_shape[1]
    taps = tap_offsets(spec, cin * plen, wq)
    return (np.arange(cin, dtype=np.int64)[:, None] * plen + taps[None, :]).ravel()


def layout_tail(spec: ConvSpec, wq: int) -> int:
    """Floats after a layout that keep every vector read of its last strips inside it."""
    kh, kw = spec.kernel
    (sy, sx), (dy, dx) = spec.strides, spec.dilations
    return 2 * NR + wq * (1 + (kh * dy) // sy) + (kw * dx) // sx


def band_geometry(spec: ConvSpec) -> tuple[int, int, int]:
    """(bytes per phase row of the laid-out input, phase rows of the whole image, ext: the
    kernel's reach in phase rows below an output row)."""
    (sy, sx), dy = spec.strides, spec.dilations[0]
    hq, wq = phase_grid(spec)
    return sy * sx * spec.x_shape[1] * wq * 4, hq, ((spec.kernel[0] - 1) * dy) // sy


class _NativeConv(_ConvTactic):
    """Shared by the native tactics: activation codes, the prepared input layout, chunks."""

    def __init__(self, spec: ConvSpec) -> None:
        super().__init__(spec)
        code = ACTIVATION_CODES.get(spec.activation)
        self.fused = code is not None
        if code is not None:  # the kernel does all of it
            params = list(spec.activation_params)
            defaults = _DEFAULTS.get(code, (0.0, 0.0))
            self.act, self.residual = code, _RESIDUAL[spec.residual]
            self.params = tuple(float(v) for v in (*params, *defaults[len(params) :])[:2])
        else:  # the kernel adds the bias; the shared epilogue does residual + activation
            self.act, self.params, self.residual = 0, (0.0, 0.0), 0
            self.epilogue = make_epilogue(
                spec.activation, spec.activation_params, None, spec.residual
            )

    def _chunks(self, scratch: Scratch) -> int:
        _, cout, ho, wo = self.spec.out_shape
        parts = self._parts(scratch, cout * ho * wo)
        if parts > 1:  # a few more chunks than threads: a late thread costs less
            workers = getattr(scratch, "workers", 1)
            parts = min(2 * workers, max(parts, (cout * ho * wo) // (4 * 4096)))
        return parts

    @staticmethod
    def _whole_rounds(parts: int, scratch: Scratch) -> int:
        """``parts`` rounded up to a multiple of the workers: 3 equal chunks on 2 threads
        leave one thread 2/3 of the work (ResNet-50's 14x14x256 layers: 11 of 16 blocks)."""
        workers = max(1, getattr(scratch, "workers", 1))
        return -(-parts // workers) * workers if parts > 1 else parts

    def _padded_phases(
        self, x: np.ndarray, scratch: Scratch, parts: int
    ) -> tuple[np.ndarray, int, np.ndarray, int, list[list[Any]]]:
        """The zero-padded input split into stride phases: (buffer, floats per image,
        offset of each (channel, tap) term, grid width, copy-in calls per image split in
        ``parts`` channel ranges). ``x`` must have unit stride along its rows (see
        :meth:`_unit_rows`)."""
        s = self.spec
        n, cin, _, _ = s.x_shape
        sy, sx = s.strides
        hq, wq = phase_grid(s)
        planes, plen = sy * sx * cin, hq * wq
        # the tail keeps every vector read of the last image inside the buffer
        buf = scratch(
            (n * planes * plen + layout_tail(s, wq),), np.float32, None
        )  # private: zero borders stay zero
        copies: list[list[Any]] = []
        for b in range(n):
            copies.append([])
            for c0, c1 in split(cin, parts):
                args = dict(
                    self._phase_input(x, b),
                    hq=hq,
                    wq=wq,
                    cin=cin,
                    c0=c0,
                    c1=c1,
                    planes=buf.ctypes.data + 4 * b * planes * plen,
                    half=_X_HALF if x.dtype == F16 else 0,
                )
                copies[b].append(native.NativeCall("split_phases_f32", args, (buf, x)))
        return buf, planes * plen, term_offsets(s, plen, wq), wq, copies

    @staticmethod
    def _unit_rows(x: np.ndarray, scratch: Scratch, before: list[Run]) -> np.ndarray:
        """``x``, or a scratch copy when its rows are not unit-stride float32 runs."""
        if x.strides[3] == 4 and not any(v % 4 for v in x.strides):
            return x
        xc = scratch(x.shape, np.float32, "conv_in")
        before.append(lambda: np.copyto(xc, x))
        return xc

    @classmethod
    def _unit_rows_any(cls, x: np.ndarray, scratch: Scratch, before: list[Run]) -> np.ndarray:
        """:meth:`_unit_rows`, but a float16 ``x`` stays float16 (the kernels widen it as
        they read it): ``x``, or a float16 scratch copy when its rows are not unit-stride."""
        if x.dtype != F16:
            return cls._unit_rows(x, scratch, before)
        if x.strides[3] == 2 and not any(v % 2 for v in x.strides):
            return x
        xc = scratch(x.shape, F16, "conv_in_half")
        before.append(lambda: np.copyto(xc, x))
        return xc

    @staticmethod
    def _half_bits(x: np.ndarray, out3: np.ndarray, z3: np.ndarray | None) -> int:
        """The kernels' ``half`` field: which of x, out and z are float16 (args.h)."""
        return (
            (_X_HALF if x.dtype == F16 else 0)
            | (_OUT_HALF if out3.dtype == F16 else 0)
            | (_Z_HALF if z3 is not None and z3.dtype == F16 else 0)
        )

    def _terms(
        self,
        x: np.ndarray,
        scratch: Scratch,
        parts: int,
        before: list[Run],
        half_in_place: bool = False,
    ) -> tuple[np.ndarray, int, np.ndarray, int, int, list[list[Any]]]:
        """Where each (channel, tap) term reads: (base, elements per image, term offsets,
        grid width, gsafe, copy-in calls per image). A plain 1x1 conv reads its input in
        place (gsafe = h * w: no vector read past it, no copies; a float16 input only with
        ``half_in_place``); anything else the padded phases (float32, gsafe unbounded; a
        float16 input widened as they are laid out)."""
        s = self.spec
        _, cin, h, w = s.x_shape
        plain = is_plain(s) and (x.dtype != F16 or half_in_place)
        x3 = flat3(x) if plain else None
        if x3 is not None:
            size = x3.itemsize
            toff = np.arange(cin, dtype=np.int64) * (x3.strides[1] // size)
            return x3, x3.strides[0] // size, toff, w, h * w, [[] for _ in range(s.x_shape[0])]
        x = self._unit_rows_any(x, scratch, before)
        base, image, toff, wg, copies = self._padded_phases(x, scratch, parts)
        # a plain 1x1 conv's layout (float16 input) is its input widened: strips and tails
        # as the float32 input read in place has them (the same bits)
        gsafe = h * w if is_plain(s) else 1 << 62
        return base, image, toff, wg, gsafe, copies

    @staticmethod
    def _per_image(scratch: Scratch, n: int) -> bool:
        """Batch mode: one chunk per image (its input preparation, then its convolution,
        while hot in one core's cache) when images alone keep every thread busy."""
        workers = getattr(scratch, "workers", 1)
        return n > 1 and (workers == 1 or n >= 2 * workers)

    def _output_args(self, out3: np.ndarray, z3: np.ndarray | None, b: int) -> dict[str, Any]:
        """The output and epilogue fields of image ``b``'s kernel arguments (args.h)."""
        zres = z3 if self.residual else None
        return dict(
            out=out3.ctypes.data + out3.strides[0] * b,
            ocs=out3.strides[1] // out3.itemsize,
            act=self.act,
            p0=self.params[0],
            p1=self.params[1],
            residual=self.residual,
            z=None if zres is None else zres.ctypes.data + zres.strides[0] * b,
            zcs=0 if zres is None else zres.strides[1] // zres.itemsize,
        )

    def _phase_input(self, x: np.ndarray, b: int) -> dict[str, Any]:
        """The input geometry fields of image ``b``'s phase-split kernels (args.h)."""
        s = self.spec
        _, _, h, w = s.x_shape
        return dict(
            x=x.ctypes.data + x.strides[0] * b,
            xcs=x.strides[1] // x.itemsize,
            xrs=x.strides[2] // x.itemsize,
            h=h,
            w=w,
            pt=s.pads[0],
            pl=s.pads[1],
            sy=s.strides[0],
            sx=s.strides[1],
        )


class DirectNative(_NativeConv):
    name = "direct_native"
    half_io: ClassVar[bool] = True

    def half_ready(self) -> bool:
        """Float16 arrays in and out (cpu_fp16.py): the layout copies widen the input, the
        tile stores narrow the output — where the kernel does the whole epilogue."""
        return self.fused

    @classmethod
    def applicable(cls, spec: ConvSpec) -> bool:
        return spec.group == 1 and spec.weight.dtype == np.float32 and native.available()

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        s = self.spec
        x, out3, z3, before, after = self._io(inputs, outputs, scratch)
        n = s.x_shape[0]
        _, cout, ho, wo = s.out_shape
        half = self._half_bits(x, out3, z3 if self.residual else None)
        if half and not self.fused:
            raise ValueError(f"{self.name}: float16 storage needs the kernel's epilogue")
        wpack = pack_weights(s.weight)
        bias = None if s.bias is None else np.ascontiguousarray(s.bias, np.float32)
        per_image = self._per_image(scratch, n)
        parts = 1 if per_image else self._whole_rounds(self._chunks(scratch), scratch)
        banding = self._banding()
        if banding is not None:
            return self._bind_banded(
                x, out3, z3, before, after, scratch, wpack, bias, per_image, parts, *banding, half
            )
        base, image, toff, wg, gsafe, copies = self._terms(
            x, scratch, parts, before, half_in_place=True
        )
        # the input's float16 bit only for a float16 base: a plain 1x1 conv's float16 input
        # read in place, widened as each strip is packed (no layout pass); a laid-out input
        # is float32
        half &= (_X_HALF if base.dtype == F16 else 0) | _OUT_HALF | _Z_HALF
        blocks = -(-cout // MR)
        keep = (wpack, bias, toff, base, out3, z3)
        # a strip-packing buffer per concurrent chunk
        packs = [
            scratch((len(toff) * NR,), np.float32, f"conv_pack{k}")
            for k in range(n if per_image else parts)
        ]

        def conv(b: int, g0: int, g1: int, pack: np.ndarray) -> Any:
            args = dict(
                base=base.ctypes.data + base.itemsize * b * image,
                toff=toff.ctypes.data,
                T=len(toff),
                wpack=wpack.ctypes.data,
                bias=None if bias is None else bias.ctypes.data,
                ob0=0,
                ob1=blocks,
                cout=cout,
                g0=g0,
                g1=g1,
                gsafe=gsafe,
                wg=wg,
                wo=wo,
                **self._output_args(out3, z3, b),
                pk=pack.ctypes.data,
                half=half,
            )
            return native.NativeCall("conv_direct_f32", args, (*keep, pack))

        grid = ho * wo if gsafe == ho * wo else ho * wg  # in place 1x1: grid == output
        if per_image:
            chunks: list[Run] = []
            for b in range(n):
                call = native.NativeSequence([*copies[b], conv(b, 0, grid, packs[b])])
                chunks.append(
                    call
                    if self.fused
                    else sequence([call, self._epilogue(out3, z3, b, 0, ho * wo)])
                )
            return self._assemble(scratch, [chunks], before, after)
        phases: list[list[Run]] = [[c for per in copies for c in per]]
        for b in range(n):
            if gsafe == ho * wo:  # strips of NR
                ranges = [(g0, g1, g0, g1) for g0, g1 in split(ho * wo, parts, align=NR)]
            else:
                ranges = [(r0 * wg, r1 * wg, r0 * wo, r1 * wo) for r0, r1 in split(ho, parts)]
            chunks = []
            for k, (g0, g1, l0, l1) in enumerate(ranges):
                steps: list[Run] = [conv(b, g0, g1, packs[k])]
                if not self.fused:
                    steps.append(self._epilogue(out3, z3, b, l0, l1))
                chunks.append(sequence(steps))
            phases.append(chunks)
        return self._assemble(scratch, [p for p in phases if p], before, after)

    def _banding(self) -> tuple[int, int] | None:
        """(band rows, ext) when the input must be laid out (padding or strides) and its
        whole-image layout would not stay in L2; None: the whole-image path."""
        s = self.spec
        if is_plain(s):
            return None
        row_bytes, rows, ext = band_geometry(s)
        band = BAND_BYTES // row_bytes - ext
        if row_bytes * rows <= WHOLE_MAX_BYTES or band < MIN_BAND_ROWS:
            return None
        return min(band, s.out_shape[2]), ext

    def _bind_banded(
        self,
        x: np.ndarray,
        out3: np.ndarray,
        z3: np.ndarray | None,
        before: list[Run],
        after: list[Run],
        scratch: Scratch,
        wpack: np.ndarray,
        bias: np.ndarray | None,
        per_image: bool,
        parts: int,
        band: int,
        ext: int,
        half: int = 0,
    ) -> Run:
        """Each chunk (an image, or a range of its output rows) goes through its rows a band
        at a time: the band's input laid out in a small buffer, convolved while in L2
        (``conv_banded_f32``)."""
        s = self.spec
        n, cin, _, _ = s.x_shape
        _, cout, ho, wo = s.out_shape
        sy, sx = s.strides
        _, wq = phase_grid(s)
        plen = (band + ext) * wq
        toff = term_offsets(s, plen, wq)
        x = self._unit_rows_any(x, scratch, before)
        ranges = [(0, ho)] if per_image else split(ho, parts)
        # one buffer per chunk that may run at the same time (the pool claims chunks
        # dynamically); one thread runs them in turn through the same, cache-hot one
        workers = getattr(scratch, "workers", 1)
        nbuf = 1 if workers == 1 else (n if per_image else len(ranges))
        bufs = [
            scratch((sy * sx * cin * plen + layout_tail(s, wq),), np.float32, None)
            for _ in range(nbuf)
        ]
        packs = [scratch((len(toff) * NR,), np.float32, f"conv_pack{k}") for k in range(nbuf)]
        keep = (wpack, bias, toff, x, out3, z3)
        chunks: list[Run] = []
        for b in range(n):
            for r, (r0, r1) in enumerate(ranges):
                k = 0 if nbuf == 1 else (b if per_image else r)
                args = dict(
                    self._phase_input(x, b),
                    wq=wq,
                    cin=cin,
                    ext=ext,
                    band=band,
                    r0=r0,
                    r1=r1,
                    toff=toff.ctypes.data,
                    T=len(toff),
                    wpack=wpack.ctypes.data,
                    bias=None if bias is None else bias.ctypes.data,
                    cout=cout,
                    wo=wo,
                    **self._output_args(out3, z3, b),
                    buf=bufs[k].ctypes.data,
                    pk=packs[k].ctypes.data,
                    half=half,
                )
                call = native.NativeCall("conv_banded_f32", args, (*keep, bufs[k], packs[k]))
                chunks.append(
                    call
                    if self.fused
                    else sequence([call, self._epilogue(out3, z3, b, r0 * wo, r1 * wo)])
                )
        if per_image:
            return self._assemble(scratch, [chunks], before, after)
        phases = [chunks[b * len(ranges) : (b + 1) * len(ranges)] for b in range(n)]
        return self._assemble(scratch, phases, before, after)
