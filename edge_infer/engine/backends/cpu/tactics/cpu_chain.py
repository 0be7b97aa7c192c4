"""``chain_native``: an inverted-residual chain (``[expand 1x1 →] depthwise 3x3 → project
1x1``, :class:`~.chain_spec.ChainSpec`) in one pass over memory (kernels/conv_chain.c).

Run layer by layer, MobileNet's expanded tensors (6× the block's channels, on the largest
planes) go out to memory and come back, and the 1×1 layers on them are memory-bound. The
kernel goes through the output a strip of rows at a time: the expanded rows the strip's
depthwise reads (kept in a ring across strips, so only a task's first strip recomputes its
halo), the depthwise rows, then the project GEMM writing the output rows — the middle
tensors stay in L2, only the block's input and output touch memory.

The kernel takes the MobileNet depthwise: 3×3, stride 1 or 2 (both axes), pads 1, no
dilation; members' activations the fused epilogues implement (``ACTIVATION_CODES``);
float32 NCHW. Weights are packed at bind for the kernel's register tiles; each task (a
range of output rows of the batch, images one after another) has its own ring.

Measured (bench/chain_ab.py --threads 1 --cpu, one process alternating, a loaded host):
0.64-0.94x the members' own tactics on MobileNetV2's blocks at 112 to 14 pixels at batch 8
(features.1-12), 0.79-1.1x at batch 1 there; slower on the 7x7 blocks (1.1-1.25x: each task
recomputes its first strip's halo rows, and the planes are a few strips), where the build
keeps the layers separate. One image on such a small plane is therefore split between threads
by ranges of the middle channels instead (no halo; each thread's project reads only what it
expanded), the threads' partial project sums added after.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.activations import ACTIVATION_CODES
from edge_infer.engine.backends.cpu.parallel import sequence, share, split
from edge_infer.engine.backends.cpu.tactics.chain_spec import ChainSpec
from edge_infer.engine.backends.cpu.tactics.cpu_conv import flat3
from edge_infer.engine.backends.cpu.tactics.cpu_direct import _DEFAULTS, _RESIDUAL, pack_weights
from edge_infer.engine.tactics.base import ConvSpec, Run, Scratch, Tactic

#: output channels per packed weight panel (conv_chain.c: PANEL)
PANEL = 8
#: the widest register tile in pixels (conv_chain.c: NR on any build); floats of an expanded
#: channel before its first row and past its last (EHEAD, ETAIL)
NR_MAX, EHEAD, ETAIL = 24, 8, 40
#: floats of a task's ring of expanded rows plus its depthwise rows: strips are as many
#: output rows as fit (at least one); 256 KB, half of this host's L2 a core (512 KB; 128K
#: floats measured no better under load; with the ring without pad columns, strips of 1-14
#: rows on MobileNetV2's 28x28, 14x14 and 7x7 blocks measured no better than these: 1.0-1.8x,
#: one thread, batch 1)
WORK_FLOATS = 64 * 1024
#: pixels a strip should have at least (two register tiles of the widest build)
MIN_STRIP_PIXELS = 48
#: output rows a strip should have at least (the depthwise's passes of 4 rows share their
#: input rows' loads)
MIN_STRIP_ROWS = 4
#: strips grow to MIN_STRIP_PIXELS / MIN_STRIP_ROWS where they fit in this many budgets
#: (with the depthwise's 4-row passes: old kernel and strips / new, one thread, alternating,
#: under load: MobileNetV2 features.2, 3, 14, 17 0.71-0.92 at batch 1, 0.84-1.00 at batch 8)
WANT_BUDGETS = 4
#: output rows per task at least (each task recomputes its first strip's halo rows)
MIN_TASK_ROWS = 2
#: one image on at most this many output pixels: tasks by middle channels (_by_channels).
#: MobileNetV2 b1, 2 threads, every chain kept, one engine, by channels / by rows (60
#: rounds, bench/mnv_fp32_ab.py --all-chains): the 7x7 outputs' chains (features.14-17)
#: 0.81-0.86, the 14x14 ones 0.89-1.07 (left by rows)
BY_CHANNELS_MAX_PIXELS = 64
F32 = np.dtype(np.float32)


def _up(v: int, m: int) -> int:
    return -(-v // m) * m


def _activation(spec: ConvSpec) -> tuple[int, float, float] | None:
    """(code, p0, p1) of a member's activation in the kernels' epilogue, None if it has none."""
    code = ACTIVATION_CODES.get(spec.activation)
    if code is None:
        return None
    defaults = _DEFAULTS.get(code, (0.0, 0.0))
    params = (*spec.activation_params, *defaults[len(spec.activation_params) :])[:2]
    return code, float(params[0]), float(params[1])


def kernel_takes(spec: ChainSpec) -> bool:
    """The depthwise the kernel computes (3x3, stride 1 or 2, pads 1, no dilation), float32
    weights, and activations the kernel's epilogue has."""
    dw = spec.depthwise
    return (
        dw.kernel == (3, 3)
        and dw.strides in ((1, 1), (2, 2))
        and dw.pads == (1, 1, 1, 1)
        and dw.dilations == (1, 1)
        and all(s.weight.dtype == F32 for s in spec.layers)
        and all(_activation(s) is not None for s in spec.layers)
        and spec.project.residual in _RESIDUAL
    )


def geometry(spec: ChainSpec, cmid: int | None = None) -> dict[str, int]:
    """The kernel's buffer geometry: strip rows, ring rows ns, ring row width ws, D's
    channel stride ds, and ``work``: floats of a task's buffer (conv_chain.c); ``cmid``: a
    task's middle channels where not all of them."""
    _, cin, _, w = spec.x_shape
    cmid = spec.depthwise.cin if cmid is None else cmid
    _, _, ho, wo = spec.out_shape
    sy = spec.depthwise.strides[0]

    def size(rows: int) -> tuple[int, int, int, int]:
        # E: a channel's ns rows back to back (w apart) between its head and tail, as ns
        # rows of ws floats; D's rows back to back, its channel stride an odd number of
        # cache lines (the project's loads down the channels then spread over every L1 set)
        ns, ds = (rows - 1) * sy + 3, _up(rows * wo + 16, 16)
        ws = -(-(EHEAD + ns * w + ETAIL) // ns)
        ds += 16 * (1 - (ds // 16) % 2)
        return ns, ws, ds, cmid * (ns * ws + ds)

    rows = 1
    while rows < ho and size(rows + 1)[3] <= WORK_FLOATS:
        rows += 1
    # strips of at least MIN_STRIP_PIXELS pixels (whole register tiles for the project
    # GEMM) and MIN_STRIP_ROWS rows where they fit in WANT_BUDGETS budgets
    want = min(ho, max(-(-MIN_STRIP_PIXELS // wo), MIN_STRIP_ROWS))
    while rows < want and size(rows + 1)[3] <= WANT_BUDGETS * WORK_FLOATS:
        rows += 1
    ns, ws, ds, floats = size(rows)
    return dict(rows=rows, ns=ns, ws=ws, ds=ds, work=floats + cin * NR_MAX + EHEAD + w + ETAIL)


class ChainNative(Tactic):
    """An inverted-residual chain in one pass (conv_chain.c): strips of output rows through
    expand, depthwise and project while they are in cache."""

    name: ClassVar[str] = "chain_native"
    #: one image on small planes: each thread's task a range of the middle channels (see
    #: :meth:`_by_channels`), not of the output rows
    by_channels: ClassVar[bool] = True

    def __init__(self, spec: ChainSpec) -> None:
        self.spec = spec

    @classmethod
    def applicable(cls, spec: Any) -> bool:
        return isinstance(spec, ChainSpec) and kernel_takes(spec) and native.available()

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        s = self.spec
        if not kernel_takes(s):
            raise ValueError(f"{self.name}: not a chain the kernel takes: {s.signature()}")
        residual = _RESIDUAL[s.residual]
        if len(inputs) != 1 + (residual != 0):
            raise ValueError(f"{self.name}: {len(inputs)} inputs, residual {s.residual}")
        before: list[Run] = []
        after: list[Run] = []
        x3 = _planes(inputs[0], s.x_shape, scratch, "chain_in", before)
        z3 = (
            _planes(inputs[1], s.out_shape, scratch, "chain_residual", before) if residual else None
        )
        out = outputs[0]
        if tuple(out.shape) != s.out_shape:
            raise ValueError(f"{self.name}: output {out.shape}, expected {s.out_shape}")
        out3 = flat3(out) if out.dtype == F32 else None
        if out3 is None:
            tmp = scratch(out.shape, F32, "chain_out")
            out3 = flat3(tmp)
            after.append(lambda: np.copyto(out, tmp))
        assert out3 is not None
        n, cin, h, w = s.x_shape
        cmid = s.depthwise.cin
        _, cout, ho, wo = s.out_shape
        acts = [
            _activation(m) if m is not None else (0, 0.0, 0.0)
            for m in (s.expand, s.depthwise, s.project)
        ]
        (eact, ep0, ep1), (dact, dp0, dp1), (act, p0, p1) = acts  # type: ignore[misc]
        isz = 4
        common = dict(
            xis=x3.strides[0] // isz,
            xcs=x3.strides[1] // isz,
            h=h,
            w=w,
            cin=cin,
            cout=cout,
            sy=s.depthwise.strides[0],
            ho=ho,
            wo=wo,
            eact=eact,
            ep0=ep0,
            ep1=ep1,
            dact=dact,
            dp0=dp0,
            dp1=dp1,
        )
        parts = self._by_channels(scratch, n, act)
        if parts:  # packs each task's slices of the weights itself
            return self._bind_by_channels(
                parts, common, x3, z3, out3, residual, scratch, before, after
            )
        geo = geometry(s)
        ew = None if s.expand is None else pack_weights(s.expand.weight, PANEL)
        dw = np.ascontiguousarray(s.depthwise.weight.reshape(cmid, 9), F32)
        pw = pack_weights(s.project.weight, PANEL)
        eb, db, pb = (
            None if m is None or m.bias is None else np.ascontiguousarray(m.bias, F32)
            for m in (s.expand, s.depthwise, s.project)
        )
        calls = []
        for g0, g1 in split(n * ho, self._tasks(scratch, n, ho)):
            work = scratch((geo["work"],), F32, None)  # one per task: tasks run at once
            args = dict(
                common,
                x=x3.ctypes.data,
                cmid=cmid,
                ew=_addr(ew),
                eb=_addr(eb),
                dw=dw.ctypes.data,
                db=_addr(db),
                pw=pw.ctypes.data,
                pb=_addr(pb),
                out=out3.ctypes.data,
                ois=out3.strides[0] // isz,
                ocs=out3.strides[1] // isz,
                act=act,
                p0=p0,
                p1=p1,
                residual=residual,
                z=_addr(z3),
                zcs=0 if z3 is None else z3.strides[1] // isz,
                zis=0 if z3 is None else z3.strides[0] // isz,
                g0=g0,
                g1=g1,
                rows=geo["rows"],
                ns=geo["ns"],
                ws=geo["ws"],
                ds=geo["ds"],
                work=work.ctypes.data,
            )
            keep = (ew, eb, dw, db, pw, pb, x3, z3, out3, work)
            calls.append(native.NativeCall("conv_chain_f32", args, keep))
        pool = getattr(scratch, "pool", None)
        return sequence([*before, share(calls, pool), *after])

    def _by_channels(self, scratch: Scratch, n: int, act: int) -> int:
        """Tasks by ranges of the middle channels (0: by output rows). One image on a small
        plane split by rows expands each task boundary's halo rows twice (7 x 7 on 2
        threads: 9 rows for 7) and each thread's project reads rows the other expanded; by
        channels each task expands, filters and projects its channels on the whole plane
        into partial sums of every output, added after (the project without activation)."""
        s = self.spec
        workers = getattr(scratch, "workers", 1)
        _, _, ho, wo = s.out_shape
        cmid = s.depthwise.cin
        if not self.by_channels or n != 1 or workers < 2 or act != 0:
            return 0
        if ho * wo > BY_CHANNELS_MAX_PIXELS or cmid < workers * 2 * PANEL:
            return 0
        return workers

    def _bind_by_channels(
        self,
        parts: int,
        common: dict[str, Any],
        x3: np.ndarray,
        z3: np.ndarray | None,
        out3: np.ndarray,
        residual: int,
        scratch: Scratch,
        before: list[Run],
        after: list[Run],
    ) -> Run:
        """Task k: middle channels [m0, m1) on the whole image (its own packed weights),
        project partial sums into the output (task 0: with the bias and the residual, added
        before the identity activation) or a buffer of its own, summed into the output
        after the tasks."""
        s = self.spec
        ho = s.out_shape[2]
        cmid = s.depthwise.cin
        assert s.expand is None or s.expand.weight.shape[0] == cmid
        dwk = np.ascontiguousarray(s.depthwise.weight.reshape(cmid, 9), F32)
        calls, sums = [], []
        for k, (m0, m1) in enumerate(split(cmid, parts, align=PANEL)):
            geo = geometry(s, m1 - m0)
            work = scratch((geo["work"],), F32, None)
            dst = out3 if k == 0 else flat3(scratch(s.out_shape, F32, None))
            assert dst is not None
            if k:
                sums.append(dst)
            ew = None if s.expand is None else pack_weights(s.expand.weight[m0:m1], PANEL)
            pw = pack_weights(np.ascontiguousarray(s.project.weight[:, m0:m1]), PANEL)
            eb, db = (
                None if m is None or m.bias is None else np.ascontiguousarray(m.bias[m0:m1], F32)
                for m in (s.expand, s.depthwise)
            )
            dw = np.ascontiguousarray(dwk[m0:m1])
            pb = None if k or s.project.bias is None else np.ascontiguousarray(s.project.bias, F32)
            xk = x3 if s.expand is not None else x3[:, m0:m1]
            zk = z3 if k == 0 and residual else None
            args = dict(
                common,
                x=xk.ctypes.data,
                cmid=m1 - m0,
                ew=_addr(ew),
                eb=_addr(eb),
                dw=dw.ctypes.data,
                db=_addr(db),
                pw=pw.ctypes.data,
                pb=_addr(pb),
                out=dst.ctypes.data,
                ois=dst.strides[0] // 4,
                ocs=dst.strides[1] // 4,
                act=0,
                p0=0.0,
                p1=0.0,
                residual=residual if zk is not None else 0,
                z=_addr(zk),
                zcs=0 if zk is None else zk.strides[1] // 4,
                zis=0 if zk is None else zk.strides[0] // 4,
                g0=0,
                g1=ho,
                rows=geo["rows"],
                ns=geo["ns"],
                ws=geo["ws"],
                ds=geo["ds"],
                work=work.ctypes.data,
            )
            keep = (ew, eb, dw, db, pw, pb, xk, zk, dst, work, x3, z3, out3)
            calls.append(native.NativeCall("conv_chain_f32", args, keep))

        def add() -> None:
            for part in sums:
                np.add(out3, part, out=out3)

        pool = getattr(scratch, "pool", None)
        return sequence([*before, share(calls, pool), add, *after])

    @staticmethod
    def _tasks(scratch: Scratch, n: int, ho: int) -> int:
        """Tasks (ranges of the batch's output rows): two per thread where the batch has an
        image for each (a late thread costs less, and the tasks start at image starts, no
        halo), else one per thread (each task boundary inside an image expands its 1-2
        halo rows twice: 4 tasks on a 14-row image expanded 20 rows for 14; 2 tasks 16);
        one without helpers."""
        workers = getattr(scratch, "workers", 1)
        if workers <= 1:
            return 1
        tasks = 2 * workers if n >= 2 * workers else workers
        return max(1, min(tasks, n * ho // MIN_TASK_ROWS))


def _addr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


def _planes(
    a: np.ndarray, shape: tuple[int, ...], scratch: Scratch, role: str, before: list[Run]
) -> np.ndarray:
    """``a`` as (N, C, H*W) float32 planes of unit-stride rows, or a scratch copy of it."""
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"chain_native: input {a.shape}, expected {shape}")
    a3 = flat3(a) if a.dtype == F32 else None
    if a3 is not None:
        return a3
    copy = scratch(a.shape, F32, role)
    before.append(lambda: np.copyto(copy, a))
    c3 = flat3(copy)
    assert c3 is not None
    return c3
