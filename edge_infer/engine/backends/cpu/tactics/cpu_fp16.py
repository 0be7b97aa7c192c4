"""FP16 layers (``edge_infer::Fp16Layer``) on the CPU: the FP32 kernels with float16 storage.

The CPU's fast kernels compute in float32, so an FP16 layer runs as its FP32 implementation
between conversions (:mod:`..half`): float16 inputs widened into float32 scratch (exact),
float32 inputs the layer rounds (``round_inputs``) rounded to float16's values, weights
upcast once at bind, and each float output rounded to nearest even float16 — stored in
float16, or in float32 for the outputs the engine keeps in float32. Those are the reference's
rounding points (ops/quantize.py ``fp16_layer``), so only the FP32 kernel's summation order
differs from it.

Float16 in the kernels themselves (``half_io``): those conversions are whole passes over the
layer's tensors. An FP32 convolution tactic whose kernels can read and write float16 storage
sets ``half_io: ClassVar[bool] = True``; its ``fp16_`` form then gives it the float16 arrays
directly — float16 inputs (the residual input too) and float16 outputs, no scratch, no
passes — while float32 inputs the layer rounds still arrive rounded into float32 scratch
(except the first input of a tactic with ``rounds_input``, ``stem_native``: its ``round_x``
set, it rounds the image as it lays it out), and float32 outputs are still float32 arrays
rounded in place afterwards. The contract: its
run must write exactly the bits of the wrapper's route, widen → the FP32 kernel →
round to nearest even float16 (float16 inputs widened exactly as they are read, float16
outputs narrowed from the float32 values the FP32 kernel would have stored, after its whole
epilogue; no partial sums kept in float16), so that a build may pick either and the tests
compare them bit for bit. An instance may decline for its layer with
``half_ready() -> bool`` (e.g. an activation its kernel does not fuse, applied by a float32
epilogue afterwards): False gives it the float32 route. ``pointwise_native``,
``winograd_native``, ``depthwise_native`` (its AVX-512 path), ``direct_native``,
``ocvec_native`` and ``stem_native`` implement it, with the
conversions of kernels/half.h (8 and 16 lanes, the same bits as kernels/convert_f16.c);
``takes_half`` says whether a tactic instance does (bench/fp16_layers.py lists the layers
of an FP16 engine still on the conversion route).

- ``fp16_<conv tactic>``: one per FP32 convolution tactic (``cpu_conv``, ``cpu_direct``,
  ``cpu_winograd``), applicable where that tactic is; chosen by timing like the FP32 ones.
- ``fp16_<recurrent tactic>``: one per FP32 recurrent tactic (``recurrent_native``,
  ``recurrent_gemm``), applicable where that tactic is (``Fp16Spec.recurrent``): the
  conversion route around it (its kernels read float32), the weights upcast once and packed
  at bind as the FP32 layer's.
- ``fp16_step``: an op with an FP32 step (``steps.STEPS``; of the domain ops,
  ``edge_infer::Pointwise``), through it; the layer's constant inputs are constants to the
  step (a constant operand laid out once, at bind). Sigmoid and Softmax take the float16
  storage in their native kernels instead (kernels/pointwise.c ``half``: widened as read,
  float32 inputs the layer rounds rounded as read, outputs narrowed or rounded as written,
  the float32 kernel's arithmetic in between: the conversion route's bits, no passes).
- ``fp16_kernel``: any layer, through the wrapped op's reference kernel: bit for bit the
  reference's numbers (the self-check never rejects it, so a build never fails for want of
  a candidate), which is what a layer gets when its step's float32 rounding differences
  would flip a float16 rounding beyond a float32 output's self-check tolerance.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from edge_infer.engine.backends.cpu import half, native, steps_elementwise
from edge_infer.engine.backends.cpu.parallel import sequence
from edge_infer.engine.backends.cpu.steps import STEPS
from edge_infer.engine.ir import Node, TensorType, Value
from edge_infer.engine.ops import get_registry
from edge_infer.engine.tactics.base import Run, Scratch, Tactic
from edge_infer.engine.tactics.fp16 import Fp16Spec
from edge_infer.errors import EdgeInferError

F16, F32 = np.dtype(np.float16), np.dtype(np.float32)
#: kernels/pointwise.c's ``half`` bits: x, y float16; y, x float32 rounded to float16's values
_PW_XH, _PW_YH, _PW_YR, _PW_XR = 1, 2, 4, 8
#: the ops whose fp16_step runs their native kernel on the float16 storage
_HALF_STEP_OPS = ("Sigmoid", "Softmax")


def _float32(scratch: Scratch, shape: tuple[int, ...], role: str) -> np.ndarray:
    """A contiguous float32 scratch array of ``shape``: the front of a buffer shared by role
    and power-of-two size class, so that layers of many shapes reuse a few buffers, which
    stay in cache (one buffer per shape would spread the conversions over cold memory)."""
    size = int(np.prod(shape, dtype=np.int64))
    flat = scratch((1 << max(10, (size - 1).bit_length()),), F32, role)
    return flat[:size].reshape(shape)


class _Fp16Tactic(Tactic):
    """Shared: widening the inputs, rounding the outputs, around an FP32 run."""

    name: ClassVar[str] = "fp16"

    def __init__(self, spec: Fp16Spec) -> None:
        self.spec = spec

    def _inputs(
        self,
        inputs: list[Any],
        scratch: Scratch,
        before: list[Run],
        direct: bool = False,
        rounds: tuple[int, ...] = (),
    ) -> list[Any]:
        """The float32 arrays the FP32 run reads: constants upcast once, float16 views
        widened into scratch (passed as they are with ``direct``), rounded float32 inputs
        rounded into scratch (passed as they are where listed in ``rounds``: the run rounds
        them itself)."""
        pool = getattr(scratch, "pool", None)
        out: list[Any] = []
        for k, x in enumerate(inputs):
            if k in self.spec.consts:
                out.append(self.spec.consts[k])
            elif direct and isinstance(x, np.ndarray) and x.dtype == F16:
                out.append(x)
            elif isinstance(x, np.ndarray) and x.dtype == F16:
                x32 = _float32(scratch, x.shape, f"fp16_in{k}")
                before.append(half.convert(x, x32, half.WIDEN, pool))
                out.append(x32)
            elif (
                isinstance(x, np.ndarray)
                and x.dtype == F32
                and k in self.spec.round_inputs
                and k not in rounds
            ):
                x32 = _float32(scratch, x.shape, f"fp16_in{k}")
                before.append(half.convert(x, x32, half.ROUND, pool))
                out.append(x32)
            else:
                out.append(x)
        return out

    def _outputs(
        self, outputs: list[np.ndarray], scratch: Scratch, after: list[Run], direct: bool = False
    ) -> list[Any]:
        """The float32 arrays the FP32 run writes, and (in ``after``) their rounding into the
        layer's outputs: float16 ones narrowed from scratch (written directly with ``direct``),
        float32 ones rounded in place."""
        pool = getattr(scratch, "pool", None)
        out: list[Any] = []
        for k, y in enumerate(outputs):
            if direct and y.dtype == F16:
                out.append(y)
            elif y.dtype == F16:
                y32 = _float32(scratch, y.shape, f"fp16_out{k}")
                after.append(half.convert(y32, y, half.NARROW, pool))
                out.append(y32)
            elif y.dtype == F32:
                after.append(half.convert(y, y, half.ROUND, pool))
                out.append(y)
            else:
                out.append(y)
        return out


def takes_half(tactic: Tactic) -> bool:
    """Whether FP32 tactic instance ``tactic`` takes float16 arrays itself (``half_io``,
    and ``half_ready()`` where it defines one: see the module's docstring)."""
    if not getattr(type(tactic), "half_io", False):
        return False
    ready = getattr(tactic, "half_ready", None)
    return bool(ready()) if callable(ready) else True


def fp16_conv(inner: type[Tactic]) -> type[Tactic]:
    """The FP16 form of FP32 convolution tactic ``inner``: ``fp16_<inner.name>``."""

    class Fp16Conv(_Fp16Tactic):
        name = f"fp16_{inner.name}"
        wraps = inner

        @classmethod
        def applicable(cls, spec: Fp16Spec) -> bool:
            return spec.conv is not None and inner.applicable(spec.conv)

        def __init__(self, spec: Fp16Spec) -> None:
            super().__init__(spec)
            self.inner = inner(spec.conv)  # type: ignore[call-arg]

        def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
            before: list[Run] = []
            after: list[Run] = []
            direct = takes_half(self.inner)
            # a tactic that rounds its float32 input itself (``rounds_input``: stem_native)
            rounds = (0,) if direct and getattr(type(self.inner), "rounds_input", False) else ()
            if rounds:
                setattr(self.inner, "round_x", 0 in self.spec.round_inputs)  # noqa: B010
            ins = self._inputs(inputs, scratch, before, direct, rounds)
            outs = self._outputs(outputs, scratch, after, direct)
            return sequence([*before, self.inner.bind(ins, outs, scratch), *after])

    Fp16Conv.__name__ = Fp16Conv.__qualname__ = f"Fp16_{inner.__name__}"
    return Fp16Conv


def _read_only(a: Any) -> Any:
    """A read-only view of array ``a``: what the recurrent tactics take for a constant
    (weights packed once at bind)."""
    if not isinstance(a, np.ndarray):
        return a
    view = a.view()
    view.flags.writeable = False
    return view


def fp16_recurrent(inner: type[Tactic]) -> type[Tactic]:
    """The FP16 form of FP32 recurrent tactic ``inner``: ``fp16_<inner.name>``, the FP32
    kernel between the conversions (float16 inputs widened, float32 inputs the layer rounds
    rounded, every float output rounded to nearest even float16)."""

    class Fp16Recurrent(_Fp16Tactic):
        name = f"fp16_{inner.name}"
        wraps = inner

        @classmethod
        def applicable(cls, spec: Fp16Spec) -> bool:
            return spec.recurrent is not None and inner.applicable(spec.recurrent)

        def __init__(self, spec: Fp16Spec) -> None:
            super().__init__(spec)
            self.inner = inner(spec.recurrent)  # type: ignore[call-arg]

        def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
            before: list[Run] = []
            after: list[Run] = []
            ins = self._inputs(inputs, scratch, before)
            ins = [_read_only(a) if k in self.spec.consts else a for k, a in enumerate(ins)]
            outs = self._outputs(outputs, scratch, after)
            return sequence([*before, self.inner.bind(ins, outs, scratch), *after])

    Fp16Recurrent.__name__ = Fp16Recurrent.__qualname__ = f"Fp16_{inner.__name__}"
    return Fp16Recurrent


class Fp16Kernel(_Fp16Tactic):
    """The wrapped op's reference kernel between the native conversions: the reference's
    numbers bit for bit (it computes exactly what ``fp16_layer`` does), without its copies."""

    name = "fp16_kernel"

    @classmethod
    def applicable(cls, spec: Fp16Spec) -> bool:
        return all(t is None or t[1] in ("float16", "float32") for t in spec.outputs)

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        before: list[Run] = []
        after: list[Run] = []
        ins = self._inputs(inputs, scratch, before)
        outs = self._outputs(outputs, scratch, after)
        return sequence([*before, self._inner(ins, outs, scratch), *after])

    def _inner(self, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run:
        s = self.spec
        found = get_registry().resolve(s.op_domain, s.op, s.opset)
        if found is None:
            raise EdgeInferError(
                f"Fp16Layer wraps {s.op_domain or 'ai.onnx'}::{s.op}, which has no kernel "
                f"at opset {s.opset}"
            )
        kernel, attrs = found.kernel, {**found.defaults, **s.op_attrs}

        def run() -> None:
            result = kernel(*ins, **attrs)
            results = result if isinstance(result, tuple | list) else (result,)
            for y, value in zip(outs, results, strict=False):
                np.copyto(y, value, casting="unsafe")

        return run


#: wrapped ops of a domain whose FP32 step an FP16 layer may take (steps.STEPS' key)
_DOMAIN_STEPS = ("edge_infer::Pointwise",)


def _step_key(spec: Fp16Spec) -> str:
    """The wrapped op's key in steps.STEPS ("" for a domain op without an FP16 step here)."""
    if not spec.op_domain:
        return spec.op
    key = f"{spec.op_domain}::{spec.op}"
    return key if key in _DOMAIN_STEPS else ""


class Fp16Step(Fp16Kernel):
    """A non-convolution layer through the wrapped op's FP32 step (``steps.STEPS``; the
    op's kernel where the step declines these arrays), between the conversions."""

    name = "fp16_step"

    @classmethod
    def applicable(cls, spec: Fp16Spec) -> bool:
        if spec.conv is not None or _step_key(spec) not in STEPS:
            return False
        if spec.op == "Softmax" and spec.opset < 13:
            return False  # flatten-to-2D semantics: the step does not do them
        return super().applicable(spec)

    def takes_half(self) -> bool:
        """Whether this layer's op runs on the float16 storage itself (Sigmoid, Softmax: see
        ``_half_kernel``; contiguous arrays at bind), not through the conversions."""
        s = self.spec
        return not s.op_domain and s.op in _HALF_STEP_OPS and 0 not in s.consts

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        run = self._half_kernel(inputs, outputs, scratch)
        return run if run is not None else super().bind(inputs, outputs, scratch)

    def _half_kernel(
        self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch
    ) -> Run | None:
        """Sigmoid / Softmax on the float16 storage itself (pointwise.c's ``half`` bits), or
        None: the conversion route."""
        s = self.spec
        if not self.takes_half():
            return None
        if len(inputs) != 1 or len(outputs) != 1 or not native.available():
            return None
        x, y = inputs[0], outputs[0]
        if not isinstance(x, np.ndarray) or x.dtype not in (F16, F32) or y.dtype not in (F16, F32):
            return None
        bits = (
            (_PW_XH if x.dtype == F16 else _PW_XR if 0 in s.round_inputs else 0)
            | (_PW_YH if y.dtype == F16 else _PW_YR)  # every float32 output is rounded
        )
        if s.op == "Sigmoid":
            return steps_elementwise.bind_unary(x, y, native.Activation.SIGMOID, scratch, bits)
        axis = int(s.op_attrs.get("axis", -1)) % max(1, x.ndim)
        return steps_elementwise.bind_softmax(x, y, axis, scratch, bits)

    def _inner(self, ins: list[Any], outs: list[np.ndarray], scratch: Scratch) -> Run:
        s = self.spec
        node = Node(s.op, f"fp16/{s.op}", s.op_domain, dict(s.op_attrs))
        # the layer's constants as constants (a step lays out a constant operand once, at
        # bind); the other inputs typed as the float32 arrays the step gets
        node.set_inputs(
            [
                Value(f"fp16/{s.op}/in{k}", const=s.consts[k])
                if k in s.consts
                else None
                if t is None
                else Value(f"fp16/{s.op}/in{k}", TensorType(t[0], F32))
                for k, t in enumerate(s.inputs)
            ]
        )
        run = STEPS[_step_key(s)](node, ins, outs, scratch)
        return run if run is not None else super()._inner(ins, outs, scratch)


def fp16_tactics(
    conv_tactics: tuple[type[Tactic], ...], recurrent_tactics: tuple[type[Tactic], ...] = ()
) -> tuple[type[Tactic], ...]:
    """The CPU's FP16 candidates, in the order tried: the FP32 convolution tactics' FP16
    forms (in their order), the recurrent ones', the step, the op's kernel (the reference's
    numbers exactly)."""
    return (
        *(fp16_conv(t) for t in conv_tactics),
        *(fp16_recurrent(t) for t in recurrent_tactics),
        Fp16Step,
        Fp16Kernel,
    )


__all__ = ["Fp16Kernel", "Fp16Step", "fp16_conv", "fp16_recurrent", "fp16_tactics", "takes_half"]
