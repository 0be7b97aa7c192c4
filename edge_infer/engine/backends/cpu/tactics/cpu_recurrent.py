"""The CPU backend's recurrent tactics (LSTM / GRU / RNN), every buffer allocated at bind.

``recurrent_native`` (an LSTM with ONNX's default activations): each direction is one call
of ``kernels/recurrent.c`` — the input projection of every step as one GEMM, then every step
(the hidden-state product and the cell, gates in registers) in C; the two directions of a
bidirectional layer run on two threads of the pool. Weights are packed once, at bind (by
hidden group, in halves of 16 columns: see recurrent.c). No Python runs per step.

``recurrent_gemm`` (every form; the fallback): a
:class:`~edge_infer.engine.ops.recurrent_cells.RecurrentRunner` whose buffers come from the
context's scratch allocator: the input projection of all time steps and both directions is
one ``[T*B, I] x [I, D*G*H]`` GEMM into a preallocated buffer, the recurrence one small GEMM
per step and direction into a preallocated gate buffer with the gate arithmetic in place
(numpy, from Python), and the state lives in preallocated arrays. Constant weights are
transposed and their biases folded once, at bind.

Neither allocates while the engine runs. The builder times both where both apply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.ops.recurrent_cells import RecurrentRunner
from edge_infer.engine.tactics.base import Run, Scratch, Tactic
from edge_infer.engine.tactics.recurrent import RecurrentSpec
from edge_infer.errors import EdgeInferError


class RecurrentGemm(Tactic):
    name = "recurrent_gemm"

    def __init__(self, spec: RecurrentSpec) -> None:
        self.spec = spec

    @classmethod
    def applicable(cls, spec: RecurrentSpec) -> bool:
        return isinstance(spec, RecurrentSpec)

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        s = self.spec
        runner = RecurrentRunner(
            s.cell, s.x_shape, np.float32, lambda shape, dtype: scratch(shape, dtype, None)
        )
        padded = list(inputs) + [None] * (8 - len(inputs))
        x, w, r, b, lens, h0, c0, p = padded
        if lens is not None:
            lens = np.ascontiguousarray(lens)  # a constant (see recurrent_spec)
            if lens.size and (lens.min() < 0 or lens.max() > runner.steps):
                raise ValueError(f"{s.op}: sequence_lens must be in [0, {runner.steps}]")
        weights = (w, r, b, p)
        constant = all(a is None or not a.flags.writeable for a in weights)
        if constant:
            runner.load_weights(*weights)
        # X is read as [T*B, I]: a strided view is copied into a buffer of its own first
        x_buffer = None if x.flags.c_contiguous else scratch(x.shape, np.float32, None)
        outs: list[np.ndarray | None] = list(outputs) + [None] * (3 - len(outputs))
        y, y_h, y_c = outs if s.op == "LSTM" else (*outs[:2], None)

        def run() -> None:
            if not constant:
                runner.load_weights(*weights)
            src = x
            if x_buffer is not None:
                np.copyto(x_buffer, x)
                src = x_buffer
            runner.run(src, lens, h0, c0, y, y_h, y_c)

        return run


#: the activations kernels/recurrent.c computes (ONNX's defaults); others keep recurrent_gemm
_NATIVE_ACTIVATIONS = {"LSTM": ("sigmoid", "tanh", "tanh")}
GROUP = 8  # hidden units per packed group (recurrent.c: 4 gates x 8 units = 32 columns)


def pack_gates(m: np.ndarray, hidden: int) -> np.ndarray:
    """[4*hidden, k] (gate rows i, o, f, c) → [groups][2][k][16]: group g holds columns
    i, o, f, c of hidden units 8g .. 8g+7 (zero past ``hidden``) as two halves (i, o and
    f, c) of 16 columns, each half's k rows one after another (recurrent.c's 6 x 16 tiles
    read a half as one contiguous panel)."""
    k = m.shape[1]
    groups = -(-hidden // GROUP)
    padded = np.zeros((4, groups * GROUP, k), np.float32)
    padded[:, :hidden] = m.reshape(4, hidden, k)
    by_gate = padded.reshape(2, 2, groups, GROUP, k)  # [half][gate in half][group][unit][k]
    return np.ascontiguousarray(by_gate.transpose(2, 0, 4, 1, 3)).reshape(groups, 2, k, 16)


def pack_bias(b: np.ndarray | None, hidden: int) -> np.ndarray:
    """ONNX's B [8*hidden] (Wb then Rb) → Wb + Rb as [groups][32], packed as pack_gates."""
    groups = -(-hidden // GROUP)
    out = np.zeros((4, groups * GROUP), np.float32)
    if b is not None:
        out[:, :hidden] = (b[: 4 * hidden] + b[4 * hidden :]).reshape(4, hidden)
    return np.ascontiguousarray(out.reshape(4, groups, GROUP).transpose(1, 0, 2)).reshape(-1)


def _contiguous(a: np.ndarray | None) -> bool:
    return a is None or a.flags.c_contiguous


class RecurrentNative(Tactic):
    """``recurrent_native``: an LSTM with ONNX's default activations, each direction's
    projection GEMM and whole step loop one call of ``kernels/recurrent.c`` (no Python per
    step); the two directions of a bidirectional layer run on two threads of the pool."""

    name = "recurrent_native"

    def __init__(self, spec: RecurrentSpec) -> None:
        self.spec = spec

    @classmethod
    def applicable(cls, spec: RecurrentSpec) -> bool:
        if not isinstance(spec, RecurrentSpec) or spec.op not in _NATIVE_ACTIVATIONS:
            return False
        want = _NATIVE_ACTIVATIONS[spec.op]
        acts = spec.cell.activations
        if any(tuple(a.name.lower() for a in d) != want for d in acts):
            return False
        return native.available()

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        calls, before, after = self.calls(inputs, outputs, scratch)
        pool = getattr(scratch, "pool", None)
        steps: list[Run] = list(before)
        if pool is not None and len(calls) > 1:
            steps.append(pool.bind(calls))
        else:
            steps.extend(calls)
        steps.extend(after)

        def run() -> None:
            for step in steps:
                step()

        return run

    def calls(
        self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch
    ) -> tuple[list[native.NativeCall], list[Run], list[Run]]:
        """The kernel call of each direction, and the runs before (copies in, weights that
        are not constants) and after them (copies out)."""
        s, c, g = self.spec, self.spec.cell, _Geometry.of(self.spec)
        x, w, r, b, lens, h0, c0, p = list(inputs) + [None] * (8 - len(inputs))
        y, y_h, y_c = (list(outputs) + [None] * 3)[:3]
        before: list[Run] = []
        after: list[Run] = []

        def alloc(shape: tuple[int, ...]) -> np.ndarray:
            return scratch(shape, np.float32, None)

        def source(a: np.ndarray | None) -> np.ndarray | None:
            """``a`` itself when contiguous, else a buffer it is copied into first."""
            if _contiguous(a):
                return a
            buf = alloc(a.shape)  # type: ignore[union-attr]
            before.append(lambda: np.copyto(buf, a))
            return buf

        def sink(a: np.ndarray | None) -> np.ndarray | None:
            """``a`` itself when contiguous, else a buffer copied into it after."""
            if _contiguous(a):
                return a
            buf = alloc(a.shape)  # type: ignore[union-attr]
            after.append(lambda: np.copyto(a, buf))
            return buf

        x_, h0_, c0_ = source(x), source(h0), source(c0)
        y_, yh_, yc_ = sink(y), sink(y_h), sink(y_c)
        lens_ = _lengths(s.op, lens, g.steps)
        packed = _PackedWeights(g, w, r, b, p, alloc)
        if packed.constant:
            packed.pack()
        else:
            before.append(packed.pack)
        proj = alloc((g.directions, g.steps * g.batch, 4 * g.hp))
        work = alloc((g.directions, 3 * g.batch * g.hp))

        def at(a: np.ndarray | None, k: int, step: int) -> int | None:
            """Address of direction ``k``'s part of ``a`` (``step`` floats apart)."""
            return None if a is None else a.ctypes.data + 4 * k * step

        calls = []
        for k in range(g.directions):
            fields = dict(
                x=at(x_, 0, 0),
                rows=g.steps * g.batch,
                inputs=g.inputs,
                wpack=at(packed.w, k, packed.w[0].size),
                bias=at(packed.bias, k, packed.bias[0].size),
                proj=at(proj, k, proj[0].size),
                rpack=at(packed.r, k, packed.r[0].size),
                peep=at(packed.peep, k, packed.peep[0].size) if packed.peep_used else None,
                steps=g.steps,
                batch=g.batch,
                hidden=g.hidden,
                hp=g.hp,
                pts=g.pts,
                pbs=g.pbs,
                reverse=int(k == 1 or c.reverse_only),
                lens=None if lens_ is None else lens_.ctypes.data,
                h0=at(h0_, k, g.sstep),
                c0=at(c0_, k, g.sstep),
                sbs=g.sbs,
                y=at(y_, k, g.ystep),
                yts=g.yts,
                ybs=g.ybs,
                yh=at(yh_, k, g.sstep),
                yc=at(yc_, k, g.sstep),
                clip=c.clip or 0.0,
                input_forget=int(c.input_forget),
                work=at(work, k, work[0].size),
            )
            arrays = (packed.w, packed.r, packed.bias, packed.peep, proj, work)
            keep = (x_, h0_, c0_, y_, yh_, yc_, lens_, *arrays)
            calls.append(native.NativeCall("lstm_seq_f32", fields, keep))
        return calls, before, after


@dataclass(frozen=True)
class _Geometry:
    """A layer's sizes and the kernel's strides, in floats: rows of X (and of the
    projection) for step t, batch row b at ``t * pts + b * pbs``; Y at ``t * yts + b * ybs``
    (direction k at ``k * ystep``); initial and final states (one layout for all four) at
    ``b * sbs``, direction k at ``k * sstep``."""

    steps: int
    batch: int
    inputs: int
    hidden: int
    directions: int
    pts: int
    pbs: int
    yts: int
    ybs: int
    ystep: int
    sbs: int
    sstep: int

    @property
    def hp(self) -> int:
        """hidden rounded up to whole groups"""
        return -(-self.hidden // GROUP) * GROUP

    @classmethod
    def of(cls, spec: RecurrentSpec) -> _Geometry:
        c = spec.cell
        d, h = c.directions, c.hidden
        if c.layout == 0:  # X [T, B, I], Y [T, D, B, H], states [D, B, H]
            t, b = spec.x_shape[0], spec.x_shape[1]
            return cls(t, b, spec.x_shape[2], h, d, b, 1, d * b * h, h, b * h, h, b * h)
        b, t = spec.x_shape[0], spec.x_shape[1]  # X [B, T, I], Y [B, T, D, H], states [B, D, H]
        return cls(t, b, spec.x_shape[2], h, d, 1, t, d * h, t * d * h, h, d * h, h)


class _PackedWeights:
    """W, R, the summed biases and the peepholes of every direction in recurrent.c's layout,
    in buffers from ``alloc``; :meth:`pack` fills them (once at bind for constants)."""

    def __init__(
        self,
        g: _Geometry,
        w: np.ndarray,
        r: np.ndarray,
        b: np.ndarray | None,
        p: np.ndarray | None,
        alloc: Callable[[tuple[int, ...]], np.ndarray],
    ) -> None:
        self.sources, self.hidden = (w, r, b, p), g.hidden
        groups = g.hp // GROUP
        self.w = alloc((g.directions, groups, 2, g.inputs, 2 * GROUP))
        self.r = alloc((g.directions, groups, 2, g.hidden, 2 * GROUP))
        self.bias = alloc((g.directions, groups * 4 * GROUP))
        self.peep = alloc((g.directions, 3, g.hp))
        self.constant = all(_constant(a) for a in self.sources)
        # all-zero constant peepholes (what exporters write for "none") cost nothing
        self.peep_used = p is not None and (not _constant(p) or bool(np.any(p)))

    def pack(self) -> None:
        w, r, b, p = self.sources
        for k in range(self.w.shape[0]):
            self.w[k] = pack_gates(w[k], self.hidden)
            self.r[k] = pack_gates(r[k], self.hidden)
            self.bias[k] = pack_bias(None if b is None else b[k], self.hidden)
            if self.peep_used:
                self.peep[k, :, : self.hidden] = p[k].reshape(3, self.hidden)  # type: ignore[index]


def _lengths(op: str, lens: np.ndarray | None, steps: int) -> np.ndarray | None:
    """sequence_lens as the kernel reads them (int64), None when every row runs every step."""
    if lens is None:
        return None
    out = np.ascontiguousarray(lens, np.int64)  # a constant (see recurrent_spec)
    if out.size and (out.min() < 0 or out.max() > steps):
        raise EdgeInferError(f"{op}: sequence_lens must be in [0, {steps}], got {out.tolist()}")
    return None if bool(np.all(out == steps)) else out


def _constant(a: np.ndarray | None) -> bool:
    return a is None or not a.flags.writeable
