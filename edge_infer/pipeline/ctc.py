"""Greedy (best-path) CTC decoding of a recognizer's logits, e.g. the zoo's CRNN.

At every time step take the most likely class, merge runs of the same class, drop the blank:
``"--AA-B-BB--"`` → ``"ABB"`` with blank ``-``. That is the standard decoder for licence-plate
and OCR models read in real time (beam search rarely changes a plate). numpy only, no cv2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_infer.errors import EdgeInferError


@dataclass(frozen=True)
class CtcResult:
    """One decoded sequence: class indices (blank removed), the text when an alphabet was
    given, and a confidence — the mean softmax probability of the kept steps' classes (1.0
    for an empty result: every step was confidently blank or a repeat)."""

    labels: tuple[int, ...]
    text: str | None
    confidence: float


def greedy_decode(
    logits: np.ndarray,
    *,
    blank: int = 0,
    time_axis: int = 0,
    lengths: Sequence[int] | None = None,
    alphabet: str | Sequence[str] | None = None,
) -> list[CtcResult]:
    """Decode ``logits`` of shape ``[T, B, C]`` (``time_axis=0``, the CRNN's layout) or
    ``[B, T, C]`` (``time_axis=1``); returns one :class:`CtcResult` per batch item.

    ``lengths``: valid steps per item (the rest is padding). ``alphabet``: the symbol of
    every non-blank class in order (``alphabet[k - 1]`` for class ``k`` when ``blank == 0``;
    for another blank index, the classes other than the blank in increasing order).
    Log-probabilities or probabilities work as well as logits (the argmax is the same; the
    confidence assumes logits or log-probabilities).
    """
    x = np.asarray(logits)
    if x.ndim != 3 or time_axis not in (0, 1):
        raise EdgeInferError(
            f"CTC decode: logits must be [T, B, C] or [B, T, C] (time_axis 0 "
            f"or 1), got shape {x.shape} with time_axis={time_axis}"
        )
    if time_axis == 0:
        x = np.swapaxes(x, 0, 1)  # [B, T, C]
    batch, steps, classes = x.shape
    if not 0 <= blank < classes:
        raise EdgeInferError(f"CTC decode: blank={blank} is not a class index (0..{classes - 1})")
    symbols = list(alphabet) if alphabet is not None else None
    if symbols is not None and len(symbols) != classes - 1:
        raise EdgeInferError(
            f"CTC decode: the alphabet has {len(symbols)} symbols; the model "
            f"has {classes} classes, so it needs {classes - 1} (blank excluded)"
        )
    if lengths is not None and len(lengths) != batch:
        raise EdgeInferError(f"CTC decode: {len(lengths)} lengths for a batch of {batch}")
    best = np.argmax(x, axis=2)  # [B, T]
    # softmax probability of the best class, computed stably in float64
    xf = x.astype(np.float64)
    top = np.take_along_axis(xf, best[..., None], axis=2)[..., 0]
    prob = 1.0 / np.exp(xf - top[..., None]).sum(axis=2)
    results = []
    for b in range(batch):
        n = steps if lengths is None else int(lengths[b])
        if not 0 <= n <= steps:
            raise EdgeInferError(f"CTC decode: length {n} of item {b} is outside 0..{steps}")
        path = best[b, :n]
        keep = path != blank
        keep[1:] &= path[1:] != path[:-1]  # the first step of every run
        labels = tuple(int(k) for k in path[keep])
        confidence = float(prob[b, :n][keep].mean()) if keep.any() else 1.0
        text = None
        if symbols is not None:
            text = "".join(symbols[k - (k > blank)] for k in labels)
        results.append(CtcResult(labels, text, confidence))
    return results
