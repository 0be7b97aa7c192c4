"""``recurrent_gemm``: LSTM / GRU / RNN on the CPU with every buffer allocated at bind.

The layer is a :class:`~edge_infer.engine.ops.recurrent_cells.RecurrentRunner` whose buffers
come from the context's scratch allocator: the input projection of all time steps and both
directions is one ``[T*B, I] x [I, D*G*H]`` GEMM into a preallocated buffer, the recurrence
one small GEMM per step and direction into a preallocated gate buffer with the gate
arithmetic in place, and the state lives in preallocated arrays — nothing is allocated while
the engine runs. Constant weights are transposed and their biases folded once, at bind.
"""

from __future__ import annotations

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
    """[4*hidden, k] (gate rows i, o, f, c) → [groups][k][32]: group g holds columns
    i, o, f, c of hidden units 8g .. 8g+7 (zero past ``hidden``)."""
    k = m.shape[1]
    groups = -(-hidden // GROUP)
    padded = np.zeros((4, groups * GROUP, k), np.float32)
    padded[:, :hidden] = m.reshape(4, hidden, k)
    return np.ascontiguousarray(padded.reshape(4, groups, GROUP, k).transpose(1, 3, 0, 2)).reshape(
        groups, k, 4 * GROUP
    )


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
        s, c = self.spec, self.spec.cell
        d_count, hidden, layout = c.directions, c.hidden, c.layout
        if layout == 0:
            steps, batch = s.x_shape[0], s.x_shape[1]
        else:
            batch, steps = s.x_shape[0], s.x_shape[1]
        n_in = s.x_shape[2]
        hp = -(-hidden // GROUP) * GROUP
        x, w, r, b, lens, h0, c0, p = list(inputs) + [None] * (8 - len(inputs))
        outs = list(outputs) + [None] * (3 - len(outputs))
        y, y_h, y_c = outs[:3]
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
        lens_ = None
        if lens is not None:
            lens_ = np.ascontiguousarray(lens, np.int64)  # a constant (see recurrent_spec)
            if lens_.size and (lens_.min() < 0 or lens_.max() > steps):
                raise EdgeInferError(f"{s.op}: sequence_lens must be in [0, {steps}]")
            if np.all(lens_ == steps):
                lens_ = None  # every row runs every step: no masking
        groups = hp // GROUP
        wpack = alloc((d_count, groups, n_in, 4 * GROUP))
        rpack = alloc((d_count, groups, hidden, 4 * GROUP))
        bias = alloc((d_count, groups * 4 * GROUP))
        peep = alloc((d_count, 3, hp))
        peep_used = p is not None and (not _constant(p) or bool(np.any(p)))

        def pack() -> None:
            for k in range(d_count):
                wpack[k] = pack_gates(w[k], hidden)
                rpack[k] = pack_gates(r[k], hidden)
                bias[k] = pack_bias(None if b is None else b[k], hidden)
                if peep_used:
                    peep[k, :, :hidden] = p[k].reshape(3, hidden)

        if all(_constant(a) for a in (w, r, b, p)):
            pack()
        else:
            before.append(pack)
        proj = alloc((d_count, steps * batch, 4 * hp))
        work = alloc((d_count, 3 * batch * hp))
        # strides in floats: rows of x/proj, Y, states (one batch stride for all four)
        pts, pbs = (batch, 1) if layout == 0 else (1, steps)
        yts, ybs, ystep = (
            (d_count * batch * hidden, hidden, batch * hidden)
            if layout == 0
            else (d_count * hidden, steps * d_count * hidden, hidden)
        )
        sbs, sstep = (hidden, batch * hidden) if layout == 0 else (d_count * hidden, hidden)

        def at(a: np.ndarray | None, offset: int) -> int | None:
            return None if a is None else a.ctypes.data + 4 * offset

        calls = []
        for k in range(d_count):
            fields = dict(
                x=at(x_, 0),
                rows=steps * batch,
                inputs=n_in,
                wpack=at(wpack, k * wpack[0].size),
                bias=at(bias, k * bias[0].size),
                proj=at(proj, k * proj[0].size),
                rpack=at(rpack, k * rpack[0].size),
                peep=at(peep, k * peep[0].size) if peep_used else None,
                steps=steps,
                batch=batch,
                hidden=hidden,
                hp=hp,
                pts=pts,
                pbs=pbs,
                reverse=int(k == 1 or c.reverse_only),
                lens=None if lens_ is None else lens_.ctypes.data,
                h0=at(h0_, k * sstep),
                c0=at(c0_, k * sstep),
                sbs=sbs,
                y=at(y_, k * ystep),
                yts=yts,
                ybs=ybs,
                yh=at(yh_, k * sstep),
                yc=at(yc_, k * sstep),
                clip=c.clip or 0.0,
                input_forget=int(c.input_forget),
                work=at(work, k * work[0].size),
            )
            keep = (x_, h0_, c0_, y_, yh_, yc_, lens_, wpack, rpack, bias, peep, proj, work)
            calls.append(native.NativeCall("lstm_seq_f32", fields, keep))
        return calls, before, after


def _constant(a: np.ndarray | None) -> bool:
    return a is None or not a.flags.writeable
