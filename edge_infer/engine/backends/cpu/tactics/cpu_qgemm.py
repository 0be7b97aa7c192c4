"""INT8 fully connected (``edge_infer::QGemm``) tactics.

- ``qgemm_prepared``: the reference's arithmetic with its float32 weights converted once, at
  bind, instead of at every run (the reference converts ``W`` each call: for MobileNetV2's
  1280 x 1000 classifier that is most of its time). The products of int8 values and their
  float32 sums over at most ``EXACT_F32_TERMS`` terms are exact integers, so the result is
  the reference's bit for bit, whatever order the GEMM adds them in.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_infer.engine.ops.quantize import EXACT_F32_TERMS, _store, quantize_activation
from edge_infer.engine.tactics.base import Run, Scratch, Tactic
from edge_infer.engine.tactics.quantized import QGemmSpec


class QGemmPrepared(Tactic):
    """The reference QGemm with float32 weight chunks prepared at bind."""

    name = "qgemm_prepared"

    def __init__(self, spec: QGemmSpec) -> None:
        self.spec = spec
        k = spec.weight.shape[1]
        w32 = np.asarray(spec.weight, np.float32)
        #: transposed chunks of at most EXACT_F32_TERMS input terms: [K_chunk, N]
        self.chunks = [
            (c, np.ascontiguousarray(w32[:, c : c + EXACT_F32_TERMS].T))
            for c in range(0, k, EXACT_F32_TERMS)
        ]
        self.bias = None if spec.bias is None else np.asarray(spec.bias, np.float64)
        self.mult = float(spec.x_scale) * np.asarray(spec.w_scale, np.float64)

    @classmethod
    def applicable(cls, spec: QGemmSpec) -> bool:
        return np.dtype(spec.x_dtype) in (np.dtype(np.int8), np.dtype(np.float32))

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        s = self.spec
        x, out = inputs[0], outputs[0]
        n, k = s.weight.shape

        def run() -> None:
            flat = np.reshape(x, (-1, k))
            xq = flat if flat.dtype == np.int8 else quantize_activation(flat, s.x_scale)
            x32 = np.asarray(xq, np.float32)
            acc = np.zeros((x32.shape[0], n), np.float64)
            for c, wt in self.chunks:
                acc += x32[:, c : c + EXACT_F32_TERMS] @ wt
            if self.bias is not None:
                acc += self.bias
            y = (acc * self.mult).astype(np.float32)
            np.copyto(out, _store(y.reshape(out.shape), s.out_precision, s.out_scale))

        return run


__all__ = ["QGemmPrepared"]
