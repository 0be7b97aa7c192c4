"""INT8 1x1 convolution tactic: ``qpointwise_native`` (``kernels/conv_int8_pw.c``).

A 1x1 stride-1 unpadded QConv of one group on a small map (MAX_POSITIONS, at least MIN_CIN
input channels) from an int8 input to an int8 output under no activation, relu or clip (no
residual, or an int8 one added before the activation; on the AVX2 path also a float32 output
with no residual: MobileNetV2's last 1x1 layer): every pool task lays out its own
positions of one image as int32 quads and runs the GEMM over them with conv_int8.c's int8
epilogue on the register tile (see conv_int8_pw.c), so that a layer is one pool call with
nothing shared between the tasks (``qconv_native`` lays a small map out, waits, then splits
its GEMM); a last vector of at most 4 positions (7x7: 49 = 3 x 16 + 1) goes by output-channel
vectors. Bit-identical to the reference. Chosen by timing
against ``qconv_native`` at build, as every tactic. On AVX2 without VNNI (Zen 3) its tiles
of 4 channels x 16 positions (vpmaddubsw, x read as u8 after a relu, else |x| . (w *
sign(x)) where no weight is -128, or (w + 128) . x less 128 x the activations' sums on the
blocks whose byte pairs allow it; a proved requantization as conv_int8.c's) apply to every
1x1 layer (no cin / positions limits); on other builds its plain C path is correct but
slow, and loses there. The weight quads are packed as the library reads them
(``qpw_int8_panel``): in panels of 16 output channels, a tile's quads one after another (AVX2
and plain C), or in rows [quad][coutp] (VNNI).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_infer.engine.backends.cpu import hugemem, native
from edge_infer.engine.backends.cpu.activations import ACTIVATION_CODES
from edge_infer.engine.backends.cpu.parallel import sequence, split
from edge_infer.engine.backends.cpu.stepkit import unit_planes
from edge_infer.engine.backends.cpu.tactics.qconv_terms import pair_terms
from edge_infer.engine.backends.cpu.tactics.qdw_requant import proved_multipliers
from edge_infer.engine.tactics.base import Run, Scratch, Tactic
from edge_infer.engine.tactics.quantized import QConvSpec

#: the activations the kernel's epilogue implements (and their parameter defaults)
_ACTS = {"": (0.0, 0.0), "relu": (0.0, 0.0), "clip": (-np.inf, np.inf)}
#: positions are split between tasks at multiples of the kernel's vectors (a last vector of
#: at most 4 positions is computed by output-channel vectors: a 7x7 map, 49 = 3 x 16 + 1)
ALIGN = VECTOR = 16
#: a task's layout (int32 quads of its positions) at most this big, for the caches
LAYOUT_BYTES = 256 << 10
#: weight rows are readable this many channels past the last (the widest register tile)
TILE_CHANNELS = 16
#: rows of float32 after the weight quads' rows: each channel's proved requantization
#: multiplier (0: not proved) and its byte bounds (conv_int8_pw.c's AVX2 path)
PROVED_ROWS = 3
#: then one row of int32: 1 in its first column where no weight is -128 (the AVX2 path's
#: |x| . (w * sign(x)) dot product is exact there), else 0; 1 in its second where the biased
#: quads follow the pairings (a layer whose input may be negative, on the panels' builds)
SIGN_ROWS = 1
#: on the panels' builds, then each panel's pairing of its quads (_pairings, at activations in
#: [0, PAIR_SPAN]): cq + 1 int32 a panel, T2 (the quads the AVX2 strips on u8 activations read
#: two at a time, their int16 pair sums added before one vpmaddwd) and the quads' order, the
#: rows padded to whole rows
PAIR_SPAN = 127
#: panels of at most this many quads re-pair the quads whose consecutive pairs fail
REPAIR_CQ = 64
#: on signed inputs, after the pairings' rows: the weights + 128 as u8 quads (pack_quads'
#: panels), the AVX2 strips' dot products on blocks whose activations' byte pairs all sum to
#: [-128, 128] (conv_int8_pw.c qpw_check: there (w + 128) . x saturates no int16 pair sum),
#: less 128 x the activations' sum
BIASED_QUADS = True
#: conv_int8_pw.c's QPW_FIX_MAX: a block's byte pairs moved in at most (its buffer's entries)
FIX_MAX = 8
#: layers with fewer input channels are left to qconv_native (not timed at build): there the
#: epilogue outweighs the dot products and qconv_native's is faster. MobileNetV2's 1x1 layers,
#: batch 1, 2 threads, one process alternating, under load (qpointwise / qconv): input
#: channels 16-64: 0.99-1.67x; 96 (14x14): 0.95-1.12x; 144-576 on 56x56 to 14x14 maps:
#: 0.99-1.06x (0.82-0.93x against qconv_native at cd7b51d); 160-960 on 7x7 maps:
#: 0.88-1.00x
MIN_CIN = 96
#: and maps of more positions: there qconv_native was as fast or faster in the engine
#: (MobileNetV2 b1, 14x14 projections 1.06-1.19x qconv_native's layer time, 7x7 layers
#: 0.77-1.00x; one process alternating the two engines, under load)
MAX_POSITIONS = 100


#: on the AVX2 path, a map of fewer positions than this a thread is split between the threads
#: by output channels (whole 16-channel vectors)
CHANNEL_SPLIT = 2 * VECTOR
#: the tasks' layouts in buffers shared by the context's 1x1 layers (_layout_buffer)
SHARED_LAYOUT = True
#: conv_int8_pw.c's AVX2 path (qpw_int8_path): no cin / positions limits (timed at build
#: against qconv_native on every 1x1 layer)
AVX2 = 2


def _path() -> int:
    """The path of this build's conv_int8_pw.c: 1 AVX-512 VNNI, 2 AVX2, 0 plain C."""
    lib = native.library()
    return int(lib.qpw_int8_path()) if lib is not None else 0


def _panel() -> int:
    """The weight quads' layout of this build's conv_int8_pw.c (qpw_int8_panel): 0, rows
    [quad][coutp]; else panels of that many output channels [coutp / panel][quad][panel].
    A library without it (kernels from before the panels, as benches load) reads rows."""
    panel = getattr(native.library(), "qpw_int8_panel", None)
    return int(panel()) if panel is not None else 0


def pack_quads(w: np.ndarray, panel: int) -> np.ndarray:
    """Weights [coutp][cq * 4] (int8) as the kernel's int32 quads: rows [cq][coutp] (panel
    0), or panels [coutp / panel][cq][panel] (coutp a multiple of panel), flat."""
    coutp, cq = w.shape[0], w.shape[1] // 4
    quads = w.reshape(coutp, cq, 4).view(np.int32).reshape(coutp, cq)
    if not panel:
        return np.ascontiguousarray(quads.T).reshape(-1)
    return np.ascontiguousarray(
        quads.reshape(coutp // panel, panel, cq).transpose(0, 2, 1)
    ).reshape(-1)


def _pair_holds(w: np.ndarray, cq: int) -> np.ndarray:
    """[panel, cq // 2] bool: quads 2j and 2j + 1 of ``w`` [coutp, 4 cq] (int8, 16-channel
    panels) add their int16 pair sums exactly at activations in [0, PAIR_SPAN] in every
    channel of the panel: each byte pair's 4 weights, positive ones' sum x PAIR_SPAN <= 32767,
    negative ones' >= -32768."""
    panels, ev = w.shape[0] // 16, cq // 2 * 2
    q = w.reshape(panels, 16, cq, 4)[:, :, :ev].astype(np.int16)
    q = q.reshape(panels, 16, ev // 2, 2, 2, 2)  # [panel, ch, quad pair, which, pair, 2]
    qp = np.maximum(q, 0)
    # [panel, ch, quad pair, pair]: the 4 weights added two by two (numpy's sum over small
    # axes is slow)
    pos = qp[..., 0, :, 0] + qp[..., 0, :, 1] + qp[..., 1, :, 0] + qp[..., 1, :, 1]
    neg = pos - (q[..., 0, :, 0] + q[..., 0, :, 1] + q[..., 1, :, 0] + q[..., 1, :, 1])
    pos, neg = (a.max(axis=(1, 3), initial=0).astype(np.int32) for a in (pos, neg))
    return (pos * PAIR_SPAN <= 32767) & (neg * PAIR_SPAN <= 32768)


def _pairings(w: np.ndarray, cq: int) -> np.ndarray:
    """Each 16-channel panel's [T2, order of its cq quads], flat, padded with zeros to a
    multiple of w's rows (coutp): the quads in order where every consecutive pair holds
    (_pair_holds; ResNet-50's 1x1 layers: 67-99 % of quads, the more the more quads), else on
    up to REPAIR_CQ quads qconv_terms.pair_terms' order (re-pairing the rest: 96-100 %), else
    the holding pairs first; T2 the leading quads whose pairs all hold. Thread CPU of
    ResNet-50's 32 1x1 layers' pairings: pair_terms on every panel 0.68 s, on up to 64 quads
    0.31 s, on none 0.09 s."""
    coutp = w.shape[0]
    panels, ev = coutp // 16, cq // 2 * 2
    ok = _pair_holds(w, cq)
    late = np.ones((panels, cq), bool)  # each quad: not in a holding pair
    late[:, :ev] = ~np.repeat(ok, 2, axis=1)
    out = np.empty((panels, cq + 1), np.int32)
    out[:, 0] = 2 * ok.sum(axis=1)
    out[:, 1:] = np.argsort(late * cq + np.arange(cq), axis=1, kind="stable")
    if cq <= REPAIR_CQ:
        for p in np.flatnonzero(~ok.all(axis=1)):
            panel = w[16 * p : 16 * p + 16].reshape(16, cq, 4)
            order, _ = pair_terms(panel.transpose(1, 0, 2)[None], PAIR_SPAN)
            holds = _pair_holds(panel[:, order].reshape(16, 4 * cq), cq)[0]
            t2 = 2 * int(np.argmin(holds)) if not holds.all() else ev
            if t2 > out[p, 0]:
                out[p, 0], out[p, 1:] = t2, order
    flat = out.reshape(-1)
    return np.concatenate([flat, np.zeros(-flat.size % coutp, np.int32)])


class QPointwiseNative(Tactic):
    """INT8 1x1 convolution in C (see the module docstring)."""

    name = "qpointwise_native"

    def __init__(self, spec: QConvSpec) -> None:
        self.spec = spec
        self.act = int(ACTIVATION_CODES[spec.activation])
        params = (*spec.activation_params, *_ACTS[spec.activation][len(spec.activation_params) :])
        self.params = (float(params[0]), float(params[1]))

    @classmethod
    def applicable(cls, spec: QConvSpec) -> bool:
        s = spec
        return (
            tuple(s.kernel) == (1, 1)
            and tuple(s.strides) == (1, 1)
            and not any(s.pads)
            and s.group == 1
            and np.dtype(s.x_dtype) == np.int8
            and np.dtype(s.weight.dtype) == np.int8
            and s.activation in _ACTS
            and (s.residual == "none" or (s.residual == "pre" and np.dtype(s.z_dtype) == np.int8))
            and native.available()
            and (
                (s.out_precision == "int8" and 0.0 < s.out_scale < 1e30)
                # a float32 output: the AVX2 path's vector epilogue only (no residual)
                or (s.out_precision == "fp32" and s.residual == "none" and _path() == AVX2)
            )
            and (
                _path() == AVX2
                or (s.cin >= MIN_CIN and s.x_shape[2] * s.x_shape[3] <= MAX_POSITIONS)
            )
        )

    def _prepared(self) -> dict[str, Any]:
        """Weight quads, sums and multipliers, computed once per tactic."""
        cached = getattr(self, "_prep", None)
        if cached is not None:
            return cached
        s = self.spec
        cout, cin = s.cout, s.cin
        cq = -(-cin // 4)
        coutp = -(-cout // TILE_CHANNELS) * TILE_CHANNELS + TILE_CHANNELS
        w = np.zeros((coutp, cq * 4), np.int8)
        w[:cout, :cin] = np.asarray(s.weight, np.int8).reshape(cout, cin)
        # [oc][quad][4 channels] -> int32 quads in the build's layout, cq x coutp of them;
        # then the rows of the proved multipliers, the sign row and the panels' pairings
        parts = [pack_quads(w, _panel()), np.zeros((PROVED_ROWS + SIGN_ROWS) * coutp, np.int32)]
        biased = _panel() == 16 and BIASED_QUADS and not (s.x_range and s.x_range[0] >= 0)
        if _panel() == 16:
            parts.append(_pairings(w, cq))
        if biased:
            parts.append(pack_quads((w.astype(np.int16) + 128).astype(np.uint8).view(np.int8), 16))
        wts = hugemem.copy(np.concatenate(parts).reshape(-1, coutp))
        wsum = np.asarray(s.weight, np.int64).reshape(cout, -1).sum(axis=1).astype(np.int32)
        mult = float(s.x_scale) * np.asarray(s.w_scale, np.float64).reshape(cout)
        bias = None if s.bias is None else np.ascontiguousarray(s.bias, np.int32).reshape(cout)
        if s.residual == "none" and s.out_precision == "int8":
            proved = wts[cq : cq + PROVED_ROWS].view(np.float32)
            proved[:, :cout] = proved_multipliers(
                w[:cout, :cin],
                bias,
                mult,
                float(s.out_scale),
                s.activation,
                tuple(s.activation_params),
            )
        wts[cq + PROVED_ROWS, 0] = int((w[:cout, :cin] != -128).all())
        wts[cq + PROVED_ROWS, 1] = int(biased)
        self._prep = dict(
            cq=cq, coutp=coutp, wts=wts, wsum=wsum, mult=np.ascontiguousarray(mult), bias=bias
        )
        return self._prep

    def _parts(self, n: int, positions: int, workers: int) -> list[tuple[int, int, int, int]]:
        """An image's (positions, output channels) ranges: small enough layouts, at least the
        threads' count between the images of a batch (whole vectors each); on the AVX2 path
        a small map's channels where a thread would get fewer than CHANNEL_SPLIT positions
        (7x7: 32 + 17 positions would leave a thread idle a third of the time; each call lays
        the map out)."""
        cq, cout = self._prepared()["cq"], self.spec.cout
        fit = max(VECTOR, LAYOUT_BYTES // (4 * cq) // VECTOR * VECTOR)
        parts = -(-positions // fit)
        if workers > 1:
            per = -(-workers // n)
            if parts == 1 and positions < CHANNEL_SPLIT * per and _path() == AVX2:
                return [(0, positions, o0, o1) for o0, o1 in split(cout, per, align=VECTOR)]
            parts = max(parts, per)
        return [(q0, q1, 0, cout) for q0, q1 in split(positions, parts, align=ALIGN)]

    @staticmethod
    def _layout_buffer(scratch: Scratch, size: int, k: int) -> np.ndarray:
        """The layout buffer of a layer's task ``k``: one of the context's shared ones (the
        same for every 1x1 layer's task k: the layers run one after another, and the buffer
        stays in the caches instead of a cold one per layer), or a private one if larger."""
        if SHARED_LAYOUT and size <= LAYOUT_BYTES:
            return scratch((LAYOUT_BYTES,), np.int32, f"qpw_layout{k}")
        return scratch((size,), np.int32, None)

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        s, p = self.spec, self._prepared()
        before: list[Run] = []
        after: list[Run] = []
        x = np.asarray(inputs[0])
        if not unit_planes(x):
            xc = scratch(x.shape, x.dtype, "qpw_in")
            before.append(lambda: np.copyto(xc, x))
            x = xc
        out = outputs[0]
        if not unit_planes(out):
            tmp = scratch(out.shape, out.dtype, "qpw_out")
            after.append(lambda: np.copyto(out, tmp))
            out = tmp
        z = inputs[4] if len(inputs) > 4 and s.residual != "none" else None
        if z is not None and not unit_planes(z):
            zc = scratch(z.shape, z.dtype, "qpw_residual")
            before.append(lambda z=z: np.copyto(zc, z))
            z = zc
        n, cin, h, w = s.x_shape
        positions = h * w
        workers = getattr(scratch, "workers", 1)
        keep = (x, out, z, p["wts"], p["wsum"], p["mult"], p["bias"])
        tasks: list[Any] = []
        for b in range(n):
            for q0, q1, oc0, oc1 in self._parts(n, positions, workers):
                # the layout, its |x| (the signed dot products' tiles), each position's
                # activations' sum, each block's check, the fixed blocks' copies and their
                # entries (qpw_check, qpw_fix)
                pn = -(-(q1 - q0) // VECTOR) * VECTOR
                size = 3 * p["cq"] * pn + 2 * pn + pn // VECTOR * (1 + 2 * FIX_MAX)
                buf = self._layout_buffer(scratch, size, len(tasks))
                args = dict(
                    x=x.ctypes.data + b * x.strides[0],
                    xcs=x.strides[1],
                    cin=cin,
                    q0=q0,
                    q1=q1,
                    wts=p["wts"].ctypes.data,
                    coutp=p["coutp"],
                    bias=None if p["bias"] is None else p["bias"].ctypes.data,
                    wsum=p["wsum"].ctypes.data,
                    mult=p["mult"].ctypes.data,
                    oc0=oc0,
                    oc1=oc1,
                    out=out.ctypes.data + b * out.strides[0],
                    ocs=out.strides[1] // out.itemsize,
                    oscale=float(s.out_scale) if s.out_precision == "int8" else 1.0,
                    act=self.act,
                    p0=self.params[0],
                    p1=self.params[1],
                    residual=0 if z is None else 1,
                    z=None if z is None else z.ctypes.data + b * z.strides[0],
                    zcs=0 if z is None else z.strides[1],
                    zscale=float(s.z_scale),
                    buf=buf.ctypes.data,
                    otype=0 if s.out_precision == "int8" else 1,
                )
                tasks.append(native.NativeCall("qpw_int8_f32", args, (*keep, buf)))
        pool = getattr(scratch, "pool", None)
        steps: list[Run] = list(before)
        if pool is not None and workers > 1 and len(tasks) > 1:
            steps.append(pool.bind(tasks))
        else:
            steps.extend(tasks)
        return sequence([*steps, *after])


__all__ = ["QPointwiseNative"]
