"""``bench/int8_vs_ort.py --old-kernels``: a kernel folder that reads the engine's bound
layouts differently (a tactic's packing changed since) is refused, not timed on garbage."""

from __future__ import annotations

import numpy as np
import pytest

from bench.int8_vs_ort import _check_same


def test_old_kernels_must_compute_what_the_new_ones_do() -> None:
    rng = np.random.default_rng(0)
    new = {"logits": rng.normal(size=(1, 10)).astype(np.float32)}
    _check_same(new, {"logits": new["logits"] * (1 + 1e-4)})  # float rounding: accepted
    wrong = {"logits": new["logits"] + 0.5 * np.abs(new["logits"]).max()}
    with pytest.raises(SystemExit, match="'logits' differs from the new kernels'"):
        _check_same(new, wrong)
