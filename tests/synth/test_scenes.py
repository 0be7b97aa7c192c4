"""Scenes: determinism, and annotations that agree with the pixels drawn."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.synth.dataset import image_rng, render_image
from edge_infer.synth.scenes import (
    MIN_VISIBLE,
    Composer,
    make_background,
    render_scene,
    sample_size,
)
from edge_infer.synth.shapes import CLASSES, draw_sprite, warp_sprite


def test_same_seed_same_image() -> None:
    a, anns_a = render_image("train", 5, 3, 160)
    b, anns_b = render_image("train", 5, 3, 160)
    assert np.array_equal(a, b)
    assert anns_a == anns_b


def test_splits_seeds_and_indices_differ() -> None:
    base = render_image("train", 5, 3, 96)[0]
    for other in (("val", 5, 3), ("calib", 5, 3), ("train", 6, 3), ("train", 5, 4)):
        assert not np.array_equal(base, render_image(*other, 96)[0]), other


def test_unknown_split_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown split"):
        image_rng("test", 0, 0)


@pytest.mark.parametrize("seed", range(6))
def test_annotations_cover_exactly_the_changed_pixels(seed: int) -> None:
    # without camera effects every pixel that differs from the background belongs to an object,
    # so it must lie inside some annotated box, and every box must touch its four edges
    h, w = 192, 256
    frame, anns = render_scene(np.random.default_rng(seed), h, w, max_objects=8, effects=False)
    background = make_background(np.random.default_rng(seed), h, w)
    changed = (frame != background).any(axis=2)
    covered = np.zeros_like(changed)
    assert anns, "every scene has at least one object"
    for a in anns:
        x, y, bw, bh = (int(v) for v in a.bbox)
        assert 0 <= a.class_id < len(CLASSES)
        assert x >= 0 and y >= 0 and x + bw <= w and y + bh <= h
        assert MIN_VISIBLE - 1e-9 <= a.visible <= 1.0
        box = changed[y : y + bh, x : x + bw]
        assert box[0].any() and box[-1].any() and box[:, 0].any() and box[:, -1].any()
        covered[y : y + bh, x : x + bw] = True
    assert not (changed & ~covered).any()


def test_composer_box_is_the_visible_part() -> None:
    comp = Composer(np.zeros((100, 100, 3), np.uint8))
    square = np.full((20, 20), 255, np.uint8)
    comp.paste(np.full((20, 20, 3), 200, np.uint8), square, 10, 10, 0)
    assert comp.fits(square, 22, 10)  # leaves 60% of the first square visible
    assert not comp.fits(square, 20, 10)  # would leave only half of it
    comp.paste(np.full((20, 20, 3), 100, np.uint8), square, 22, 10, 1)
    comp.paste(np.full((20, 20, 3), 50, np.uint8), square, 90, 90, 2)  # clipped by the frame
    anns = comp.annotations()
    assert [a.bbox for a in anns] == [
        (10.0, 10.0, 12.0, 20.0),
        (22.0, 10.0, 20.0, 20.0),
        (90.0, 90.0, 10.0, 10.0),
    ]
    assert anns[0].visible == pytest.approx(0.6)
    assert anns[2].visible == pytest.approx(0.25)


@pytest.mark.parametrize("class_id", range(len(CLASSES)))
def test_sprites_fill_their_canvas(class_id: int) -> None:
    rng = np.random.default_rng(class_id)
    for size in (12, 40, 120):
        s = draw_sprite(class_id, size, rng)
        assert max(s.mask.shape) == pytest.approx(size, abs=1)
        assert np.count_nonzero(s.mask) > 0.15 * s.mask.size  # a shape, not a speck
        assert set(np.unique(s.mask)) <= {0, 255}
        for angle in (0.0, 30.0):
            img, mask = warp_sprite(s, angle)
            # cropped to the drawing: it touches every side, so boxes from masks are tight
            assert img.shape[:2] == mask.shape
            assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()


def test_sizes_span_the_issue_range() -> None:
    rng = np.random.default_rng(0)
    sizes = np.array([sample_size(rng, 360, 640) for _ in range(2000)])
    assert sizes.min() >= 12 and sizes.max() <= 0.4 * 360
    assert sizes.min() < 14 and sizes.max() > 130


def test_bad_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="too small"):
        render_scene(rng, 16, 16)
    with pytest.raises(ValueError, match="class_id"):
        draw_sprite(9, 20, rng)
