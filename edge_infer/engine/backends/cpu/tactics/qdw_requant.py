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

import hashlib
import struct
import threading
from collections import OrderedDict

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


Proof = tuple[np.ndarray, np.ndarray, np.ndarray]

#: the proofs kept, by their inputs' digest, at most this many channels' in all (the least
#: recently used dropped first; 12 bytes a channel): QDepthwiseNative proves its layer at
#: every bind (each context), a second Engine.load of a file proves every layer again
CACHE_CHANNELS = 1 << 18
_cache: OrderedDict[bytes, Proof] = OrderedDict()
_cache_lock = threading.Lock()


def proved_multipliers(
    weight: np.ndarray,
    bias: np.ndarray | None,
    mult: np.ndarray,
    out_scale: float,
    activation: str,
    params: tuple[float, ...],
) -> Proof:
    """(vmq, lo, hi) per channel, float32 each; vmq 0 where no multiplier is proved.

    ``weight`` [C, ...] int8, ``bias`` [C] int32 or None, ``mult`` [C] float64 (x_scale x
    w_scale), an int8 output at ``out_scale`` after ``activation``. Proved once for the
    same inputs (by their digest); the caller gets its own arrays."""
    key = _digest(weight, bias, mult, out_scale, activation, params)
    with _cache_lock:
        proof = _cache.get(key)
        if proof is not None:
            _cache.move_to_end(key)
    if proof is None:
        proof = _prove(weight, bias, mult, out_scale, activation, params)
        with _cache_lock:
            _cache[key] = proof
            held = sum(p[0].size for p in _cache.values())
            while held > CACHE_CHANNELS and len(_cache) > 1:
                held -= _cache.popitem(last=False)[1][0].size
    vmq, lo, hi = (a.copy() for a in proof)
    return vmq, lo, hi


def _digest(
    weight: np.ndarray,
    bias: np.ndarray | None,
    mult: np.ndarray,
    out_scale: float,
    activation: str,
    params: tuple[float, ...],
) -> bytes:
    """What the proof depends on, hashed: the weights (dtype, shape, values), the bias and
    multipliers as the proof reads them, the scale, the activation and its parameters."""
    h = hashlib.blake2b(digest_size=20)
    w = np.ascontiguousarray(weight)
    h.update(f"{w.dtype.str}{w.shape}{activation!r}{tuple(params)!r}".encode())
    h.update(struct.pack("<d", float(out_scale)))
    h.update(w.reshape(-1).view(np.uint8))
    h.update(np.ascontiguousarray(mult, np.float64))
    h.update(b"-" if bias is None else np.ascontiguousarray(bias, np.int64).tobytes())
    return h.digest()


def _prove(
    weight: np.ndarray,
    bias: np.ndarray | None,
    mult: np.ndarray,
    out_scale: float,
    activation: str,
    params: tuple[float, ...],
) -> Proof:
    """:func:`proved_multipliers`, computed."""
    c = weight.shape[0]
    vmq = np.zeros(c, np.float32)
    lo = np.zeros(c, np.float32)
    hi = np.zeros(c, np.float32)
    if activation not in MONOTONIC or not out_scale > 0 or c == 0:
        return vmq, lo, hi
    # the taps' extreme products: -128 w where w > 0, 127 w where w < 0 (and the reverse)
    w = weight.reshape(c, -1)
    wpos = np.maximum(w, 0).sum(1, dtype=np.int64)
    wneg = np.minimum(w, 0).sum(1, dtype=np.int64)
    b = np.zeros(c, np.int64) if bias is None else np.asarray(bias, np.int64)
    amin = b - 128 * wpos + 127 * wneg
    amax = b + 127 * wpos - 128 * wneg
    m = np.asarray(mult, np.float64)
    ok = (np.maximum(-amin, amax) < 2**24) & (m > 0) & np.isfinite(m)
    rows = np.flatnonzero(ok)
    base = (m / out_scale).astype(np.float32)
    cands = [base]  # float32(m / os) and its neighbours, in the order of ULPS
    for ulps in ULPS[1:]:
        cand = base
        for _ in range(abs(ulps)):
            cand = np.nextafter(cand, np.float32(np.inf if ulps > 0 else 0.0)).astype(np.float32)
        cands.append(cand)
    # |a * vmq| < 2^30: the kernel's float -> int32 conversion stays in range
    fits = np.stack([(v > 0) & (v <= 64) & np.isfinite(v) for v in cands])
    # the blocks' arrays, allocated once: checkpoints, float32 products, float64 quotients
    size = (min(CHUNK, rows.size), 255 * 2 * WINDOW + 2)
    bufs = (np.empty(size), np.empty(size, np.float32), np.empty(size))
    for r0 in range(0, rows.size, CHUNK):
        r = rows[r0 : r0 + CHUNK]
        v, lo_r, hi_r = _prove_rows(
            amin[r],
            amax[r],
            m[r],
            out_scale,
            activation,
            params,
            [cand[r] for cand in cands],
            fits[:, r],
            bufs,
        )
        vmq[r], lo[r], hi[r] = v, lo_r, hi_r
    return vmq, lo, hi


#: channels proved together (their checkpoints' arrays stay in the core's cache)
CHUNK = 64


def _prove_rows(
    amin: np.ndarray,
    amax: np.ndarray,
    m: np.ndarray,
    out_scale: float,
    activation: str,
    params: tuple[float, ...],
    cands: list[np.ndarray],
    fits: np.ndarray,
    bufs: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vmq, lo, hi) of channels whose accumulators stay below 2^24 (m > 0, finite): the
    proof of :func:`proved_multipliers` on their checkpoints, held as float64 integers
    (exact), in place where it can."""
    n = amin.size
    # checkpoints: WINDOW integers either side of each of g's 255 half steps, and the ends
    k = np.arange(-128, 127, dtype=np.float64) + 0.5
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        steps = np.floor(k[None, :] * out_scale / m[:, None])
    if not np.isfinite(steps).all():  # (no NaN: k != 0, m finite)
        steps = np.nan_to_num(steps, posinf=2.0**40, neginf=-(2.0**40))
    points = bufs[0][:n]
    lo_a, hi_a = amin.astype(np.float64)[:, None], amax.astype(np.float64)[:, None]
    points[:, :1], points[:, -1:] = lo_a, hi_a
    near = points[:, 1:-1].reshape(n, 255, 2 * WINDOW)
    for j in range(2 * WINDOW):
        np.add(steps, float(j - WINDOW + 1), out=near[:, :, j])
    # (clipped only where the windows reach past the ends)
    out = np.flatnonzero((steps[:, 0] - WINDOW < lo_a[:, 0]) | (steps[:, -1] + WINDOW > hi_a[:, 0]))
    if out.size:
        points[out] = np.clip(points[out], lo_a[out], hi_a[out])
    # sorted already (clipping keeps the order) where the half steps lie 2 WINDOW - 1 apart
    unsorted = (np.diff(steps, axis=1) < 2 * WINDOW - 1).any(axis=1)
    if unsorted.any():
        points[unsorted] = np.sort(points[unsorted], axis=1)
    # g (_reference): float32(a * m), the activation, rint(float64 / os) clipped to int8
    # (each ufunc computes in float64 and rounds into its float32 output, as astype does)
    y32 = np.multiply(points, m[:, None], out=bufs[1][:n])
    if activation:
        y32 = np.asarray(apply_activation(y32, activation, params), np.float32)
    g = np.rint(np.divide(y32, np.float64(out_scale), out=bufs[2][:n], dtype=np.float64), out=y32)
    np.clip(g, -128.0, 127.0, out=g)  # after the (monotonic) cast: the same small integers
    # g's runs of equal values along the sorted checkpoints: a run ends at `col` (then the
    # next starts at col + 1); a gap: two consecutive checkpoints more than 1 apart where g
    # changes
    at, col = np.nonzero(g[:, 1:] != g[:, :-1])
    gaps = np.zeros(n, bool)
    gaps[at[points[at, col + 1] - points[at, col] > 1]] = True
    # f and g are non-decreasing along the checkpoints: f equals g on a whole run where it
    # does at its two ends, so f is checked at each run's ends only
    last = points.shape[1] - 1
    ends = np.concatenate([at, at, np.arange(n), np.arange(n)])
    flat = np.concatenate([col, col + 1, np.zeros(n, np.int64), np.full(n, last)])
    flat += ends * points.shape[1]
    a = points.ravel()[flat].astype(np.float32)  # exact: |a| < 2^24
    want = g.ravel()[flat]
    lo_c, hi_c = g[:, 0], g[:, -1]  # g(amin), g(amax): the channel's whole range
    vmq = np.zeros(n, np.float32)
    todo = ~gaps
    for cand, fit in zip(cands, fits, strict=True):
        live = todo & fit
        if not live.any():
            continue
        keep = live[ends]
        r = ends[keep]
        f = np.rint(a[keep] * cand[r])
        np.maximum(f, lo_c[r], out=f)
        np.minimum(f, hi_c[r], out=f)
        wrong = np.bincount(r[f != want[keep]], minlength=n)
        good = live & (wrong == 0)
        vmq[good] = cand[good]
        todo &= ~good
    proved = vmq > 0
    return vmq, np.where(proved, lo_c, 0), np.where(proved, hi_c, 0)


__all__ = ["MONOTONIC", "proved_multipliers"]
