"""Calibrators: from the activations a tensor took over the calibration set to its amax.

Every tensor gets a :class:`TensorStats` — min, max, absolute max, and a histogram of
``|x|`` whose range grows by powers of two as larger values arrive (adjacent bins merge), so
one pass over the data suffices and the result does not depend on batch boundaries beyond
that doubling. The symmetric int8 scale is ``amax / 127``. Calibrators:

- ``minmax``: amax = the largest ``|x|`` seen (exact);
- ``percentile``: amax = the given percentile of ``|x|`` (interpolated inside a histogram
  bin, so within one bin width — ``amax / 2048`` — of the exact percentile);
- ``entropy``: TensorRT's entropy calibrator — the threshold whose 128-level quantization of
  the histogram loses the least information (minimum KL divergence), searched over
  thresholds from bin 128 to 2048 (the zero bin is discounted, as ReLU outputs pile up there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edge_infer.errors import CalibrationError

NUM_BINS = 2048
NUM_QUANT_BINS = 128
INT8_MAX = 127.0

CALIBRATORS = ("entropy", "minmax", "percentile")


@dataclass
class TensorStats:
    """Running statistics of one tensor; ``update`` with each batch's values."""

    num_bins: int = NUM_BINS
    min: float = float("inf")
    max: float = float("-inf")
    count: int = 0
    nonfinite: int = 0
    hist: np.ndarray = field(default_factory=lambda: np.zeros(NUM_BINS, np.int64))
    #: upper edge of the histogram (0 until the first nonzero value)
    range: float = 0.0

    @property
    def amax(self) -> float:
        return max(abs(self.min), abs(self.max)) if self.count else 0.0

    def update(self, x: np.ndarray) -> None:
        """Add a batch of values; non-finite values are counted and left out."""
        x = np.asarray(x, np.float64).ravel()
        finite = np.isfinite(x)
        if not finite.all():
            self.nonfinite += int(x.size - finite.sum())
            x = x[finite]
        if x.size == 0:
            return
        self.count += x.size
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))
        absx = np.abs(x)
        top = float(absx.max())
        if top == 0.0:
            self.hist[0] += absx.size
            return
        self._grow(top)
        self.hist += np.histogram(absx, bins=self.num_bins, range=(0.0, self.range))[0]

    def _grow(self, top: float) -> None:
        if self.range == 0.0:
            self.range = top
            return
        if top <= self.range:
            return
        factor = 1 << int(np.ceil(np.log2(top / self.range)))
        if factor >= self.num_bins:
            merged = np.zeros_like(self.hist)
            merged[0] = self.hist.sum()
        else:
            merged = np.zeros_like(self.hist)
            merged[: self.num_bins // factor] = self.hist.reshape(-1, factor).sum(axis=1)
        self.hist = merged
        self.range *= factor

    @property
    def bin_width(self) -> float:
        return self.range / self.num_bins


def minmax_amax(stats: TensorStats) -> float:
    """The largest absolute value seen."""
    return stats.amax


def percentile_amax(stats: TensorStats, percentile: float = 99.99) -> float:
    """The ``percentile`` of ``|x|`` read off the histogram (linear inside the bin)."""
    if not 0.0 < percentile <= 100.0:
        raise CalibrationError(f"percentile must be in (0, 100], got {percentile}")
    total = int(stats.hist.sum())
    if total == 0 or stats.range == 0.0:
        return stats.amax
    if percentile == 100.0:
        return stats.amax
    target = total * percentile / 100.0
    cdf = np.cumsum(stats.hist)
    k = int(np.searchsorted(cdf, target, side="left"))
    below = cdf[k - 1] if k > 0 else 0
    frac = (target - below) / max(int(stats.hist[k]), 1)
    return float(min((k + frac) * stats.bin_width, stats.amax))


def entropy_amax(stats: TensorStats) -> float:
    """TensorRT's entropy calibration: the threshold of minimum KL(P || Q)."""
    hist = stats.hist.astype(np.float64)
    if stats.range == 0.0 or hist.sum() == 0:
        return stats.amax
    # the zero bin holds every value a ReLU clipped: it says nothing about the range, and
    # its spike would dominate the divergence (TensorRT / pytorch-quantization do the same)
    hist[0] = hist[1]
    nbins = len(hist)
    # only thresholds up to the last nonzero bin are meaningful candidates
    stop = max(NUM_QUANT_BINS, int(np.nonzero(hist)[0][-1]) + 1)
    candidates = np.arange(NUM_QUANT_BINS, stop + 1)
    kl = kl_divergences(hist, candidates)
    # ties go to the larger threshold, as TensorRT's "last argmin"
    best = int(candidates[len(kl) - 1 - int(np.argmin(kl[::-1]))])
    return float(min(best * stats.range / nbins, stats.amax))


def kl_divergences(hist: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """KL(P_i || Q_i) for each threshold bin count ``i``, all at once from prefix sums.

    P_i is the histogram cut at ``i`` bins with the clipped tail added to its last bin; Q_i
    merges the cut histogram into 128 contiguous levels and spreads each level evenly over
    its nonzero bins. With T the total count and S_i the count below the cut,
    ``KL = (Σ p log p − Σ p log q) / T + log(S_i / T)``, where ``Σ p log q`` is a sum over
    the 128 levels — so every candidate costs O(128), not O(2048).
    """
    h = np.asarray(hist, np.float64)
    total = h.sum()
    zero = np.zeros(1)
    csum = np.concatenate([zero, np.cumsum(h)])
    cnz = np.concatenate([zero, np.cumsum(h > 0)])
    hlogh = np.concatenate(
        [zero, np.cumsum(np.where(h > 0, h * np.log(np.where(h > 0, h, 1)), 0.0))]
    )
    i = np.asarray(thresholds, np.int64)
    edges = (np.arange(NUM_QUANT_BINS + 1)[None, :] * i[:, None]) // NUM_QUANT_BINS
    sums = csum[edges[:, 1:]] - csum[edges[:, :-1]]
    counts = cnz[edges[:, 1:]] - cnz[edges[:, :-1]]
    used = counts > 0
    share = np.divide(sums, counts, out=np.ones_like(sums), where=used)
    p_log_q = np.sum(
        np.where(used, sums * np.log(np.where(used & (share > 0), share, 1.0)), 0.0), axis=1
    )
    below = csum[i]
    tail = total - below
    last = h[i - 1]
    p_log_q += np.where(tail > 0, tail * np.log(np.where(used[:, -1], share[:, -1], 1.0)), 0.0)
    p_last = last + tail
    p_log_p = hlogh[i - 1] + np.where(
        p_last > 0, p_last * np.log(np.where(p_last > 0, p_last, 1.0)), 0.0
    )
    with np.errstate(divide="ignore"):
        kl = (p_log_p - p_log_q) / total + np.log(below / total)
    kl[(tail > 0) & (last == 0)] = np.inf  # the tail lands in a bin Q says is empty
    kl[below == 0] = np.inf
    return kl


def compute_amax(stats: TensorStats, calibrator: str, percentile: float = 99.99) -> float:
    """The amax of ``stats`` under the named calibrator."""
    funcs: dict[str, Callable[[TensorStats], float]] = {
        "minmax": minmax_amax,
        "entropy": entropy_amax,
        "percentile": lambda s: percentile_amax(s, percentile),
    }
    try:
        func = funcs[calibrator]
    except KeyError:
        raise CalibrationError(
            f"unknown calibrator {calibrator!r}; choose one of {', '.join(CALIBRATORS)}"
        ) from None
    return func(stats)


def scale_from_amax(amax: float) -> float:
    """Symmetric int8 scale for ``amax`` (a tensor that is always 0 gets scale 1)."""
    return float(amax) / INT8_MAX if amax > 0 and np.isfinite(amax) else 1.0
