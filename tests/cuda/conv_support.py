"""Shared pieces of the convolution kernel tests: cases, strided buffers, launch, references.

A :class:`Case` is one FusedConv layer (geometry, epilogue, and where its input and output
live: a channel slice of a larger buffer with padded rows, as concat elimination makes them).
The kernels run in the emulator (or on a GPU) and are compared with the engine's reference ops
in float64 (``edge_infer.engine.ops.fused.fused_conv``, ``quantize.qconv``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from edge_infer.cuda.params.conv import (
    ConvGeometry,
    ConvTactic,
    TensorView4,
    conv_params,
    tensor_view,
)
from edge_infer.engine.ops.fused import fused_conv
from edge_infer.engine.ops.quantize import qconv

#: every FusedConv activation with parameters that exercise it (fused.py: ACTIVATIONS)
ACTIVATION_CASES: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("", ()),
    ("relu", ()),
    ("leaky_relu", (0.1,)),
    ("clip", (-0.5, 0.75)),
    ("sigmoid", ()),
    ("silu", ()),
    ("hard_swish", ()),
    ("hard_sigmoid", (0.2, 0.5)),
    ("mish", ()),
    ("gelu", ()),
    ("gelu", (1.0,)),
    ("tanh", ()),
    ("elu", (0.7,)),
)


@dataclass(frozen=True)
class Case:
    """One convolution layer and the layout of its tensors.

    ``pads`` are ONNX's ``[top, left, bottom, right]``. ``x_slice``/``y_slice``: ``(channels
    before, channels after, extra columns per row)`` of the buffer the tensor is a view of.
    """

    n: int
    c: int
    h: int
    w: int
    k: int
    r: int = 3
    s: int = 3
    group: int = 1
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (1, 1, 1, 1)
    dilations: tuple[int, int] = (1, 1)
    activation: str = ""
    act_params: tuple[float, ...] = ()
    residual: str = "none"
    bias: bool = True
    x_slice: tuple[int, int, int] = (0, 0, 0)
    y_slice: tuple[int, int, int] = (0, 0, 0)
    seed: int = 0

    @property
    def w_shape(self) -> tuple[int, int, int, int]:
        return (self.k, self.c // self.group, self.r, self.s)

    def geometry(self) -> ConvGeometry:
        return ConvGeometry.from_conv(
            (self.n, self.c, self.h, self.w),
            self.w_shape,
            group=self.group,
            strides=self.strides,
            pads=self.pads,
            dilations=self.dilations,
        )

    def conv_attrs(self) -> dict:
        return {
            "group": self.group,
            "strides": list(self.strides),
            "pads": list(self.pads),
            "dilations": list(self.dilations),
        }

    def epilogue_attrs(self) -> dict:
        return {
            "activation": self.activation,
            "activation_params": list(self.act_params),
            "residual": self.residual,
        }


@dataclass
class Strided:
    """A tensor stored as a view into a larger buffer (``buffer`` owns the memory)."""

    buffer: np.ndarray
    index: tuple[slice, ...]
    offset: int

    @classmethod
    def make(
        cls, shape: Sequence[int], dtype: type, layout: tuple[int, int, int], fill: float = 0
    ) -> Strided:
        n, c, h, w = shape
        before, after, extra_w = layout
        buffer = np.full((n, before + c + after, h, w + extra_w), fill, dtype=dtype)
        index = (slice(None), slice(before, before + c), slice(None), slice(0, w))
        return cls(buffer, index, before * h * (w + extra_w))

    @classmethod
    def of(cls, array: np.ndarray, layout: tuple[int, int, int], fill: float = 0) -> Strided:
        out = cls.make(array.shape, array.dtype.type, layout, fill)
        out.view[...] = array
        return out

    @property
    def view(self) -> np.ndarray:
        return self.buffer[self.index]

    @property
    def address(self) -> int:
        return self.buffer.ctypes.data

    def tensor_view(self) -> TensorView4:
        strides = [s // self.buffer.itemsize for s in self.buffer.strides]
        return tensor_view(strides, self.offset)

    def outside(self) -> np.ndarray:
        """The buffer's elements that are not in the view (must stay untouched)."""
        mask = np.ones(self.buffer.shape, dtype=bool)
        mask[self.index] = False
        return self.buffer[mask]


#: the cases (by seed) the ASan/TSan runs keep: groups, strides, asymmetric pads, dilations,
#: both residuals, slices at an offset and stride, partial and multiple row tiles
SANITIZED_SEEDS = frozenset({2, 3})


def skip_when_sanitized(sanitized: bool, seed: int | None = None) -> None:
    """Under ASan/TSan keep every tactic on the :data:`SANITIZED_SEEDS` cases only.

    The activation matrix and the property tests read and write the same elements as those
    cases, so under the sanitizers they would add run time (the suite's budget) and no new
    memory-access pattern.
    """
    if sanitized and (seed is None or seed not in SANITIZED_SEEDS):
        pytest.skip("runs in the plain emulator only (see conv_support.SANITIZED_SEEDS)")


def random_float(
    rng: np.random.Generator, shape: Sequence[int], scale: float = 1.0, dtype: type = np.float32
) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(dtype)


def device_address(array: Any) -> int:
    """The device address of an array of the ``device`` fixture (numpy in emulation)."""
    return array.ctypes.data if isinstance(array, np.ndarray) else int(array.gpudata)


def launch_conv(
    device: Any,
    tactic: ConvTactic,
    case: Case,
    *,
    x: Strided,
    weight: np.ndarray,
    bias: np.ndarray | None,
    z: Strided | None,
    y: Strided,
    w_scale: np.ndarray | None = None,
    x_scale: float = 0.0,
    y_scale: float = 0.0,
    z_scale: float = 0.0,
) -> None:
    """Fill a :class:`ConvParams` for ``case``, run ``tactic`` on ``device`` (the fixture:
    emulator or GPU) and copy the output buffer back into ``y.buffer``."""
    kept: list[Any] = []

    def upload(host: np.ndarray | None) -> int | None:
        if host is None:
            return None
        kept.append(device.to_device(host))
        return device_address(kept[-1])

    geom = case.geometry()
    y_dev = device.to_device(y.buffer)
    p = conv_params(
        geom,
        x=upload(x.buffer),
        x_view=x.tensor_view(),
        weight=upload(weight),
        y=device_address(y_dev),
        y_view=y.tensor_view(),
        bias=upload(bias),
        z=None if z is None else upload(z.buffer),
        z_view=None if z is None else z.tensor_view(),
        activation=case.activation,
        activation_params=case.act_params,
        residual=case.residual,
        w_scale=upload(w_scale),
        x_scale=x_scale,
        y_scale=y_scale,
        z_scale=z_scale,
    )
    device.run(tactic.call(geom, p))
    y.buffer[...] = device.to_host(y_dev)


def output_shape(case: Case) -> tuple[int, int, int, int]:
    g = case.geometry()
    return (g.n, g.k, g.p, g.q)


def fp16_tolerance(ref16: np.ndarray, scale: float) -> np.ndarray:
    """One FP16 ulp of the reference value plus 1e-5 of the output scale (see the tests)."""
    return np.spacing(np.abs(ref16.astype(np.float16))).astype(np.float64) + 1e-5 * scale


# -- one layer per precision: inputs, the kernel's output and the reference --------------------


def _reference(
    case: Case, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, z: np.ndarray | None
) -> np.ndarray:
    """FusedConv in float64 (the engine's reference kernel)."""
    f64 = np.float64
    return fused_conv(
        x.astype(f64),
        w.astype(f64),
        None if b is None else b.astype(f64),
        None if z is None else z.astype(f64),
        **case.conv_attrs(),
        **case.epilogue_attrs(),
    )


def _inputs(case: Case, dtype: type) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(case.seed)
    fan_in = (case.c // case.group) * case.r * case.s
    x = random_float(rng, (case.n, case.c, case.h, case.w), 1.0, dtype)
    w = random_float(rng, case.w_shape, 1.5 / np.sqrt(fan_in), dtype)
    # bias is float in every float kernel; FP16 layers store it FP16, hence the rounding
    b = random_float(rng, (case.k,), 0.5, dtype).astype(np.float32) if case.bias else None
    z = random_float(rng, output_shape(case), 1.0, dtype) if case.residual != "none" else None
    return x, w, b, z


def run_float(device: Any, tactic: ConvTactic, case: Case) -> tuple[Strided, np.ndarray]:
    """Run an FP32 or FP16 tactic on ``case``: ``(output, float64 reference)``.

    FP16 inputs are FP16 values, so the reference sees exactly what the kernel sees; its
    float64 result is rounded to FP16 once, as the engine's Fp16Layer stores it.
    """
    dtype = np.float32 if tactic.out == "f32" else np.float16
    x, w, b, z = _inputs(case, dtype)
    ref = _reference(case, x, w, b, z)
    xs = Strided.of(x, case.x_slice)
    zs = None if z is None else Strided.of(z, case.y_slice[::-1])  # its own, other layout
    y = Strided.make(output_shape(case), dtype, case.y_slice, np.nan)
    launch_conv(device, tactic, case, x=xs, weight=w, bias=b, z=zs, y=y)
    assert np.isnan(y.outside()).all(), "the kernel wrote outside its output view"
    return y, ref if dtype == np.float32 else ref.astype(np.float16).astype(np.float64)


def check_fp32(y: Strided, ref: np.ndarray) -> None:
    """FP32: max |y - ref| <= 1e-5 x the output scale (max |ref|)."""
    scale = max(float(np.abs(ref).max()), 1e-30)
    err = float(np.abs(y.view.astype(np.float64) - ref).max())
    assert err <= 1e-5 * scale, f"max error {err:.3g} > 1e-5 x output scale {scale:.3g}"


def check_fp16(y: Strided, ref16: np.ndarray) -> None:
    """FP16: |y - ref| <= one FP16 ulp of ref + 1e-5 x the output scale, everywhere.

    Kernel and reference round the same value once to FP16; the kernel's value carries FP32
    accumulation and activation error (~1e-6 relative), so when it lies near the midpoint of
    two FP16 neighbours it may round to the other one: one ulp. The 1e-5 x scale term covers
    outputs near zero, where the FP32 accumulation error of large cancelling terms exceeds an
    FP16 ulp of the tiny result.
    """
    scale = max(float(np.abs(ref16).max()), 1e-30)
    err = np.abs(y.view.astype(np.float64) - ref16)
    bound = fp16_tolerance(ref16, scale)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert (err <= bound).all(), (
        f"FP16 error {err[worst]:.3g} > {bound[worst]:.3g} at {worst} (ref {ref16[worst]:.6g})"
    )


#: int8 test scales (float32 values, as the engine stores them)
X_SCALE, Y_SCALE, Z_SCALE = (
    float(np.float32(0.04)),
    float(np.float32(0.05)),
    float(np.float32(0.03)),
)

#: activations whose FP32 forms are exact (no transcendental): bit-equal int8->fp32 output
EXACT_ACTIVATIONS = ("", "relu", "leaky_relu", "clip")


def run_int8(device: Any, tactic: ConvTactic, case: Case) -> tuple[Strided, np.ndarray]:
    """Run an INT8 tactic on ``case``: ``(output, reference in the output's type)``.

    The reference is the engine's QConv on int8 storage, as an INT8 engine runs it: X int8 at
    x_scale read as is, an int8 residual dequantized with z_scale, the output stored as
    ``out_precision`` int8 (out_scale), fp16 or fp32.
    """
    rng = np.random.default_rng(case.seed)
    xq = rng.integers(-128, 128, (case.n, case.c, case.h, case.w)).astype(np.int8)
    wq = rng.integers(-127, 128, case.w_shape).astype(np.int8)
    w_scale = (rng.uniform(0.5, 1.5, case.k) * 0.01).astype(np.float32)
    bq = rng.integers(-3000, 3000, case.k).astype(np.int32) if case.bias else None
    out_dtype = {"s8": np.int8, "f16": np.float16, "f32": np.float32}[tactic.out]
    z_store = None
    if case.residual != "none":
        if tactic.out == "s8":
            z_store = rng.integers(-128, 128, output_shape(case)).astype(np.int8)
        else:
            z_store = random_float(rng, output_shape(case), 1.0, out_dtype)
    out_precision = {"s8": "int8", "f16": "fp16", "f32": "fp32"}[tactic.out]
    ref = qconv(
        xq,
        wq,
        w_scale,
        bq,
        z_store,
        x_scale=X_SCALE,
        out_precision=out_precision,
        out_scale=Y_SCALE,
        z_scale=Z_SCALE,
        **case.conv_attrs(),
        **case.epilogue_attrs(),
    )

    xs = Strided.of(xq, case.x_slice)
    zs = None if z_store is None else Strided.of(z_store, case.y_slice[::-1])
    sentinel = 99 if tactic.out == "s8" else np.nan
    y = Strided.make(output_shape(case), out_dtype, case.y_slice, sentinel)
    launch_conv(
        device,
        tactic,
        case,
        x=xs,
        weight=wq,
        bias=bq,
        z=zs,
        y=y,
        w_scale=w_scale,
        x_scale=X_SCALE,
        y_scale=Y_SCALE,
        z_scale=Z_SCALE,
    )
    outside = y.outside()
    assert (outside == 99).all() if tactic.out == "s8" else np.isnan(outside).all(), (
        "the kernel wrote outside its output view"
    )
    return y, np.asarray(ref, np.float64)


def check_int8(tactic: ConvTactic, case: Case, y: Strided, ref: np.ndarray) -> None:
    """INT8 tolerances (docs/cuda-kernels.md).

    - s8 output: equal with the exact activations (the kernel's quantization makes the
      reference's float64 rounding decision, ties included); within 1 LSB with the
      transcendental ones, whose FP32 value may differ from numpy's by an ulp next to a
      rounding boundary.
    - f32 output: bit-equal with the exact activations (the requantization is the reference's
      double multiply rounded once); the transcendental ones within 1e-6 x the output scale
      (expf/tanhf/erff versus numpy, a few FP32 ulps).
    - f16 output: one FP16 ulp, as :func:`check_fp16`.
    """
    got = y.view.astype(np.float64)
    if tactic.out == "s8":
        diff = np.abs(got - ref)
        limit = 0 if case.activation in EXACT_ACTIVATIONS else 1
        assert diff.max() <= limit, f"int8 output off by {diff.max():.0f} LSB ({limit} allowed)"
    elif tactic.out == "f32":
        if case.activation in EXACT_ACTIVATIONS:
            bad = np.flatnonzero(got != ref)
            assert bad.size == 0, f"{bad.size} outputs differ from the reference"
        else:
            scale = max(float(np.abs(ref).max()), 1e-30)
            assert np.abs(got - ref).max() <= 1e-6 * scale
    else:
        check_fp16(y, ref)
