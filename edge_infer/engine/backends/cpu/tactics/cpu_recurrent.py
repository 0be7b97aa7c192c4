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

from edge_infer.engine.ops.recurrent_cells import RecurrentRunner
from edge_infer.engine.tactics.base import Run, Scratch, Tactic
from edge_infer.engine.tactics.recurrent import RecurrentSpec


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
