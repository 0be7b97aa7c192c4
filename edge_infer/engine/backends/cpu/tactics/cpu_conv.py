"""CPU convolution tactics. Each computes conv + bias (+ residual) + activation in place.

- ``gemm_1x1``       1×1, stride 1, no padding: one GEMM per image, no data movement at all.
- ``im2col_gemm``    any conv: copy the receptive fields into a column matrix, one GEMM.
- ``implicit_gemm``  stride 1: one accumulating GEMM per kernel tap over *shifted views* of
                     the padded input (computed over the padded width, cropped by the
                     epilogue) — no im2col copy.
- ``winograd_2x2_3x3`` 3×3 stride 1: F(2×2, 3×3), 16 GEMMs on transformed tiles (2.25× fewer
                     multiplies).
- ``depthwise_direct`` depthwise: a multiply-accumulate per tap over strided views.

Work is cut into independent chunks (column or row ranges of each image, or channel ranges)
that the context's :class:`~edge_infer.engine.backends.cpu.parallel.WorkPool` shares between
threads; each chunk runs its GEMMs and then its slice of the fused epilogue while the data
is still in cache.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.lib.stride_tricks import as_strided

from edge_infer.engine.backends.cpu import jit
from edge_infer.engine.backends.cpu.activations import make_epilogue
from edge_infer.engine.backends.cpu.blas import bound_sgemm
from edge_infer.engine.backends.cpu.parallel import sequence, split
from edge_infer.engine.tactics.base import ConvSpec, Run, Scratch, Tactic

#: chunks below this many output values are not worth a thread hand-off
MIN_CHUNK = 4096


def unflat4(a3: np.ndarray, h: int, w: int) -> np.ndarray:
    """(N, C, H*W) -> (N, C, H, W), always a view."""
    n, c, _ = a3.shape
    s0, s1, s2 = a3.strides
    return as_strided(a3, (n, c, h, w), (s0, s1, w * s2, s2))


def flat3(a: np.ndarray) -> np.ndarray | None:
    """(N, C, H, W) → (N, C, H*W) view when each plane is contiguous, else None."""
    n, c, h, w = a.shape
    isz = a.itemsize
    if a.strides[3] != isz or (h > 1 and a.strides[2] != w * isz):
        return None
    return as_strided(a, (n, c, h * w), (a.strides[0], a.strides[1], isz))


class _ConvTactic(Tactic):
    """Shared set-up: epilogue, (N, C, L) views, padding, chunking and the run assembly."""

    name: ClassVar[str] = "conv"

    def __init__(self, spec: ConvSpec) -> None:
        self.spec = spec
        self.epilogue = make_epilogue(
            spec.activation, spec.activation_params, spec.bias, spec.residual
        )

    def _io(
        self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[Run], list[Run]]:
        """(x, out3, z3, before, after): strided outputs/residuals go through scratch copies."""
        x, out = inputs[0], outputs[0]
        z = inputs[3] if len(inputs) > 3 else None
        before: list[Run] = []
        after: list[Run] = []
        out3 = flat3(out)
        if out3 is None:
            tmp = scratch(out.shape, out.dtype, "conv_out")
            out3 = flat3(tmp)
            after.append(lambda: np.copyto(out, tmp))
        z3 = None
        if z is not None:
            z3 = flat3(z)
            if z3 is None:
                zc = scratch(z.shape, z.dtype, "conv_residual")
                z3 = flat3(zc)
                before.append(lambda: np.copyto(zc, z))
        return x, out3, z3, before, after  # type: ignore[return-value]

    def _epilogue(
        self,
        out3: np.ndarray,
        z3: np.ndarray | None,
        b: int,
        l0: int,
        l1: int,
        c0: int = 0,
        c1: int | None = None,
    ) -> Run:
        c1 = out3.shape[1] if c1 is None else c1
        y = out3[b : b + 1, c0:c1, l0:l1]
        z = None if z3 is None else z3[b : b + 1, c0:c1, l0:l1]
        return self.epilogue.bind(y, z, c0)

    @staticmethod
    def _parts(scratch: Scratch, work: int) -> int:
        workers = getattr(scratch, "workers", 1)
        return max(1, min(workers, work // MIN_CHUNK))

    @staticmethod
    def _assemble(
        scratch: Scratch, phases: list[list[Run]], before: list[Run], after: list[Run]
    ) -> Run:
        """Run ``phases`` in order; the chunks inside a phase are shared between threads."""
        pool = getattr(scratch, "pool", None)
        steps: list[Run] = list(before)
        for chunks in phases:
            if pool is not None and len(chunks) > 1:
                steps.append(pool.bind(chunks))
            else:
                steps.extend(chunks)
        steps.extend(after)
        return sequence(steps)

    def _padded(
        self,
        x: np.ndarray,
        scratch: Scratch,
        tail: int = 0,
        extra_rows: int = 0,
        extra_cols: int = 0,
    ) -> tuple[np.ndarray, np.ndarray, list[Run]]:
        """A private zero-bordered copy of ``x``: (flat (N, C, Hp*Wp + tail), 4-D view,
        copy-in chunks split by channel)."""
        s = self.spec
        n, c, h, w = s.x_shape
        pt, pl, pb, pr = s.pads
        hp, wp = h + pt + pb + extra_rows, w + pl + pr + extra_cols
        flat = scratch((n, c, hp * wp + tail), x.dtype, None)
        four = flat[:, :, : hp * wp].reshape(n, c, hp, wp)
        interior = four[:, :, pt : pt + h, pl : pl + w]
        copies = [
            lambda a=a, b=b: np.copyto(interior[:, a:b], x[:, a:b])
            for a, b in split(c, self._parts(scratch, x.size))
        ]
        return flat, four, copies


class Gemm1x1(_ConvTactic):
    name = "gemm_1x1"

    @classmethod
    def applicable(cls, spec: ConvSpec) -> bool:
        return (
            spec.kernel == (1, 1)
            and spec.strides == (1, 1)
            and spec.pads == (0, 0, 0, 0)
            and spec.group == 1
        )

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        x, out3, z3, before, after = self._io(inputs, outputs, scratch)
        w2 = np.ascontiguousarray(self.spec.weight.reshape(self.spec.cout, self.spec.cin))
        x3 = flat3(x)
        if x3 is None:
            xc = scratch(x.shape, x.dtype, "conv_in")
            x3 = flat3(xc)
            before.append(lambda: np.copyto(xc, x))
        n, _, length = out3.shape
        chunks = []
        for b in range(n):
            for l0, l1 in split(length, self._parts(scratch, out3[b].size), align=16):
                chunks.append(
                    sequence(
                        [
                            bound_sgemm(w2, x3[b][:, l0:l1], out3[b][:, l0:l1]),
                            self._epilogue(out3, z3, b, l0, l1),
                        ]
                    )
                )
        return self._assemble(scratch, [chunks], before, after)


class Im2colGemm(_ConvTactic):
    name = "im2col_gemm"

    @classmethod
    def applicable(cls, spec: ConvSpec) -> bool:
        # for a plain 1x1 conv the column matrix *is* the input: gemm_1x1 dominates
        return not Gemm1x1.applicable(spec)

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        s = self.spec
        x, out3, z3, before, after = self._io(inputs, outputs, scratch)
        n, cin, _, _ = s.x_shape
        _, cout, ho, wo = s.out_shape
        kh, kw = s.kernel
        g = s.group
        cg, og = cin // g, cout // g
        _, four, copy_in = self._padded(x, scratch)
        col = scratch((cg * kh * kw, ho * wo), x.dtype, "col")
        col5 = col.reshape(cg, kh, kw, ho, wo)
        _, sc, sh, sw = four.strides
        (sy, sx), (dy, dx) = s.strides, s.dilations
        wg = [
            np.ascontiguousarray(s.weight[gi * og : (gi + 1) * og].reshape(og, cg * kh * kw))
            for gi in range(g)
        ]
        phases: list[list[Run]] = [copy_in]
        for b in range(n):
            for gi in range(g):
                window = as_strided(
                    four[b, gi * cg : (gi + 1) * cg],
                    (cg, kh, kw, ho, wo),
                    (sc, dy * sh, dx * sw, sy * sh, sx * sw),
                )
                chunks = []
                for r0, r1 in split(ho, self._parts(scratch, og * ho * wo)):
                    l0, l1 = r0 * wo, r1 * wo
                    chunks.append(
                        sequence(
                            [
                                lambda w=window, r0=r0, r1=r1: np.copyto(
                                    col5[..., r0:r1, :], w[..., r0:r1, :]
                                ),
                                bound_sgemm(
                                    wg[gi], col[:, l0:l1], out3[b, gi * og : (gi + 1) * og, l0:l1]
                                ),
                                self._epilogue(out3, z3, b, l0, l1, gi * og, (gi + 1) * og),
                            ]
                        )
                    )
                phases.append(chunks)
        return self._assemble(scratch, phases, before, after)


class ImplicitGemm(_ConvTactic):
    name = "implicit_gemm"

    @classmethod
    def applicable(cls, spec: ConvSpec) -> bool:
        return spec.strides == (1, 1) and spec.group == 1 and spec.kernel != (1, 1)

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        s = self.spec
        x, out3, z3, before, after = self._io(inputs, outputs, scratch)
        n = s.x_shape[0]
        _, cout, ho, wo = s.out_shape
        kh, kw = s.kernel
        dy, dx = s.dilations
        flat, four, copy_in = self._padded(x, scratch, tail=(kw - 1) * dx)
        wp = four.shape[3]
        acc = scratch((cout, ho * wp), x.dtype, "acc")
        acc3 = acc.reshape(cout, ho, wp)
        out4 = unflat4(out3, ho, wo)
        taps = [
            (i * dy * wp + j * dx, np.ascontiguousarray(s.weight[:, :, i, j]))
            for i in range(kh)
            for j in range(kw)
        ]
        phases: list[list[Run]] = [copy_in]
        for b in range(n):
            chunks = []
            for r0, r1 in split(ho, self._parts(scratch, cout * ho * wo)):
                c0, c1 = r0 * wp, r1 * wp
                gemms = [
                    bound_sgemm(
                        wt, flat[b][:, off + c0 : off + c1], acc[:, c0:c1], beta=1.0 if k else 0.0
                    )
                    for k, (off, wt) in enumerate(taps)
                ]

                def crop(r0: int = r0, r1: int = r1, b: int = b) -> None:
                    np.copyto(out4[b, :, r0:r1], acc3[:, r0:r1, :wo])

                chunks.append(
                    sequence([*gemms, crop, self._epilogue(out3, z3, b, r0 * wo, r1 * wo)])
                )
            phases.append(chunks)
        return self._assemble(scratch, phases, before, after)


# F(2x2, 3x3) transforms (Lavin & Gray); applied as sums of strided views.
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)


class Winograd2x2(_ConvTactic):
    name = "winograd_2x2_3x3"

    @classmethod
    def applicable(cls, spec: ConvSpec) -> bool:
        return (
            spec.kernel == (3, 3)
            and spec.strides == (1, 1)
            and spec.dilations == (1, 1)
            and spec.group == 1
        )

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        s = self.spec
        x, out3, z3, before, after = self._io(inputs, outputs, scratch)
        n, cin, _, _ = s.x_shape
        _, cout, ho, wo = s.out_shape
        th, tw = (ho + 1) // 2, (wo + 1) // 2
        t = th * tw
        pt, pl, pb, pr = s.pads
        h, w = s.x_shape[2], s.x_shape[3]
        extra_r = 2 * th + 2 - (h + pt + pb)
        extra_c = 2 * tw + 2 - (w + pl + pr)
        _, four, copy_in = self._padded(
            x, scratch, extra_rows=max(extra_r, 0), extra_cols=max(extra_c, 0)
        )
        # U[xi, nu] = G g G^T, laid out as 16 (Cout, Cin) matrices
        u = np.einsum("ai,ocij,bj->aboc", _G, s.weight.astype(np.float64), _G)
        u = np.ascontiguousarray(u.reshape(16, cout, cin).astype(np.float32))
        v = scratch((16, cin, t), x.dtype, "wino_v")
        m = scratch((16, cout, t), x.dtype, "wino_m")
        tmp = scratch((4, 4, cin, th, tw), x.dtype, "wino_t")
        v5 = v.reshape(4, 4, cin, th, tw)
        m5 = m.reshape(4, 4, cout, th, tw)
        out4 = unflat4(out3, ho, wo)
        yrow = scratch((2, 4, cout, th, tw), x.dtype, "wino_y")

        def transform(b: int) -> None:
            def d(i: int, j: int) -> np.ndarray:
                return four[b, :, i : i + 2 * th : 2, j : j + 2 * tw : 2]

            for j in range(4):  # rows: tmp[i] = (B^T d)[i] over columns j = 0..3
                np.subtract(d(0, j), d(2, j), out=tmp[0, j])
                np.add(d(1, j), d(2, j), out=tmp[1, j])
                np.subtract(d(2, j), d(1, j), out=tmp[2, j])
                np.subtract(d(1, j), d(3, j), out=tmp[3, j])
            for i in range(4):  # columns: v[i] = tmp[i] B
                np.subtract(tmp[i, 0], tmp[i, 2], out=v5[i, 0])
                np.add(tmp[i, 1], tmp[i, 2], out=v5[i, 1])
                np.subtract(tmp[i, 2], tmp[i, 1], out=v5[i, 2])
                np.subtract(tmp[i, 1], tmp[i, 3], out=v5[i, 3])
            np.matmul(u, v, out=m)
            # Y = A^T M A with A^T = [[1,1,1,0],[0,1,-1,-1]]
            for j in range(4):
                np.add(m5[0, j], m5[1, j], out=yrow[0, j])
                yrow[0, j] += m5[2, j]
                np.subtract(m5[1, j], m5[2, j], out=yrow[1, j])
                yrow[1, j] -= m5[3, j]
            for a in range(2):
                y0 = out4[b, :, a::2, 0::2]
                y1 = out4[b, :, a::2, 1::2]
                r = yrow[a]
                h0, w0 = y0.shape[1], y0.shape[2]
                np.add(r[0, :, :h0, :w0], r[1, :, :h0, :w0], out=y0)
                y0 += r[2, :, :h0, :w0]
                h1, w1 = y1.shape[1], y1.shape[2]
                np.subtract(r[1, :, :h1, :w1], r[2, :, :h1, :w1], out=y1)
                y1 -= r[3, :, :h1, :w1]

        phases: list[list[Run]] = [copy_in]
        for b in range(n):
            phases.append([lambda b=b: transform(b)])
            phases.append(
                [
                    self._epilogue(out3, z3, b, 0, ho * wo, c0, c1)
                    for c0, c1 in split(cout, self._parts(scratch, cout * ho * wo))
                ]
            )
        return self._assemble(scratch, phases, before, after)


class DepthwiseDirect(_ConvTactic):
    name = "depthwise_direct"

    @classmethod
    def applicable(cls, spec: ConvSpec) -> bool:
        return spec.group == spec.cin == spec.cout and spec.group > 1

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        s = self.spec
        x, out3, z3, before, after = self._io(inputs, outputs, scratch)
        n, c, _, _ = s.x_shape
        _, _, ho, wo = s.out_shape
        kh, kw = s.kernel
        (sy, sx), (dy, dx) = s.strides, s.dilations
        _, four, copy_in = self._padded(x, scratch)
        out4 = unflat4(out3, ho, wo)
        ranges = split(c, self._parts(scratch, out3.size))
        if jit.available() and x.dtype == np.float32:
            jit.warm_up()
            w3 = np.ascontiguousarray(s.weight[:, 0], dtype=np.float32)
            chunks = [
                sequence(
                    [
                        lambda a=a, b=b: jit.depthwise(
                            four[:, a:b], w3[a:b], out4[:, a:b], sy, sx, dy, dx
                        )
                    ]
                    + [self._epilogue(out3, z3, k, 0, ho * wo, a, b) for k in range(n)]
                )
                for a, b in ranges
            ]
            return self._assemble(scratch, [copy_in, chunks], before, after)
        tmp = scratch((n, c, ho, wo), x.dtype, "dw_tmp")
        taps = [
            (
                four[
                    :,
                    :,
                    i * dy : i * dy + sy * (ho - 1) + 1 : sy,
                    j * dx : j * dx + sx * (wo - 1) + 1 : sx,
                ],
                np.ascontiguousarray(s.weight[:, 0, i, j]).reshape(1, c, 1, 1),
            )
            for i in range(kh)
            for j in range(kw)
        ]

        def body() -> None:
            first_view, first_w = taps[0]
            np.multiply(first_view, first_w, out=out4)
            for view, wt in taps[1:]:
                np.multiply(view, wt, out=tmp)
                np.add(out4, tmp, out=out4)

        epilogues = [self._epilogue(out3, z3, k, 0, ho * wo) for k in range(n)]
        return self._assemble(scratch, [copy_in, [body], epilogues], before, after)


CONV_TACTICS: tuple[type[_ConvTactic], ...] = (
    Gemm1x1,
    ImplicitGemm,
    Winograd2x2,
    DepthwiseDirect,
    Im2colGemm,
)
