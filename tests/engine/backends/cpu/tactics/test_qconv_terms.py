"""qconv_terms' vectorized pair sums, conflicts and matching against the loops they replace
(kept here as the reference): the same term orders, paired counts and limit rows, bit for
bit, on random layers whose heavy terms break some consecutive pairs."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu.tactics.qconv_terms import pair_terms, shift_limits


def _sums(quads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q = quads.reshape(*quads.shape[:-1], 2, 2).astype(np.int16)
    return np.maximum(q, 0).sum(-1, dtype=np.int16), -np.minimum(q, 0).sum(-1, dtype=np.int16)


def _pair_terms_loops(terms: np.ndarray, span: int) -> tuple[np.ndarray, int]:
    t = terms.shape[1]
    natural = np.arange(t), t // 2 * 2
    if span >= 255 or t < 2:
        return natural
    pos, neg = (a.swapaxes(0, 1).reshape(t, -1) for a in _sums(terms))
    pmax, nmax = 32767 // span, 32768 // span
    even = np.arange(0, t - 1, 2)
    good = ((pos[even] + pos[even + 1]).max(axis=-1) <= pmax) & (
        (neg[even] + neg[even + 1]).max(axis=-1) <= nmax
    )
    if good.all():
        return natural
    pairs = [(int(u), int(u) + 1) for u in even[good]]
    left = np.setdiff1d(np.arange(t), np.asarray(pairs, np.int64).ravel())
    bad = np.eye(left.size, dtype=bool)
    for side, bound in ((pos, pmax), (neg, nmax)):
        sub = side[left]
        for u in np.flatnonzero((2 * sub > bound).any(axis=1)):
            cols = np.flatnonzero(2 * sub[u] > bound)
            bad[u] |= (sub[:, cols] > bound - sub[u, cols]).any(axis=1)
    bad |= bad.T
    degree = bad.sum(axis=1)
    free = np.ones(left.size, bool)
    for u in np.argsort(-degree, kind="stable"):
        if not free[u]:
            continue
        cand = np.flatnonzero(free & ~bad[u])
        if cand.size:
            v = int(cand[np.argmax(degree[cand])])
            free[u] = free[v] = False
            pairs.append((int(min(left[u], left[v])), int(max(left[u], left[v]))))
    if not pairs:
        return natural
    pairs.sort()
    first = np.asarray(pairs, np.int64).ravel()
    return np.concatenate([first, np.setdiff1d(np.arange(t), first)]), len(first)


def _shift_limits_loops(quads: np.ndarray, paired: int | None) -> np.ndarray:
    g, cq, taps, coutp, _ = quads.shape
    pos, neg = _sums(quads.reshape(g, cq * taps, coutp, 4))

    def limit(p: np.ndarray, n: np.ndarray) -> np.ndarray:
        p, n = p.max(axis=(1, 3)).astype(np.int32), n.max(axis=(1, 3)).astype(np.int32)
        return np.minimum(np.minimum(32767 // np.maximum(p, 1), 32768 // np.maximum(n, 1)), 255)

    even = cq * taps // 2 * 2 if paired is None else paired
    lim2 = (
        limit(pos[:, 0:even:2] + pos[:, 1:even:2], neg[:, 0:even:2] + neg[:, 1:even:2])
        if even
        else np.full((g, coutp), 255, np.int32)
    )
    return (limit(pos, neg) | lim2 << 16).astype(np.int32)


def _layer(rng: np.random.Generator, g: int, t: int, c: int, heavy: float) -> np.ndarray:
    """int8 terms [g, t, c, 4], small but for a ``heavy`` share of (term, channel) byte
    pairs of one sign near 127 or -128 (the extremes among them), most in channel 0."""
    q = rng.integers(-6, 7, (g, t, c, 2, 2)).astype(np.int8)
    hot = rng.random((g, t, c, 2)) < heavy
    hot[:, :, 0] = rng.random((g, t, 2)) < 6 * heavy
    big = rng.integers(40, 129, (g, t, c, 2, 2)) * rng.choice([-1, 1], (g, t, c, 2, 1))
    q[hot] = np.clip(big[hot], -128, 127)
    return q.reshape(g, t, c, 4)


@pytest.mark.parametrize("seed", range(6))
def test_same_orders_and_limits_as_the_loops(seed: int) -> None:
    rng = np.random.default_rng(seed)
    unpaired = 0
    for g, t, c, heavy in ((1, 64, 24, 0.05), (1, 97, 48, 0.03), (2, 36, 8, 0.1), (1, 9, 4, 0.15)):
        terms = _layer(rng, g, t, c, heavy)
        for span in (255, 127, 110, 90):
            order, paired = pair_terms(terms, span)
            want_order, want_paired = _pair_terms_loops(terms, span)
            np.testing.assert_array_equal(order, want_order)
            assert paired == want_paired
            unpaired += paired < t // 2 * 2
            quads = terms[:, order].reshape(g, t, 1, c, 4)
            for p in (None, paired, 0):
                got = shift_limits(quads, p)
                assert got.dtype == np.int32
                np.testing.assert_array_equal(got, _shift_limits_loops(quads, p))
    assert unpaired  # the matching left terms over
