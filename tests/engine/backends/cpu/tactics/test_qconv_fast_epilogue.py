"""qconv_native's float32 int8 epilogue (kernels/conv_int8.c fastq) against the reference.

For an int8 output with no activation, relu or clip, and no residual or an int8 one added
before the activation, the kernel takes the quotient y / out_scale in float32 and falls back
to the reference's double arithmetic where it lies near a half. These layers put many
outputs within about 1e-6 of a half, on either side (y = acc * out_scale / 2 rounded to
float32, plus an int8 residual at about out_scale), where a float32 quotient without the
fallback rounds the wrong way on 9-25 % of them: every path must still match the
reference bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics.cpu_qconv import QConvNative
from edge_infer.engine.ops.quantize import qconv
from edge_infer.engine.tactics.quantized import QConvSpec
from tests.engine.backends.cpu.tactics.test_qconv_native import (
    _PATH_FEATURES,
    PATHS,
    _macros,
    _qconv_driver,
    path_library,
    run_native,
)

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

# act, residual: the epilogues the float32 path takes (and one it does not, for contrast)
EPILOGUES = [
    (("", ()), "none"),
    (("relu", ()), "none"),
    (("clip", (0.0, 3.0)), "none"),
    (("", ()), "pre"),
    (("relu", ()), "pre"),
    (("clip", (-1.0, 2.5)), "pre"),
    (("relu", ()), "post"),
]
# x shape, Cout, kernel, strides, pads: a map of 14 x 14 (196 = 3 x 64 + 4: a short last
# tile) and a padded 3 x 3 with dropped grid columns
CONVS = [
    ((1, 16, 14, 14), 20, (1, 1), (1, 1), (0, 0, 0, 0)),
    ((2, 8, 9, 11), 13, (3, 3), (1, 1), (1, 1, 1, 1)),
]


def near_half_case(conv: tuple, act: tuple, residual: str, seed: int) -> tuple[QConvSpec, list]:
    """mult = x_scale * w_scale = out_scale / 2 exactly: y / out_scale = acc / 2 (+ zq) up to
    the float32 roundings of y and z."""
    x_shape, cout, kernel, strides, pads = conv
    rng = np.random.default_rng(seed)
    n, cin, h, w = x_shape
    kh, kw = kernel
    ho = (h + pads[0] + pads[2] - kh) // strides[0] + 1
    wo = (w + pads[1] + pads[3] - kw) // strides[1] + 1
    out_shape = (n, cout, ho, wo)
    x_scale = np.float32(0.05)
    w_scale = np.full(cout, 0.37, np.float32)
    out_scale = 2.0 * float(x_scale) * float(w_scale[0])  # exact in double
    weight = rng.integers(-3, 4, (cout, cin, kh, kw)).astype(np.int8)
    x = rng.integers(-4, 5, x_shape).astype(np.int8)
    bias = rng.integers(-40, 41, cout).astype(np.int32)
    z, z_scale = None, 0.0
    if residual != "none":
        z = rng.integers(-60, 61, out_shape).astype(np.int8)
        z_scale = float(np.float32(out_scale))  # z / out_scale = zq (1 + about 1e-8)
    spec = QConvSpec(
        x_shape=x_shape, x_dtype=np.dtype(np.int8), out_shape=out_shape, weight=weight,
        w_scale=w_scale, bias=bias, x_scale=float(x_scale), strides=strides, pads=pads,
        dilations=(1, 1), group=1, activation=act[0], activation_params=act[1],
        residual=residual, z_dtype=None if z is None else np.dtype(np.int8), z_scale=z_scale,
        out_precision="int8", out_scale=out_scale,
    )  # fmt: skip
    return spec, [x, weight, w_scale, bias, z]


def cases() -> list[tuple[str, QConvSpec, list, np.ndarray]]:
    out = []
    for k, (conv, (act, residual)) in enumerate((c, e) for c in CONVS for e in EPILOGUES):
        spec, inputs = near_half_case(conv, act, residual, seed=k)
        want = qconv(*inputs, **spec.attrs())
        out.append((f"{conv[0]} k{conv[2][0]} {act[0] or 'none'} {residual}", spec, inputs, want))
    return out


def near_halves(spec: QConvSpec, inputs: list) -> float:
    """Fraction of the outputs whose exact quotient y / out_scale is within 1e-4 of a half
    (not saturated, and after the activation)."""
    attrs = {**spec.attrs(), "out_precision": "fp32"}
    y = qconv(*inputs, **attrs).astype(np.float64) / spec.out_scale
    frac = np.abs(y - np.floor(y) - 0.5)
    return float(((frac < 1e-4) & (np.abs(y) < 127)).mean())


def test_the_cases_sit_on_near_halves() -> None:
    """The yardstick: most outputs are near-ties, and the float32 quotient misrounds some."""
    for name, spec, inputs, _ in cases():
        assert near_halves(spec, inputs) > 0.15, name


def test_host_library_matches_bit_for_bit() -> None:
    for name, spec, inputs, want in cases():
        for workers in (1, 2):
            np.testing.assert_array_equal(run_native(spec, inputs, workers), want, err_msg=name)


@pytest.fixture(scope="module", params=sorted(PATHS), ids=lambda p: PATHS[p])
def path_lib(request, tmp_path_factory):
    macros = _macros()
    if not all(f" {m} " in macros for m in _PATH_FEATURES.get(request.param, ())):
        pytest.skip(f"this CPU cannot run the {PATHS[request.param]} path")
    return path_library(request.param, tmp_path_factory.mktemp("qconv-fast"))


def test_every_path_matches_bit_for_bit(path_lib, monkeypatch) -> None:
    monkeypatch.setattr(native, "library", lambda: path_lib)
    for name, spec, inputs, want in cases():
        np.testing.assert_array_equal(run_native(spec, inputs), want, err_msg=name)


def test_aarch64_sdot_path(tmp_path) -> None:
    from tests.engine.backends.cpu.aarch64 import replay
    from tests.engine.backends.cpu.aarch64.test_aarch64_kernels import emulate

    exe = _qconv_driver(tmp_path)
    recorded = []
    for name, spec, inputs, want in cases():
        out = np.empty(spec.out_shape, np.int8)
        out.view(np.uint8).fill(0x55)  # unwritten outputs show
        arrays = [a for a in inputs if isinstance(a, np.ndarray)]
        with replay.recording(name, arrays, out) as rec:
            QConvNative(spec).bind(inputs, [out], ScratchPool())()
        recorded.append((rec, want))
    replay.write(tmp_path / "calls.bin", [r for r, _ in recorded])
    emulate(exe, "replay", str(tmp_path / "calls.bin"), str(tmp_path / "out.bin"))
    regions = replay.read(tmp_path / "out.bin")
    first = 0
    for rec, want in recorded:
        got = rec.output(regions[first : first + len(rec.regions)])
        first += len(rec.regions)
        np.testing.assert_array_equal(got, want, err_msg=f"aarch64 {rec.name}")
