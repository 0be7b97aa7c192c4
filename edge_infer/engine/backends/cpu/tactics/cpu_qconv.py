"""INT8 convolution (``edge_infer::QConv``) tactics.

- ``qconv_reference``: the registry's reference op (:func:`edge_infer.engine.ops.quantize
  .qconv`), the default and the self-check's yardstick.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_infer.engine.ops.quantize import qconv
from edge_infer.engine.tactics.base import Run, Scratch, Tactic
from edge_infer.engine.tactics.quantized import QConvSpec


class QConvReference(Tactic):
    """The reference op, as the layer ran before it had tactics (it allocates)."""

    name = "qconv_reference"

    def __init__(self, spec: QConvSpec) -> None:
        self.spec = spec

    @classmethod
    def applicable(cls, spec: QConvSpec) -> bool:
        return True

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        x, w, ws = inputs[0], inputs[1], inputs[2]
        b = inputs[3] if len(inputs) > 3 else None
        z = inputs[4] if len(inputs) > 4 else None
        out, attrs = outputs[0], self.spec.attrs()

        def run() -> None:
            np.copyto(out, qconv(x, w, ws, b, z, **attrs), casting="unsafe")

        return run


__all__ = ["QConvReference"]
