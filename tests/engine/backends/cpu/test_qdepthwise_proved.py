"""qdepthwise_native's proved requantization (tactics/qdw_requant.py, conv_int8_dw.c
QPROVED): the multipliers it proves give the reference op's integer for EVERY accumulator a
channel can make (checked exhaustively on 1x1 layers), channels with results on ties are
left to the checked path, and the kernel takes the proved multipliers where given (a wrong
one shows in its output)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.tactics import cpu_qdepthwise
from edge_infer.engine.backends.cpu.tactics.qdw_requant import (
    ULPS,
    WINDOW,
    _fast,
    _reference,
    proved_multipliers,
)
from edge_infer.engine.ops.quantize import qconv
from tests.engine.backends.cpu.test_qdepthwise_native import run_native
from tests.engine.backends.cpu.test_qdepthwise_requant import ACTS, make_case

C = 48


@pytest.mark.parametrize("act", ACTS)
def test_proved_channels_equal_the_reference_on_every_accumulator(act) -> None:
    rng = np.random.default_rng(len(act[1]) + 7)
    weight = rng.integers(-127, 128, (C, 1, 1, 1)).astype(np.int8)
    weight[:8, 0, 0, 0] = [1, 3, 1, -1, 1, 2, 5, 1]  # small weights: results on half steps
    bias = rng.integers(-300, 300, C).astype(np.int32)
    out_scale = act[1][1] / 127 if act[0] == "clip" else float(rng.uniform(0.01, 1.0))
    ratio = 10.0 ** rng.uniform(-4, 0.5, C)
    ratio[:8] = [0.5, 0.25, 1.5, 0.125, 2.5, 1.0, 0.75, 0.5]  # exact half steps: ties
    mult = out_scale * ratio
    vmq, lo, hi = proved_multipliers(weight, bias, mult, out_scale, act[0], act[1])
    proved = np.flatnonzero(vmq > 0)
    assert len(proved) >= C - 8  # all but (some of) the tie channels
    assert (vmq[:8] == 0).any()  # a tie that f rounds the other way is not proved
    for c in proved:
        w = int(weight[c, 0, 0, 0])
        a = np.arange(min(-128 * w, 127 * w), max(-128 * w, 127 * w) + 1) + int(bias[c])
        g = _reference(a[None], mult[c : c + 1], out_scale, act[0], act[1])
        f = _fast(a[None], vmq[c : c + 1], lo[c : c + 1], hi[c : c + 1])
        np.testing.assert_array_equal(f, g, err_msg=f"channel {c}")


def test_no_proof_for_other_layers() -> None:
    weight = np.ones((4, 1, 3, 3), np.int8)
    mult = np.full(4, 1e-3)
    for act, params in (("leaky_relu", (0.1,)), ("sigmoid", ())):
        vmq, _, _ = proved_multipliers(weight, None, mult, 0.05, act, params)
        assert not vmq.any()
    big = np.full((4, 1, 33, 33), 127, np.int8)  # |acc| reaches 2^24: not proved
    assert not proved_multipliers(big, None, mult, 0.05, "", ())[0].any()


@pytest.mark.skipif(not native.available(), reason="no C compiler here")
@pytest.mark.parametrize("kernel", [1, 3])
def test_kernel_takes_the_proved_multipliers(kernel: int, monkeypatch) -> None:
    """Mixed layers (proved and checked channels) equal the reference; multipliers made
    wrong on purpose change the output, so the proved path is the one that ran."""
    spec, inputs = make_case(3, ACTS[1], kernel)
    want = qconv(*inputs, **spec.attrs())
    proved = proved_multipliers
    got_proved: list[np.ndarray] = []

    def spy(*args, **kw):
        out = proved(*args, **kw)
        got_proved.append(out[0])
        return out

    monkeypatch.setattr(cpu_qdepthwise, "proved_multipliers", spy)
    np.testing.assert_array_equal(run_native(spec, inputs), want)
    assert (got_proved[-1] > 0).sum() >= spec.weight.shape[0] // 2
    assert (got_proved[-1] == 0).any()

    def wrong(*args, **kw):
        vmq, lo, hi = proved(*args, **kw)
        return np.where(vmq > 0, vmq * np.float32(1.5), 0).astype(np.float32), lo, hi

    monkeypatch.setattr(cpu_qdepthwise, "proved_multipliers", wrong)
    assert not np.array_equal(run_native(spec, inputs), want)


def _proved_by_every_checkpoint(weight, bias, mult, out_scale, act, params):
    """The proof as first written (every checkpoint of every channel in one array, sorted,
    f compared with g at each of them): what proved_multipliers must return bit for bit."""
    c = weight.shape[0]
    vmq, lo, hi = (np.zeros(c, np.float32) for _ in range(3))
    w = weight.reshape(c, -1).astype(np.int64)
    b = np.zeros(c, np.int64) if bias is None else np.asarray(bias, np.int64)
    amin = b + np.minimum(w * -128, w * 127).sum(1)
    amax = b + np.maximum(w * -128, w * 127).sum(1)
    m = np.asarray(mult, np.float64)
    ok = (np.maximum(-amin, amax) < 2**24) & (m > 0) & np.isfinite(m)
    k = np.arange(-128, 127, dtype=np.float64) + 0.5
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        steps = np.floor(k[None, :] * out_scale / np.where(ok, m, 1.0)[:, None])
    steps = np.nan_to_num(steps, posinf=2.0**40, neginf=-(2.0**40)).astype(np.int64)
    near = steps[:, :, None] + np.arange(-WINDOW + 1, WINDOW + 1)[None, None, :]
    points = np.concatenate([amin[:, None], amax[:, None], near.reshape(c, -1)], axis=1)
    points = np.sort(np.clip(points, amin[:, None], amax[:, None]), axis=1)
    g = _reference(points, m, out_scale, act, params)
    ok &= ~((np.diff(points, axis=1) > 1) & (np.diff(g, axis=1) != 0)).any(1)
    base = (m / out_scale).astype(np.float32)
    for ulps in ULPS:
        cand = base
        for _ in range(abs(ulps)):
            cand = np.nextafter(cand, np.float32(np.inf if ulps > 0 else 0.0)).astype(np.float32)
        fits = ok & (vmq == 0) & (cand > 0) & (cand <= 64) & np.isfinite(cand)
        if fits.any():
            f = _fast(points[fits], cand[fits], g[fits, 0], g[fits, -1])
            good = np.flatnonzero(fits)[(f == g[fits]).all(1)]
            vmq[good], lo[good], hi[good] = cand[good], g[good, 0], g[good, -1]
    return vmq, lo, hi


@pytest.mark.parametrize("act", ACTS)
def test_same_multipliers_as_every_checkpoint(act) -> None:
    """proved_multipliers (checkpoints by channel blocks, sorted only where windows overlap,
    clipped only where they pass the ends, f at the ends of g's runs) proves the channels
    that comparing f and g at every checkpoint does, with the same multipliers and bounds:
    random layers with wide and narrow steps (windows that overlap: os / m < 5), ranges
    the windows pass, ties, huge accumulators and multipliers that are not positive."""
    rng = np.random.default_rng(len(act[0]) + 3 * len(act[1]))
    c = 300
    weight = rng.integers(-128, 128, (c, 1, 3, 3)).astype(np.int8)
    weight[:40] = rng.integers(-2, 3, (40, 1, 3, 3))  # ranges the windows pass
    weight[40:45] = 127  # |acc| >= 2^24 with the bias below
    bias = rng.integers(-2000, 2000, c).astype(np.int32)
    bias[40:45] = 2**24
    out_scale = act[1][1] / 127 if act[0] == "clip" else float(rng.uniform(0.01, 1.0))
    ratio = 10.0 ** rng.uniform(-4, 0.5, c)  # m / os: steps 0.3 to 10^4 apart
    ratio[45:60] = rng.choice([0.5, 0.25, 1.5, 0.125, 2.5, 1.0, 0.75], 15)  # ties
    mult = out_scale * ratio
    mult[60:63] = [0.0, -1e-3, np.nan]
    got = proved_multipliers(weight, bias, mult, out_scale, act[0], act[1])
    want = _proved_by_every_checkpoint(weight, bias, mult, out_scale, act[0], act[1])
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(a.view(np.int32), b.view(np.int32))  # bits: -0.0 too
    proved = got[0] > 0
    assert 100 < proved.sum() < c - 20  # both outcomes, the overlapping windows among them
    assert proved[ratio > 0.2].any() and not proved[40:45].any()
    assert (got[0] != (mult / out_scale).astype(np.float32))[proved].any()  # a neighbour ulp
    assert (proved_multipliers(weight, None, mult, out_scale, act[0], act[1])[0] > 0).any()
    # subnormal scales: float32 rounding moves g's steps past the windows (gaps)
    tiny = (weight[:64], None, mult[:64] * 1e-41 / out_scale, 1e-41, act[0], act[1])
    for a, b in zip(proved_multipliers(*tiny), _proved_by_every_checkpoint(*tiny), strict=True):
        np.testing.assert_array_equal(a.view(np.int32), b.view(np.int32))


def test_proofs_are_kept_by_their_inputs(monkeypatch) -> None:
    """The same inputs are proved once (equal arrays, the caller's own copies); a change in
    any input is proved again; the kept proofs stay within CACHE_CHANNELS."""
    from edge_infer.engine.backends.cpu.tactics import qdw_requant

    proofs: list[int] = []
    real = qdw_requant._prove

    def counted(*args):
        proofs.append(args[0].shape[0])
        return real(*args)

    monkeypatch.setattr(qdw_requant, "_prove", counted)
    monkeypatch.setattr(qdw_requant, "_cache", type(qdw_requant._cache)())
    rng = np.random.default_rng(11)
    weight = rng.integers(-128, 128, (16, 1, 3, 3)).astype(np.int8)
    bias = rng.integers(-500, 500, 16).astype(np.int32)
    mult = 10.0 ** rng.uniform(-4, -2, 16)
    args = (weight, bias, mult, 0.05, "relu", ())
    first = proved_multipliers(*args)
    first[0][:] = 7  # the caller's own arrays
    again = proved_multipliers(*args)
    assert len(proofs) == 1 and (again[0] != 7).all() and (again[0] > 0).any()
    np.testing.assert_array_equal(again[1].view(np.int32), real(*args)[1].view(np.int32))
    other_w = weight.copy()
    other_w[3, 0, 1, 1] ^= 1
    changed = [
        (other_w, bias, mult, 0.05, "relu", ()),
        (weight, None, mult, 0.05, "relu", ()),
        (weight, bias + 1, mult, 0.05, "relu", ()),
        (weight, bias, mult * (1 + 1e-9), 0.05, "relu", ()),
        (weight, bias, mult, 0.051, "relu", ()),
        (weight, bias, mult, 0.05, "", ()),
        (weight, bias, mult, 0.05, "clip", (0.0, 6.0)),
        (weight, bias, mult, 0.05, "clip", (0.0, 5.0)),
    ]
    for case in changed:
        proved_multipliers(*case)
    assert len(proofs) == 1 + len(changed)
    monkeypatch.setattr(qdw_requant, "CACHE_CHANNELS", 40)
    proved_multipliers(weight[:8], bias[:8], mult[:8], 0.05, "relu", ())
    assert sum(p[0].size for p in qdw_requant._cache.values()) <= 40
    proved_multipliers(*args)  # dropped: proved again
    assert len(proofs) == 3 + len(changed)
