"""kernels/activation.cu: every fused activation standalone (Sigmoid among them) against the
engine's float64 reference (fused.py apply_activation). FP32: within 1e-5 of the output scale
(max |y|, at least 1); FP16 (computed in float, rounded once): within half an fp16 ulp
(2^-11 relative) plus that FP32 bound."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.cuda.params import activation as ac
from edge_infer.engine.ops.fused import ACTIVATIONS, apply_activation
from edge_infer.errors import BackendError

PARAMS = {"leaky_relu": [0.1], "clip": [-1.5, 4.0], "hard_sigmoid": [0.2, 0.5], "elu": [0.7]}
CASES = [(name, PARAMS.get(name, [])) for name in ACTIVATIONS] + [("gelu", [1.0])]


def _x(n: int) -> np.ndarray:
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n) * 4
    x[:6] = [-30.0, -9.0, 0.0, 1e-3, 9.0, 30.0]
    return x


@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n or 'none'}{p}" for n, p in CASES])
def test_activation_fp32(device, name, params) -> None:
    x = _x(517).astype(np.float32)
    y = device.empty(x.size, np.float32)
    device.run(ac.activation(device.to_device(x), y, name, params))
    expect = apply_activation(x.astype(np.float64), name, params)
    scale = max(1.0, float(np.abs(expect).max()))
    np.testing.assert_allclose(device.to_host(y), expect, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n or 'none'}{p}" for n, p in CASES])
def test_activation_fp16(device, name, params) -> None:
    x = _x(300).astype(np.float16)
    y = device.empty(x.size, np.float16)
    device.run(ac.activation(device.to_device(x), y, name, params))
    expect = apply_activation(x.astype(np.float64), name, params)
    got = device.to_host(y).astype(np.float64)
    bound = np.abs(expect) * 2.0**-11 + 1e-5 * max(1.0, float(np.abs(expect).max()))
    assert (np.abs(got - expect) <= bound).all(), np.abs(got - expect).max()


def test_codes_mirror_epilogue_cuh_and_cover_every_fused_activation() -> None:
    import re

    from edge_infer.cuda.activations import BY_NAME, EiAct, encode
    from edge_infer.cuda.library import KERNELS_DIR

    header = (KERNELS_DIR / "epilogue.cuh").read_text()
    declared = {m[0]: int(m[1]) for m in re.findall(r"EI_ACT_(\w+) = (\d+)", header)}
    declared.pop("COUNT")
    assert declared == {a.name: a.value for a in EiAct}
    assert set(BY_NAME) == set(ACTIVATIONS)
    assert encode("gelu", [1.0])[0] is EiAct.GELU_TANH and encode("gelu")[0] is EiAct.GELU
    assert encode("clip", [-1.0, 2.0]) == (EiAct.CLIP, -1.0, 2.0)
    with pytest.raises(BackendError, match="takes 2"):
        encode("clip", [1.0])
