"""Normalization: BatchNormalization (inference), InstanceNormalization, LayerNormalization and
GroupNormalization.

Statistics are computed in float32 for float16 inputs (``stash_type`` 1, as onnxruntime does)
and in the input's own precision otherwise; outputs take the input dtype.
"""

from __future__ import annotations

import numpy as np

from edge_infer.engine.ir import TensorType
from edge_infer.engine.ops.conv import accumulation_dtype
from edge_infer.engine.ops.registry import Infer, InferContext, OpList
from edge_infer.errors import ShapeInferenceError

OPS = OpList()


def _param_shape(x_shape: tuple[int, ...], size: int, spatial: int) -> tuple[int, ...]:
    """Broadcast shape of a per-channel parameter (per-activation when ``spatial`` is 0)."""
    if not spatial and size == int(np.prod(x_shape[1:])):
        return (1, *x_shape[1:])
    return (1, x_shape[1]) + (1,) * (len(x_shape) - 2)


def _infer_batch_norm(ctx: InferContext) -> list[TensorType]:
    if int(ctx.attrs.get("training_mode", 0)):
        ctx.fail(
            "training_mode=1 is not supported (inference engine); export the model in "
            "eval mode (PyTorch: model.eval()) so BatchNormalization uses running stats"
        )
    x = ctx.shape(0)
    if len(x) < 2:
        ctx.fail(f"X must be (N, C, ...), got shape {x}")
    channels = x[1]
    per_activation = int(np.prod(x[1:])) if not int(ctx.attrs.get("spatial", 1)) else None
    names = ("scale", "B", "input_mean", "input_var")
    for index, name in enumerate(names, start=1):
        size = int(np.prod(ctx.shape(index)))
        if size not in (channels, per_activation):
            ctx.fail(
                f"{name} must have {channels} values (one per channel), got shape "
                f"{ctx.shape(index)}"
            )
    for out in ctx.node.outputs[1:]:
        if out.uses:
            ctx.fail(
                f"output '{out.name}' (running/saved statistics) exists only in training "
                "mode; export the model in eval mode"
            )
    return [ctx.type(0)]


def batch_normalization(
    X: np.ndarray,
    scale: np.ndarray,
    B: np.ndarray,
    input_mean: np.ndarray,
    input_var: np.ndarray,
    *,
    epsilon: float = 1e-5,
    momentum: float = 0.9,
    spatial: int = 1,
    training_mode: int = 0,
) -> np.ndarray:
    """``(x - mean) / sqrt(var + epsilon) * scale + B`` with the running statistics."""
    if training_mode:
        raise ShapeInferenceError("BatchNormalization: training_mode=1 is not supported")
    acc = accumulation_dtype(X.dtype)
    shape = _param_shape(X.shape, np.size(scale), spatial)

    def param(p: np.ndarray) -> np.ndarray:
        return np.asarray(p, dtype=acc).reshape(shape)

    factor = param(scale) / np.sqrt(param(input_var) + acc.type(epsilon))
    y = (np.asarray(X, dtype=acc) - param(input_mean)) * factor + param(B)
    return y.astype(X.dtype, copy=False)


# 7: 'spatial'; 9: no 'spatial'; 14: training_mode, fewer outputs; 15: mixed parameter types
for _version in (7, 9, 14, 15):
    OPS.register("BatchNormalization", _version, infer=_infer_batch_norm)(batch_normalization)


def _normalize(
    x: np.ndarray, axes: tuple[int, ...], epsilon: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x - mean) * inv_std`` over ``axes``; returns it with mean and inv_std (keepdims)."""
    mean = np.mean(x, axis=axes, keepdims=True)
    centered = x - mean
    var = np.mean(centered * centered, axis=axes, keepdims=True)
    inv_std = 1 / np.sqrt(var + x.dtype.type(epsilon))
    return centered * inv_std, mean, inv_std


def _infer_instance_norm(ctx: InferContext) -> list[TensorType]:
    x = ctx.shape(0)
    if len(x) < 3:
        ctx.fail(f"input must be (N, C, spatial...), got shape {x}")
    for index, name in ((1, "scale"), (2, "B")):
        if tuple(ctx.shape(index)) != (x[1],):
            ctx.fail(f"{name} must have shape ({x[1]},), got {ctx.shape(index)}")
    return [ctx.type(0)]


@OPS.register("InstanceNormalization", 6, infer=_infer_instance_norm)
def instance_normalization(
    input: np.ndarray, scale: np.ndarray, B: np.ndarray, *, epsilon: float = 1e-5
) -> np.ndarray:
    """Normalise every (n, c) plane over its spatial axes, then scale and shift per channel."""
    acc = accumulation_dtype(input.dtype)
    x = np.asarray(input, dtype=acc)
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    y, _, _ = _normalize(x, tuple(range(2, x.ndim)), epsilon)
    y = y * np.asarray(scale, dtype=acc).reshape(shape) + np.asarray(B, dtype=acc).reshape(shape)
    return y.astype(input.dtype, copy=False)


def _stash_dtype(stash_type: int, dtype: np.dtype) -> np.dtype:
    if stash_type != 1:
        raise ShapeInferenceError(
            f"attribute 'stash_type'={stash_type} is not supported; only 1 (float32) is"
        )
    # float64 inputs keep their precision; everything narrower is computed in float32
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def _infer_layer_norm(ctx: InferContext) -> list[TensorType]:
    x = ctx.shape(0)
    axis = int(ctx.attrs.get("axis", -1))
    if not -len(x) <= axis < len(x):
        ctx.fail(f"attribute 'axis'={axis} is out of range for rank {len(x)}")
    axis %= len(x)
    try:
        _stash_dtype(int(ctx.attrs.get("stash_type", 1)), ctx.dtype(0))
    except ShapeInferenceError as exc:
        ctx.fail(str(exc))
    normalized = tuple(x[axis:])
    for index, name in ((1, "Scale"), (2, "B")):
        if ctx.has(index):
            shape = tuple(ctx.shape(index))
            suffix = normalized[len(normalized) - len(shape) :] if shape else ()
            if len(shape) > len(normalized) or not all(
                d in (1, n) for d, n in zip(shape, suffix, strict=True)
            ):
                ctx.fail(
                    f"{name} shape {shape} does not broadcast to the normalized shape {normalized}"
                )
    # Mean and InvStdDev are U = float32 for stash_type 1 (the spec and onnxruntime)
    stats = TensorType((*x[:axis], *([1] * (len(x) - axis))), np.dtype(np.float32))
    return [ctx.type(0), stats, stats][: max(1, len(ctx.node.outputs))]


@OPS.register("LayerNormalization", 17, infer=_infer_layer_norm)
def layer_normalization(
    X: np.ndarray,
    Scale: np.ndarray,
    B: np.ndarray | None = None,
    *,
    axis: int = -1,
    epsilon: float = 1e-5,
    stash_type: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalise over axes ``axis..``; returns ``(Y, Mean, InvStdDev)`` (statistics float32)."""
    acc = _stash_dtype(stash_type, X.dtype)
    x = np.asarray(X, dtype=acc)
    axis %= max(x.ndim, 1)
    y, mean, inv_std = _normalize(x, tuple(range(axis, x.ndim)), epsilon)
    y = y * np.asarray(Scale, dtype=acc)
    if B is not None:
        y = y + np.asarray(B, dtype=acc)
    return y.astype(X.dtype), mean.astype(np.float32), inv_std.astype(np.float32)


def _infer_group_norm(per_group_params: bool) -> Infer:
    def infer(ctx: InferContext) -> list[TensorType]:
        x = ctx.shape(0)
        groups = int(ctx.attrs.get("num_groups", 0))
        if len(x) < 3 or groups < 1 or x[1] % groups:
            ctx.fail(
                f"attribute 'num_groups'={groups} must be >= 1 and divide the channels "
                f"of X (N, C, spatial...) {x}"
            )
        size = groups if per_group_params else x[1]
        for index, name in ((1, "scale"), (2, "bias")):
            if tuple(ctx.shape(index)) != (size,):
                ctx.fail(f"{name} must have shape ({size},), got {ctx.shape(index)}")
        return [ctx.type(0)]

    return infer


def _group_norm(
    X: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    num_groups: int,
    epsilon: float,
    per_group_params: bool,
) -> np.ndarray:
    acc = accumulation_dtype(X.dtype)
    x = np.asarray(X, dtype=acc)
    n, c = x.shape[:2]
    grouped = x.reshape(n, num_groups, -1)
    y, _, _ = _normalize(grouped, (2,), epsilon)
    if per_group_params:
        shape = (1, num_groups, 1)
    else:
        y = y.reshape(x.shape)
        shape = (1, c) + (1,) * (x.ndim - 2)
    y = y * np.asarray(scale, dtype=acc).reshape(shape) + np.asarray(bias, dtype=acc).reshape(shape)
    return y.reshape(x.shape).astype(X.dtype, copy=False)


@OPS.register("GroupNormalization", 18, infer=_infer_group_norm(per_group_params=True))
def group_normalization_18(
    X: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    *,
    epsilon: float = 1e-5,
    num_groups: int = 0,
) -> np.ndarray:
    """Opset 18: scale and bias per group (deprecated by opset 21)."""
    return _group_norm(X, scale, bias, num_groups, epsilon, per_group_params=True)


@OPS.register("GroupNormalization", 21, infer=_infer_group_norm(per_group_params=False))
def group_normalization(
    X: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    *,
    epsilon: float = 1e-5,
    num_groups: int = 0,
    stash_type: int = 1,
) -> np.ndarray:
    """Opset 21: statistics per group, scale and bias per channel."""
    _stash_dtype(stash_type, X.dtype)
    return _group_norm(X, scale, bias, num_groups, epsilon, per_group_params=False)
