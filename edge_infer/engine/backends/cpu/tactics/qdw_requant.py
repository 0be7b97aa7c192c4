"""Proved requantization multipliers of an INT8 depthwise layer (conv_int8_dw.c, "verified"
channels): per channel a float32 ``vmq`` and byte bounds ``[lo, hi]`` such that

    f(a) = clamp(rint(float32(float32(a) * vmq)), lo, hi)      (rint: nearest, ties to even)

equals the reference op's integer (:func:`edge_infer.engine.ops.quantize.qconv`)

    g(a) = clip(rint(float64(act(float32(float64(a) * m))) / out_scale), -128, 127)

for EVERY accumulator-with-bias ``a`` the channel can produce: the kernel then stores f(a)
with no check near half steps (the QNEAR fallback of the other channels).

The proof, per channel: ``a`` lies in [amin, amax] (the bias plus each tap's extreme
products; zero padding lies between them), and f and g are both non-decreasing in ``a``
(m, vmq > 0; float rounding, clip, relu and rint are monotonic). Take sorted checkpoints
p_0 = amin < p_1 < ... < p_n = amax: a few integers around each half step of g's scale
(a = (k + 1/2) os / m) and the two ends. If f(p_i) == g(p_i) at every checkpoint and g(p_i)
== g(p_{i+1}) wherever p_{i+1} > p_i + 1, then f == g on all of [amin, amax]: between two
checkpoints g is constant (monotonic, equal ends) and so is f (monotonic, equal ends, same
values). A channel where that fails (a result exactly on a tie that f rounds the other way)
for float32(m / os) and its float32 neighbours keeps ``vmq = 0``: the checked path.
"""

from __future__ import annotations

import numpy as np

from edge_infer.engine.ops.fused import apply_activation
from edge_infer.engine.ops.quantize import quantize_activation

#: activations with a non-decreasing float32 result (the proof needs it)
MONOTONIC = {"", "relu", "clip"}
#: integers checked on each side of a half step (float32 rounding moves g's steps by less
#: than 1 where |a| < 2^24; a wider gap only fails the check, never passes a wrong value)
WINDOW = 3
#: float32 neighbours of float32(m / os) tried per channel (0, +1, -1, +2, -2 ulps)
ULPS = (0, 1, -1, 2, -2)


def _reference(a: np.ndarray, m: np.ndarray, os: float, act: str, params: tuple) -> np.ndarray:
    """g(a) per row (channel): the reference op's integer, as float64."""
    y = (a.astype(np.float64) * m[:, None]).astype(np.float32)
    if act:
        y = np.asarray(apply_activation(y, act, params), np.float32)
    return quantize_activation(y, os)


def _fast(a: np.ndarray, vmq: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """f(a) per row: the kernel's float32 product, rounded and clamped, as float64."""
    q = np.rint(a.astype(np.float32) * vmq[:, None].astype(np.float32)).astype(np.float64)
    return np.clip(q, lo[:, None], hi[:, None])


def proved_multipliers(
    weight: np.ndarray,
    bias: np.ndarray | None,
    mult: np.ndarray,
    out_scale: float,
    activation: str,
    params: tuple[float, ...],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vmq, lo, hi) per channel, float32 each; vmq 0 where no multiplier is proved.

    ``weight`` [C, ...] int8, ``bias`` [C] int32 or None, ``mult`` [C] float64 (x_scale x
    w_scale), an int8 output at ``out_scale`` after ``activation``."""
    c = weight.shape[0]
    vmq = np.zeros(c, np.float32)
    lo = np.zeros(c, np.float32)
    hi = np.zeros(c, np.float32)
    if activation not in MONOTONIC or not out_scale > 0 or c == 0:
        return vmq, lo, hi
    w = weight.reshape(c, -1).astype(np.int64)
    b = np.zeros(c, np.int64) if bias is None else np.asarray(bias, np.int64)
    amin = b + np.minimum(w * -128, w * 127).sum(1)
    amax = b + np.maximum(w * -128, w * 127).sum(1)
    m = np.asarray(mult, np.float64)
    ok = (np.maximum(-amin, amax) < 2**24) & (m > 0) & np.isfinite(m)
    # checkpoints: WINDOW integers either side of each of g's 255 half steps, and the ends
    k = np.arange(-128, 127, dtype=np.float64) + 0.5
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        steps = np.floor(k[None, :] * out_scale / np.where(ok, m, 1.0)[:, None])
    steps = np.nan_to_num(steps, posinf=2.0**40, neginf=-(2.0**40)).astype(np.int64)
    near = steps[:, :, None] + np.arange(-WINDOW + 1, WINDOW + 1)[None, None, :]
    points = np.concatenate([amin[:, None], amax[:, None], near.reshape(c, -1)], axis=1)
    points = np.sort(np.clip(points, amin[:, None], amax[:, None]), axis=1)
    g = _reference(points, m, out_scale, activation, params)
    gaps = (np.diff(points, axis=1) > 1) & (np.diff(g, axis=1) != 0)
    ok &= ~gaps.any(1)
    lo_c, hi_c = g[:, 0], g[:, -1]  # g(amin), g(amax): the channel's whole range
    base = (m / out_scale).astype(np.float32)
    for ulps in ULPS:
        cand = base
        for _ in range(abs(ulps)):
            cand = np.nextafter(cand, np.float32(np.inf if ulps > 0 else 0.0)).astype(np.float32)
        # |a * vmq| < 2^30: the kernel's float -> int32 conversion stays in range
        fits = ok & (vmq == 0) & (cand > 0) & (cand <= 64) & np.isfinite(cand)
        if not fits.any():
            continue
        f = _fast(points[fits], cand[fits], lo_c[fits], hi_c[fits])
        good = np.flatnonzero(fits)[(f == g[fits]).all(1)]
        vmq[good] = cand[good]
        lo[good] = lo_c[good]
        hi[good] = hi_c[good]
    return vmq, lo, hi


__all__ = ["MONOTONIC", "proved_multipliers"]
