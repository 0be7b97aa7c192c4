"""The arithmetic of ONNX's recurrent layers (LSTM, GRU, RNN), shared by the reference kernels
(:mod:`edge_infer.engine.ops.recurrent`) and the CPU backend's recurrent tactic.

A :class:`RecurrentRunner` is made once for fixed shapes with an allocator for its buffers; its
:meth:`~RecurrentRunner.run` then writes the outputs without allocating:

- the input projection ``X @ W^T + biases`` of **every time step and both directions is one
  GEMM** (a ``[T*B, I] x [I, D*G*H]`` product) — the only large product of the layer;
- the recurrence then does, per step and direction, one small ``[B, H] x [H, G*H]`` GEMM into
  a preallocated gate buffer and the gate arithmetic in place (ufuncs with ``out=``);
- ``sequence_lens``: batch row ``b`` is active at time ``t`` when ``t < sequence_lens[b]``.
  An inactive row keeps its state (before its first step in reverse, after its last step
  forward) and writes zeros to ``Y``; a row of length 0 ends in a zero state — what
  onnxruntime does.

Gate order is ONNX's: LSTM ``i, o, f, c`` (peepholes ``i, o, f``), GRU ``z, r, h``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_infer.engine.ops.recurrent_activations import Activation, parse_activations
from edge_infer.errors import EdgeInferError

Allocate = Callable[[tuple[int, ...], Any], np.ndarray]

#: gates per cell
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}

# -- the layer ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellSpec:
    """The attributes of one recurrent layer, validated."""

    op: str  # LSTM | GRU | RNN
    hidden: int
    directions: int
    reverse_only: bool
    layout: int
    activations: list[list[Activation]]
    clip: float | None
    input_forget: bool = False
    linear_before_reset: bool = False

    @property
    def gates(self) -> int:
        return GATES[self.op]


def cell_spec(
    op: str,
    *,
    hidden_size: int | None,
    R_shape: Sequence[int],
    direction: str = "forward",
    layout: int = 0,
    activations: Sequence[str] | None = None,
    activation_alpha: Sequence[float] | None = None,
    activation_beta: Sequence[float] | None = None,
    clip: float | None = None,
    input_forget: int = 0,
    linear_before_reset: int = 0,
) -> CellSpec:
    """Validate a recurrent node's attributes against the shape of R (see the ONNX schema)."""
    if direction not in ("forward", "reverse", "bidirectional"):
        raise EdgeInferError(
            f"{op}: direction must be forward, reverse or bidirectional, got {direction!r}"
        )
    directions = 2 if direction == "bidirectional" else 1
    hidden = int(R_shape[-1])
    if hidden_size is not None and int(hidden_size) != hidden:
        raise EdgeInferError(f"{op}: hidden_size={hidden_size} but R has hidden size {hidden}")
    if int(R_shape[0]) != directions or int(R_shape[1]) != GATES[op] * hidden:
        raise EdgeInferError(
            f"{op}: R must be [{directions}, {GATES[op]}*{hidden}, {hidden}] "
            f"for direction={direction!r}, got {list(R_shape)}"
        )
    if layout not in (0, 1):
        raise EdgeInferError(f"{op}: layout must be 0 or 1, got {layout}")
    if clip is not None and not float(clip) > 0.0:
        raise EdgeInferError(f"{op}: clip must be positive, got {clip}")
    acts = parse_activations(op, directions, activations, activation_alpha, activation_beta)
    return CellSpec(
        op,
        hidden,
        directions,
        direction == "reverse",
        int(layout),
        acts,
        None if clip is None else float(clip),
        bool(input_forget),
        bool(linear_before_reset),
    )


class RecurrentRunner:
    """One recurrent layer at fixed ``(T, B, I)`` shapes, buffers from ``allocate``.

    Call :meth:`load_weights` (once when W, R, B and P are constants), then :meth:`run`;
    ``run`` allocates nothing. Arithmetic is in ``dtype`` (float32 or float64).
    """

    def __init__(
        self, spec: CellSpec, x_shape: Sequence[int], dtype: Any, allocate: Allocate
    ) -> None:
        self.spec = spec
        if spec.layout == 0:
            self.steps, self.batch = int(x_shape[0]), int(x_shape[1])
        else:
            self.batch, self.steps = int(x_shape[0]), int(x_shape[1])
        self.inputs = int(x_shape[2])
        self.dtype = np.dtype(dtype)
        d, g, h, b, t = spec.directions, spec.gates, spec.hidden, self.batch, self.steps
        dt = self.dtype
        self.w_t = allocate((self.inputs, d * g * h), dt)  # W^T of both directions side by side
        self.bias = allocate((d * g * h,), dt)  # biases folded into the projection
        # recurrent weights, transposed; GRU without linear_before_reset splits z,r from h
        split = spec.op == "GRU" and not spec.linear_before_reset
        self.r_t = allocate((d, h, (2 if split else g) * h), dt)
        self.r_h = allocate((d, h, h), dt) if split else None
        self.rb_h = allocate((d, h), dt) if spec.op == "GRU" else None
        self.peep = allocate((d, 3, h), dt) if spec.op == "LSTM" else None
        self.has_peep = False
        self.proj = allocate((t * b, d * g * h), dt)
        self.gates = allocate((b, (2 if split else g) * h), dt)
        self.cand = allocate((b, h), dt) if spec.op == "GRU" else None
        self.tmp2 = allocate((b, 2 * h), dt) if spec.op == "GRU" else None
        self.tmp = allocate((b, h), dt)
        self.h_new = allocate((b, h), dt)
        self.c_new = allocate((b, h), dt) if spec.op == "LSTM" else None
        self.h = allocate((d, b, h), dt)
        self.c = allocate((d, b, h), dt) if spec.op == "LSTM" else None
        self.active = allocate((t, b, 1), np.bool_)
        self.active_f = allocate((t, b, 1), dt)
        self.times = np.arange(t).reshape(t, 1, 1)
        self.lens = allocate((b,), np.int64)
        self.nonempty = allocate((b, 1), dt)  # 0.0 for rows of length 0

    # -- weights ------------------------------------------------------------------------------

    def load_weights(
        self, W: np.ndarray, R: np.ndarray, B: np.ndarray | None, P: np.ndarray | None
    ) -> None:
        """Transpose and fold W, R, B (and LSTM's P) into the runner's weight buffers."""
        spec, d, g, h = self.spec, self.spec.directions, self.spec.gates, self.spec.hidden
        for k in range(d):
            np.copyto(self.w_t[:, k * g * h : (k + 1) * g * h], np.transpose(W[k]))
            if self.r_h is not None:
                np.copyto(self.r_t[k], np.transpose(R[k, : 2 * h]))
                np.copyto(self.r_h[k], np.transpose(R[k, 2 * h :]))
            else:
                np.copyto(self.r_t[k], np.transpose(R[k]))
        self.bias.fill(0)
        if self.rb_h is not None:
            self.rb_h.fill(0)
        if B is not None:
            for k in range(d):
                wb, rb = B[k, : g * h], B[k, g * h :]
                dst = self.bias[k * g * h : (k + 1) * g * h]
                np.add(dst, wb, out=dst)
                if spec.op == "GRU":
                    # z and r take both biases in the projection; Rbh goes inside the reset
                    # product with linear_before_reset, next to Wbh without it
                    np.add(dst[: 2 * h], rb[: 2 * h], out=dst[: 2 * h])
                    if spec.linear_before_reset:
                        np.copyto(self.rb_h[k], rb[2 * h :])  # type: ignore[index]
                    else:
                        np.add(dst[2 * h :], rb[2 * h :], out=dst[2 * h :])
                else:
                    np.add(dst, rb, out=dst)
        if self.peep is not None:
            self.has_peep = P is not None and bool(np.any(P))
            if P is not None:
                np.copyto(self.peep, np.reshape(P, (d, 3, h)))

    # -- running ------------------------------------------------------------------------------

    def run(
        self,
        X: np.ndarray,
        sequence_lens: np.ndarray | None,
        initial_h: np.ndarray | None,
        initial_c: np.ndarray | None,
        Y: np.ndarray | None,
        Y_h: np.ndarray | None,
        Y_c: np.ndarray | None,
    ) -> None:
        """Compute the layer; ``Y``, ``Y_h``, ``Y_c`` (any may be None) are written in place."""
        spec, t, b = self.spec, self.steps, self.batch
        np.matmul(X.reshape(-1, self.inputs), self.w_t, out=self.proj)
        np.add(self.proj, self.bias, out=self.proj)
        proj = self.proj.reshape((t, b, -1) if spec.layout == 0 else (b, t, -1))
        masked = sequence_lens is not None and bool(np.any(sequence_lens != t))
        if masked:
            np.copyto(self.lens, sequence_lens)  # type: ignore[arg-type]
            np.less(self.times, self.lens.reshape(1, b, 1), out=self.active)
            np.copyto(self.active_f, self.active)
        self._initial_state(initial_h, self.h)
        if self.c is not None:
            self._initial_state(initial_c, self.c)
        g = spec.gates * spec.hidden
        for d in range(spec.directions):
            reverse = d == 1 or spec.reverse_only
            xw = proj[..., d * g : (d + 1) * g]
            y = None
            if Y is not None:
                y = Y[:, d] if spec.layout == 0 else Y[:, :, d]
            for step in range(t):
                time = t - 1 - step if reverse else step
                x_t = xw[time] if spec.layout == 0 else xw[:, time]
                if spec.op == "LSTM":
                    self._lstm_step(d, x_t)
                elif spec.op == "GRU":
                    self._gru_step(d, x_t)
                else:
                    self._rnn_step(d, x_t)
                self._commit(d, time, y, masked)
        if masked:  # a sequence of length 0 ends in a zero state (as onnxruntime's)
            np.greater(self.lens.reshape(b, 1), 0, out=self.nonempty)
            for state in (self.h, self.c):
                if state is not None:
                    np.multiply(state, self.nonempty, out=state)
        for state, out in ((self.h, Y_h), (self.c, Y_c)):
            if out is not None and state is not None:
                np.copyto(out, state if spec.layout == 0 else np.swapaxes(state, 0, 1))

    def _initial_state(self, given: np.ndarray | None, state: np.ndarray) -> None:
        if given is None:
            state.fill(0)
        else:
            np.copyto(state, given if self.spec.layout == 0 else np.swapaxes(given, 0, 1))

    def _commit(self, d: int, time: int, y: np.ndarray | None, masked: bool) -> None:
        """New state → state (rows still active) and → Y (zeros for inactive rows)."""
        h, c = self.h[d], None if self.c is None else self.c[d]
        if masked:
            active = self.active[time]
            np.copyto(h, self.h_new, where=active)
            if c is not None:
                np.copyto(c, self.c_new, where=active)  # type: ignore[arg-type]
            if y is not None:
                y_t = y[time] if self.spec.layout == 0 else y[:, time]
                np.multiply(self.h_new, self.active_f[time], out=y_t)
        else:
            np.copyto(h, self.h_new)
            if c is not None:
                np.copyto(c, self.c_new)  # type: ignore[arg-type]
            if y is not None:
                np.copyto(y[time] if self.spec.layout == 0 else y[:, time], self.h_new)

    def _clip(self, x: np.ndarray) -> None:
        if self.spec.clip is not None:
            np.clip(x, -self.spec.clip, self.spec.clip, out=x)

    def _lstm_step(self, d: int, x_t: np.ndarray) -> None:
        n, tmp, gates = self.spec.hidden, self.tmp, self.gates
        f_act, g_act, h_act = self.spec.activations[d]
        h, c, c_new, h_new = self.h[d], self.c[d], self.c_new, self.h_new  # type: ignore[index]
        np.matmul(h, self.r_t[d], out=gates)
        np.add(gates, x_t, out=gates)
        i, o, f, cand = (gates[:, k * n : (k + 1) * n] for k in range(4))
        if self.has_peep:
            p_i, p_o, p_f = self.peep[d]  # type: ignore[index]
            np.multiply(c, p_i, out=tmp)
            np.add(i, tmp, out=i)
            np.multiply(c, p_f, out=tmp)
            np.add(f, tmp, out=f)
        self._clip(i)
        f_act(i, tmp)
        if self.spec.input_forget:  # coupled gates: f = 1 - i
            np.subtract(1.0, i, out=f)
        else:
            self._clip(f)
            f_act(f, tmp)
        self._clip(cand)
        g_act(cand, tmp)
        np.multiply(f, c, out=c_new)  # type: ignore[arg-type]
        np.multiply(i, cand, out=tmp)
        np.add(c_new, tmp, out=c_new)  # type: ignore[arg-type]
        if self.has_peep:
            np.multiply(c_new, p_o, out=tmp)  # type: ignore[arg-type]
            np.add(o, tmp, out=o)
        self._clip(o)
        f_act(o, tmp)
        np.copyto(h_new, c_new)  # type: ignore[arg-type]
        h_act(h_new, tmp)
        np.multiply(h_new, o, out=h_new)

    def _gru_step(self, d: int, x_t: np.ndarray) -> None:
        n, tmp, cand, h_new = self.spec.hidden, self.tmp, self.cand, self.h_new
        f_act, g_act = self.spec.activations[d]
        h = self.h[d]
        if self.r_h is not None:  # h~ = g(x Wh + (r * H) Rh + Wbh + Rbh)
            zr = self.gates
            np.matmul(h, self.r_t[d], out=zr)
            np.add(zr, x_t[:, : 2 * n], out=zr)
            self._clip(zr)
            f_act(zr, self.tmp2)
            z, r = zr[:, :n], zr[:, n:]
            np.multiply(r, h, out=tmp)
            np.matmul(tmp, self.r_h[d], out=cand)
        else:  # linear_before_reset: h~ = g(x Wh + r * (H Rh + Rbh) + Wbh)
            gates = self.gates
            np.matmul(h, self.r_t[d], out=gates)
            zr = gates[:, : 2 * n]
            np.add(zr, x_t[:, : 2 * n], out=zr)
            self._clip(zr)
            f_act(zr, self.tmp2)
            z, r = zr[:, :n], zr[:, n:]
            np.add(gates[:, 2 * n :], self.rb_h[d], out=cand)  # type: ignore[index]
            np.multiply(cand, r, out=cand)  # type: ignore[arg-type]
        np.add(cand, x_t[:, 2 * n :], out=cand)  # type: ignore[arg-type]
        self._clip(cand)  # type: ignore[arg-type]
        g_act(cand, tmp)
        np.subtract(h, cand, out=h_new)  # H = (1 - z) h~ + z H = h~ + z (H - h~)
        np.multiply(h_new, z, out=h_new)
        np.add(h_new, cand, out=h_new)

    def _rnn_step(self, d: int, x_t: np.ndarray) -> None:
        (f_act,) = self.spec.activations[d]
        np.matmul(self.h[d], self.r_t[d], out=self.h_new)
        np.add(self.h_new, x_t, out=self.h_new)
        self._clip(self.h_new)
        f_act(self.h_new, self.tmp)
