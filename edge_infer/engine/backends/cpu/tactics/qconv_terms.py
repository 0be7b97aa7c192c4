"""The AVX2 int8 tiles' view of a QConv's weight terms (conv_int8.c tile_shift8): each output
channel's limits on the shifted activations it can read exactly in int16 (:func:`shift_limits`,
the weight array's limit row), and the order of the terms that lets the tiles read most of
them two at a time (:func:`pair_terms`) for the layer's input range (:func:`shift_span`).
Bound once per layer by :class:`~.cpu_qconv.QConvNative`."""

from __future__ import annotations

import numpy as np

from edge_infer.engine.tactics.quantized import QConvSpec


def shift_span(spec: QConvSpec) -> int:
    """The largest shifted activation x + k the AVX2 tiles can read for this layer: its int8
    input's range (QConvSpec.x_range) from its lowest value (or 0) up; 255 for a float input
    (quantized in the layout: any int8)."""
    if np.dtype(spec.x_dtype) != np.int8:
        return 255
    lo, hi = spec.x_range
    return int(hi) - min(int(lo), 0)


def pair_terms(terms: np.ndarray, span: int) -> tuple[np.ndarray, int]:
    """(order, paired): the terms of ``terms`` [groups, terms, coutp, 4] (int8 weight quads)
    in the order the AVX2 tiles read them, and how many leading ones they read two at a time
    (conv_int8.c tile_shift8's terms2: two terms' int16 pair sums added, exact where the
    shifted activations stay within the limit row's L2 of every channel). In their own order
    where every pair of consecutive terms holds ``span`` (or where no shifted tile can run,
    span >= 255); else the consecutive pairs that hold ``span`` in every channel and the pairs
    a greedy matching of the other terms finds, in the order of their first term, then the
    terms left over. ResNet-50's 3x3 layers at span 127: 76-85 % of consecutive pairs hold,
    most of the rest pair again."""
    t = terms.shape[1]
    natural = np.arange(t), t // 2 * 2
    if span >= 255 or t < 2:
        return natural
    # [terms, groups x channels x pairs]
    pos, neg = (a.swapaxes(0, 1).reshape(t, -1) for a in _pair_sums(terms))
    pmax, nmax = 32767 // span, 32768 // span

    def holds(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return ((pos[a] + pos[b]).max(axis=-1) <= pmax) & ((neg[a] + neg[b]).max(axis=-1) <= nmax)

    even = np.arange(0, t - 1, 2)
    good = holds(even, even + 1)
    if good.all():
        return natural
    # the consecutive pairs that hold stay; the others' terms (and an odd last one) are
    # matched again among themselves: the most conflicting term first, with the free partner
    # that conflicts with the most
    pairs = [(int(u), int(u) + 1) for u in even[good]]
    left = _others(t, np.asarray(pairs, np.int64).ravel())
    bad = _conflicts(pos[left], pmax) | _conflicts(neg[left], nmax)
    degree = bad.sum(axis=1)
    # the matching in rank order (degree down, then index): the terms as bits of Python
    # ints, so that a term's free partner of the highest degree is the lowest bit set
    rank = np.argsort(-degree, kind="stable")
    rows = np.packbits(bad[np.ix_(rank, rank)], axis=1, bitorder="little")
    bad_bits = [int.from_bytes(row.tobytes(), "little") for row in rows]
    free = (1 << left.size) - 1
    for i in range(left.size):
        if not free >> i & 1:
            continue
        cand = free & ~bad_bits[i]
        if cand:
            j = (cand & -cand).bit_length() - 1
            free &= ~(1 << i | 1 << j)
            u, v = int(left[rank[i]]), int(left[rank[j]])
            pairs.append((min(u, v), max(u, v)))
    if not pairs:
        return natural
    pairs.sort()
    first = np.asarray(pairs, np.int64).ravel()
    rest = _others(t, first)
    return np.concatenate([first, rest]), len(first)


def _others(t: int, taken: np.ndarray) -> np.ndarray:
    """The terms of range(t) not in ``taken``, in order (np.setdiff1d without its sort)."""
    free = np.ones(t, bool)
    free[taken] = False
    return np.flatnonzero(free)


def _conflicts(sub: np.ndarray, bound: int) -> np.ndarray:
    """[terms, terms] bool: the terms (rows of ``sub`` [terms, columns], their pair sums)
    that cannot pair, two of them breaking ``bound`` in some column (and each term with
    itself). A pair breaks a column's bound only where one of its terms is over half of
    it: each such (term, column) marks the terms the column's bound leaves no room for."""
    bad = np.eye(sub.shape[0], dtype=bool)
    u, col = np.nonzero(2 * sub > bound)
    if u.size:
        over = sub[:, col] > bound - sub[u, col]  # [terms, (term, column)]
        starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
        bad[u[starts]] |= np.logical_or.reduceat(over, starts, axis=1).T
    bad |= bad.T
    return bad


def shift_limits(quads: np.ndarray, paired: int | None = None) -> np.ndarray:
    """[groups, coutp] int32: each output channel's limits on the AVX2 tile's shifted
    activations (conv_int8.c tile_shift8). Low 16 bits: the largest L (at most 255) such
    that every pair of its weight quads' bytes (0, 1) and (2, 3) (the pairs vpmaddubsw adds
    in int16), times activations in [0, L], sums within int16: L * (the pair's positive
    weights) <= 32767 and L * (its negative weights) >= -32768, for every term. High 16
    bits: the same L2 for the 4 weights of a pair in two consecutive terms (0 and 1, 2 and
    3, ...: the tile adds their int16 sums before widening), over the first ``paired`` terms
    (default: all; the terms in quad-major order). From ``quads`` [groups, quads, taps,
    coutp, 4] int8."""

    g, cq, taps, coutp, _ = quads.shape
    pos, neg = _pair_sums(quads.reshape(g, cq * taps, coutp, 4))  # [groups, terms, coutp, 2]

    def limit(p: np.ndarray, n: np.ndarray) -> np.ndarray:
        p, n = p.max(axis=1), n.max(axis=1)  # [groups, coutp, 2]: then the two byte pairs
        p = np.maximum(p[..., 0], p[..., 1]).astype(np.int32)
        n = np.maximum(n[..., 0], n[..., 1]).astype(np.int32)
        lim = np.minimum(32767 // np.maximum(p, 1), 32768 // np.maximum(n, 1))
        return np.minimum(lim, 255).astype(np.int32)

    even = cq * taps // 2 * 2 if paired is None else paired
    lim2 = (
        limit(pos[:, 0:even:2] + pos[:, 1:even:2], neg[:, 0:even:2] + neg[:, 1:even:2])
        if even
        else np.full((g, coutp), 255, np.int32)
    )
    return limit(pos, neg) | lim2 << 16


def _pair_sums(quads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[..., 2] int16 each: the positive and the (negated) negative weights' sums of each
    byte pair (0, 1) and (2, 3) of ``quads`` [..., 4] int8, the pairs vpmaddubsw adds."""
    q = quads.astype(np.int16)
    pos, neg = np.maximum(q, 0), np.minimum(q, 0)
    neg = neg[..., 0::2] + neg[..., 1::2]  # (added two by two: a sum over an axis of 2 is slow)
    return pos[..., 0::2] + pos[..., 1::2], np.negative(neg, out=neg)


__all__ = ["pair_terms", "shift_limits", "shift_span"]
