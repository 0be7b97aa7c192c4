"""Greedy CTC decoding: runs merged, blanks dropped, lengths, alphabets, both layouts."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.errors import EdgeInferError
from edge_infer.pipeline.ctc import greedy_decode

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def one_hot_logits(paths: list[list[int]], classes: int = 37) -> np.ndarray:
    """[T, B, C] logits whose argmax follows ``paths`` (one list of classes per item)."""
    steps = max(len(p) for p in paths)
    x = np.zeros((steps, len(paths), classes), np.float32)
    for b, path in enumerate(paths):
        for t in range(steps):
            x[t, b, path[t] if t < len(path) else 0] = 5.0
    return x


def test_runs_merge_and_blanks_split_repeats() -> None:
    # "--AA-B-BB--" with blank 0: A=11, B=12
    path = [0, 0, 11, 11, 0, 12, 0, 12, 12, 0, 0]
    (result,) = greedy_decode(one_hot_logits([path]), alphabet=ALPHABET)
    assert result.labels == (11, 12, 12)
    assert result.text == "ABB"
    expected = np.exp(5.0) / (np.exp(5.0) + 36)
    assert result.confidence == pytest.approx(expected, rel=1e-6)


def test_batch_major_lengths_and_empty() -> None:
    paths = [[1, 1, 2, 0, 3], [0, 0, 0, 0, 0], [4, 0, 4, 5, 5]]
    x = one_hot_logits(paths)
    time_major = greedy_decode(x, alphabet=ALPHABET)
    batch_major = greedy_decode(np.swapaxes(x, 0, 1).copy(), time_axis=1, alphabet=ALPHABET)
    assert time_major == batch_major
    assert [r.text for r in time_major] == ["012", "", "334"]
    assert time_major[1].labels == () and time_major[1].confidence == 1.0
    short = greedy_decode(x, lengths=[2, 5, 3])
    assert [r.labels for r in short] == [(1,), (), (4, 4)]


def test_other_blank_index() -> None:
    x = one_hot_logits([[2, 2, 36, 3, 36, 3]])
    (result,) = greedy_decode(x, blank=36, alphabet=ALPHABET[:36])
    assert result.labels == (2, 3, 3)
    assert result.text == "233"


def test_bad_arguments_say_what_is_expected() -> None:
    x = one_hot_logits([[1, 2]])
    with pytest.raises(EdgeInferError, match="needs 36"):
        greedy_decode(x, alphabet="ABC")
    with pytest.raises(EdgeInferError, match=r"\[T, B, C\]"):
        greedy_decode(x[0])
    with pytest.raises(EdgeInferError, match="blank=37"):
        greedy_decode(x, blank=37)
    with pytest.raises(EdgeInferError, match="outside 0..2"):
        greedy_decode(x, lengths=[3])
