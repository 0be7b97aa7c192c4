"""Data movement: Concat, Split, Slice, Transpose and reshape copies (the strided copy kernel),
and Reformat layers between storage dtypes."""

from __future__ import annotations

from edge_infer.cuda.arena import DeviceArray
from edge_infer.cuda.library import KernelCall
from edge_infer.cuda.lowering import S8, Layer, lowering, narrow
from edge_infer.cuda.params.copy import copy
from edge_infer.cuda.params.reformat import reformat

# -- data movement -------------------------------------------------------------------------


def _copies(pairs: list[tuple[DeviceArray, DeviceArray]]) -> list[KernelCall] | None:
    calls = []
    for src, dst in pairs:
        if src.size == 0:
            continue
        if src.ndim > 4:
            return None
        calls.append(copy(src, dst))  # type: ignore[arg-type]
    return calls


@lowering("Concat")
def _concat(layer: Layer) -> list[KernelCall] | None:
    out = layer.outs[0]
    axis = int(layer.attrs.get("axis", 0)) % out.ndim
    pairs, start = [], 0
    for a in layer.ins:
        if a is None:
            return None
        pairs.append((a, narrow(out, axis, start, start + a.shape[axis])))
        start += a.shape[axis]
    return _copies(pairs)


@lowering("Split")
def _split(layer: Layer) -> list[KernelCall] | None:
    x = layer.ins[0]
    if x is None:
        return None
    axis = int(layer.attrs.get("axis", 0)) % x.ndim
    pairs, start = [], 0
    for out in layer.outs:
        pairs.append((narrow(x, axis, start, start + out.shape[axis]), out))
        start += out.shape[axis]
    return _copies(pairs)


@lowering("Slice")
def _slice(layer: Layer) -> list[KernelCall] | None:
    x, consts = layer.ins[0], layer.consts
    if x is None or any(
        layer.ins[k] is not None and consts[k] is None for k in range(1, len(layer.ins))
    ):
        return None
    starts, ends = consts[1].tolist(), consts[2].tolist()  # type: ignore[union-attr]
    axes = (
        consts[3].tolist()
        if len(consts) > 3 and consts[3] is not None
        else list(range(len(starts)))
    )
    steps = consts[4].tolist() if len(consts) > 4 and consts[4] is not None else [1] * len(starts)
    view = x
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        if st <= 0:
            return None
        ax %= x.ndim
        begin, stop, _ = slice(int(s), int(e), int(st)).indices(x.shape[ax])
        view = narrow(view, ax, begin, max(begin, stop), int(st))
    if view.shape != layer.outs[0].shape:
        return None
    return _copies([(view, layer.outs[0])])


@lowering("Transpose")
def _transpose(layer: Layer) -> list[KernelCall] | None:
    x = layer.ins[0]
    if x is None:
        return None
    perm = layer.attrs.get("perm") or list(reversed(range(x.ndim)))
    src = DeviceArray(
        x.buffer, x.offset, [x.shape[p] for p in perm], x.dtype, [x.strides[p] for p in perm]
    )
    return _copies([(src, layer.outs[0])])


@lowering("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")
def _reshape(layer: Layer) -> list[KernelCall] | None:
    x, out = layer.ins[0], layer.outs[0]
    if x is None:
        return None
    if not x.contiguous:  # a strided view read in the output's shape, when strides allow
        src = _strided_reshape(x, out.shape)
        return None if src is None else _copies([(src, out)])
    return (
        _copies([(x.reshape(out.shape), out)])
        if out.ndim <= 4
        else _copies([(x.reshape((out.size,)), out.reshape((out.size,)))])
    )


def _strided_reshape(x: DeviceArray, shape: tuple[int, ...]) -> DeviceArray | None:
    """``x`` viewed in ``shape`` without moving data (numpy's rule, asked of a stand-in array
    with ``x``'s strides), or None when the strides do not allow it."""
    import numpy as np

    probe = np.lib.stride_tricks.as_strided(
        np.empty(max(x.extent, x.itemsize), np.uint8).view(np.uint8)[: x.itemsize].view(x.dtype),
        x.shape,
        x.strides,
        writeable=False,
    )
    try:
        view = probe.reshape(shape, copy=False)
    except ValueError:
        return None
    return DeviceArray(x.buffer, x.offset, shape, x.dtype, view.strides)


@lowering("Reformat")
def _reformat(layer: Layer) -> list[KernelCall] | None:
    x, y = layer.ins[0], layer.outs[0]
    if x is None or not (x.contiguous and y.contiguous):
        return None
    a = layer.attrs
    scale = a.get("x_scale") if x.dtype == S8 else a.get("y_scale", 1.0)
    return [reformat(x, y, float(scale if scale is not None else 1.0))]  # type: ignore[arg-type]
