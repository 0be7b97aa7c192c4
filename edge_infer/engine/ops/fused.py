"""Fused ops made by the optimization passes, in the ``edge_infer`` domain (version 1).

- ``FusedConv`` (inputs ``X, W, [B], [Z]``; ``B`` may be omitted as ``None`` when ``Z`` is
  given): a Conv with explicit geometry (``group``, ``strides``, ``pads``, ``dilations``,
  ``kernel_shape``; no ``auto_pad``), an ``activation`` epilogue (see :data:`ACTIVATIONS`)
  with its ``activation_params`` (list of floats), and an optional residual ``Z`` of the
  output's shape: ``residual="pre"`` computes ``act(conv + b + Z)``, ``"post"``
  ``act(conv + b) + Z``, ``"none"`` ``act(conv + b)``.
- ``Pointwise`` (inputs: the main input, then other tensors/constants): a chain of
  elementwise ops evaluated in order. ``steps`` is a list of ``{"op": <ONNX op type of the
  default domain>, "args": [...], "attrs": {...}}``; each arg is ``"$acc"`` (the running
  value, which starts as input 0), an input index, or ``None`` (an omitted optional input).
  ``opset`` is the default-domain opset whose kernels the steps use.

The reference kernels reuse the Conv and activation kernels, so a fused graph computes what
the unfused one did, operation for operation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edge_infer.engine.ir import Node, TensorType
from edge_infer.engine.ops import activations as act
from edge_infer.engine.ops.conv import conv
from edge_infer.engine.ops.registry import InferContext, OpDef, OpList
from edge_infer.errors import EdgeInferError, ShapeInferenceError

OPS = OpList()

#: the domain of every op the passes create
DOMAIN = "edge_infer"
RESIDUALS = ("none", "pre", "post")

Activation = Callable[[np.ndarray, Sequence[float]], np.ndarray]


def _silu(x: np.ndarray, p: Sequence[float]) -> np.ndarray:
    # exactly what the exported pattern computes: Mul(x, Sigmoid(x))
    return np.asarray(np.multiply(x, act.sigmoid(x)))


#: activation name -> (function of (x, params), allowed numbers of params)
ACTIVATIONS: dict[str, tuple[Activation, tuple[int, ...]]] = {
    "": (lambda x, p: x, (0,)),
    "relu": (lambda x, p: act.relu(x), (0,)),
    "leaky_relu": (lambda x, p: act.leaky_relu(x, alpha=p[0]), (1,)),  # alpha
    "clip": (lambda x, p: act.clip_6(x, min=p[0], max=p[1]), (2,)),  # min, max
    "sigmoid": (lambda x, p: act.sigmoid(x), (0,)),
    "silu": (_silu, (0,)),
    "hard_swish": (lambda x, p: act.hard_swish(x), (0,)),
    "hard_sigmoid": (lambda x, p: act.hard_sigmoid(x, alpha=p[0], beta=p[1]), (2,)),
    "mish": (lambda x, p: act.mish(x), (0,)),
    # params [] = exact (erf) Gelu, [1.0] = approximate="tanh"
    "gelu": (lambda x, p: act.gelu(x, approximate="tanh" if p and p[0] else "none"), (0, 1)),
    "tanh": (lambda x, p: act.tanh(x), (0,)),
    "elu": (lambda x, p: act.elu(x, alpha=p[0]), (1,)),  # alpha
}


def apply_activation(x: np.ndarray, activation: str, params: Sequence[float] = ()) -> np.ndarray:
    """Apply the named FusedConv epilogue activation to ``x``."""
    try:
        func, _ = ACTIVATIONS[activation]
    except KeyError:
        raise EdgeInferError(
            f"unknown fused activation {activation!r}; known: {sorted(ACTIVATIONS)}"
        ) from None
    return func(x, params)


def check_activation(activation: str, params: Sequence[float]) -> str | None:
    """A message saying what is wrong with ``activation``/``params``, or ``None``."""
    if activation not in ACTIVATIONS:
        return f"activation {activation!r} is not one of {sorted(ACTIVATIONS)}"
    counts = ACTIVATIONS[activation][1]
    if len(params) not in counts:
        return (
            f"activation {activation!r} takes {' or '.join(map(str, counts))} "
            f"activation_params, got {list(params)}"
        )
    return None


# -- FusedConv ---------------------------------------------------------------------------------


def _infer_fused_conv(ctx: InferContext) -> list[TensorType]:
    a = ctx.attrs
    problem = check_activation(a.get("activation", ""), a.get("activation_params", ()))
    if problem:
        ctx.fail(problem)
    residual = a.get("residual", "none")
    if residual not in RESIDUALS:
        ctx.fail(f"attribute residual must be one of {RESIDUALS}, got {residual!r}")
    (out,) = resolve_step("Conv", 22).infer(ctx)  # the Conv shape function, checks included
    if (residual != "none") != ctx.has(3):
        ctx.fail(f"residual={residual!r} needs input Z exactly when it is not 'none'")
    if ctx.has(3) and ctx.type(3) != out:
        ctx.fail(f"residual Z must have the output's type {out}, got {ctx.type(3)}")
    return [out]


@OPS.register("FusedConv", 1, domain=DOMAIN, infer=_infer_fused_conv)
def fused_conv(
    X: np.ndarray,
    W: np.ndarray,
    B: np.ndarray | None = None,
    Z: np.ndarray | None = None,
    *,
    group: int = 1,
    strides: list[int] | None = None,
    pads: list[int] | None = None,
    dilations: list[int] | None = None,
    kernel_shape: list[int] | None = None,
    activation: str = "",
    activation_params: Sequence[float] = (),
    residual: str = "none",
) -> np.ndarray:
    """``act(conv(X, W) + B [+ Z])`` (residual "pre") or ``act(conv(X, W) + B) [+ Z]``."""
    y = conv(
        X,
        W,
        B,
        group=group,
        strides=strides,
        pads=pads,
        dilations=dilations,
        kernel_shape=kernel_shape,
    )
    if residual == "pre" and Z is not None:
        y = np.add(y, Z)
    y = apply_activation(y, activation, activation_params)
    if residual == "post" and Z is not None:
        y = np.add(y, Z)
    return np.asarray(y)


# -- Pointwise ---------------------------------------------------------------------------------


def resolve_step(op_type: str, opset: int) -> OpDef:
    """The default-domain op a Pointwise step runs (late import: the registry imports us)."""
    from edge_infer.engine.ops import get_registry

    op = get_registry().resolve("", op_type, int(opset))
    if op is None:
        raise EdgeInferError(f"Pointwise step op {op_type!r} has no kernel at opset {opset}")
    return op


def _step_args(step: Any, num_inputs: int) -> list[str | int | None]:
    if not isinstance(step, dict) or not isinstance(step.get("op"), str):
        raise ShapeInferenceError(
            f"a Pointwise step must be {{'op': str, 'args': [...]}}, got {step!r}"
        )
    args = list(step.get("args", []))
    for arg in args:
        ok = (
            arg is None
            or arg == "$acc"
            or (isinstance(arg, int | np.integer) and 0 <= int(arg) < num_inputs)
        )
        if not ok:
            raise ShapeInferenceError(
                f"Pointwise step {step['op']}: argument {arg!r} is neither '$acc', None nor "
                f"an input index below {num_inputs}"
            )
    return args


def _infer_pointwise(ctx: InferContext) -> list[TensorType]:
    steps = ctx.attrs.get("steps")
    if not steps:
        ctx.fail("attribute steps must list at least one step")
    opset = int(ctx.attrs.get("opset", 17))
    acc = ctx.type(0)
    for k, step in enumerate(steps):  # type: ignore[union-attr]
        try:
            args = _step_args(step, ctx.num_inputs)
            op = resolve_step(step["op"], opset)
        except EdgeInferError as exc:
            ctx.fail(f"step {k}: {exc}")
        types = [acc if a == "$acc" else None if a is None else ctx.type(int(a)) for a in args]
        values = [None if a is None or a == "$acc" else ctx.value(int(a)) for a in args]
        sub = InferContext(
            Node(step["op"], f"{ctx.node.name}/step{k}"),
            types,
            values,
            {**op.defaults, **step.get("attrs", {})},
        )
        acc = op.infer(sub)[0]
    return [acc]


@OPS.register("Pointwise", 1, domain=DOMAIN, infer=_infer_pointwise)
def pointwise(
    *inputs: np.ndarray | None, steps: Sequence[dict[str, Any]], opset: int = 17
) -> np.ndarray:
    """Run ``steps`` over the running value ``$acc`` (starting as input 0)."""
    acc = inputs[0]
    for step in steps:
        op = resolve_step(step["op"], opset)
        args = [acc if a == "$acc" else None if a is None else inputs[int(a)] for a in step["args"]]
        acc = op.kernel(*args, **{**op.defaults, **step.get("attrs", {})})
    return np.asarray(acc)
