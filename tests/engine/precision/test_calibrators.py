"""Calibrators on known distributions."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.precision.calibrators import (
    TensorStats,
    compute_amax,
    entropy_amax,
    minmax_amax,
    percentile_amax,
    scale_from_amax,
)
from edge_infer.errors import CalibrationError


def stats_of(*batches: np.ndarray) -> TensorStats:
    s = TensorStats()
    for b in batches:
        s.update(b)
    return s


def test_minmax_is_exact_over_batches() -> None:
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal(1000) * (k + 1) for k in range(4)]
    s = stats_of(*batches)
    want = max(np.abs(b).max() for b in batches)
    assert minmax_amax(s) == want
    assert s.min == min(b.min() for b in batches) and s.max == max(b.max() for b in batches)
    assert scale_from_amax(minmax_amax(s)) == want / 127.0


def test_histogram_growth_keeps_every_count() -> None:
    rng = np.random.default_rng(1)
    small, large = rng.random(5000), rng.random(5000) * 1000.0
    s = stats_of(small, large)
    assert s.hist.sum() == 10000
    assert s.range >= 1000.0 * 0.99 and s.count == 10000


@pytest.mark.parametrize("pct", [50.0, 99.0, 99.99])
def test_percentile_within_one_bin(pct: float) -> None:
    x = np.random.default_rng(2).uniform(-4.0, 4.0, 200_000)
    s = stats_of(x)
    got = percentile_amax(s, pct)
    want = np.percentile(np.abs(x), pct)
    assert abs(got - want) <= s.bin_width


def test_percentile_100_is_max_and_bad_percentile_refused() -> None:
    x = np.linspace(-3.0, 2.0, 101)
    s = stats_of(x)
    assert percentile_amax(s, 100.0) == 3.0
    with pytest.raises(CalibrationError, match="percentile"):
        percentile_amax(s, 0.0)


def test_entropy_clips_gaussian_tail_reasonably_and_deterministically() -> None:
    x = np.random.default_rng(3).standard_normal(500_000)
    s = stats_of(x)
    amax = entropy_amax(s)
    # a Gaussian's KL-optimal 8-bit threshold lies well inside its max and above ~2.5 sigma
    assert 2.5 < amax < float(np.abs(x).max())
    assert entropy_amax(stats_of(x)) == amax


def test_entropy_keeps_uniform_range() -> None:
    x = np.random.default_rng(4).uniform(-1.0, 1.0, 200_000)
    amax = entropy_amax(stats_of(x))
    assert 0.9 < amax <= 1.0


def test_entropy_ignores_relu_zero_spike() -> None:
    x = np.maximum(np.random.default_rng(5).standard_normal(300_000), 0.0)
    amax = entropy_amax(stats_of(x))
    assert 2.0 < amax <= x.max()


def test_nonfinite_values_are_counted_and_left_out() -> None:
    s = stats_of(np.array([1.0, np.nan, -2.0, np.inf]))
    assert s.nonfinite == 2 and s.count == 2 and minmax_amax(s) == 2.0


def test_all_zero_tensor_gets_unit_scale_and_unknown_calibrator_refused() -> None:
    s = stats_of(np.zeros(100))
    assert compute_amax(s, "entropy") == 0.0 and scale_from_amax(0.0) == 1.0
    with pytest.raises(CalibrationError, match="unknown calibrator"):
        compute_amax(s, "kl")


def _kl_loop(hist: np.ndarray, i: int) -> float:
    """The entropy calibrator's divergence for one threshold, written out plainly."""
    p = hist[:i].copy()
    p[i - 1] += hist[i:].sum()
    q = np.zeros(i)
    edges = (np.arange(129) * i) // 128
    for k in range(128):
        seg = hist[edges[k] : edges[k + 1]]
        nz = seg > 0
        if nz.any():
            q[edges[k] : edges[k + 1]][nz] = seg.sum() / nz.sum()
    p, q = p / p.sum(), q / q.sum()
    m = p > 0
    if np.any(q[m] == 0):
        return np.inf
    return float(np.sum(p[m] * np.log(p[m] / q[m])))


def test_vectorized_divergence_matches_the_plain_loop() -> None:
    from edge_infer.engine.precision.calibrators import kl_divergences

    rng = np.random.default_rng(6)
    hist = rng.poisson(3, 2048).astype(float) * (rng.random(2048) > 0.3)
    thresholds = np.arange(128, 2049, 7)
    got = kl_divergences(hist, thresholds)
    want = np.array([_kl_loop(hist, int(i)) for i in thresholds])
    assert np.array_equal(np.isfinite(got), np.isfinite(want))
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], atol=1e-12)
