"""Scenes of the synthetic world: backgrounds, object placement, camera effects.

A scene is a textured background with sprites pasted in order (later ones occlude earlier
ones) and then the camera's effects (lighting, blur, noise, JPEG). Every annotation is the
box of the pixels its object still owns after all pasting, so ground truth and pixels agree.
Everything is a pure function of a ``numpy.random.Generator``: the same seed gives the same
image, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_infer.synth.shapes import CLASSES, draw_sprite, warp_sprite

#: an object must keep this fraction of its pixels visible, or the placement is retried
MIN_VISIBLE = 0.6
#: objects whose visible box is smaller than this (pixels, either side) are not annotated
MIN_BOX_SIDE = 4


@dataclass(frozen=True)
class Annotation:
    """One object of a frame: class index and visible box ``(x, y, w, h)`` in pixels."""

    class_id: int
    bbox: tuple[float, float, float, float]
    visible: float = 1.0

    def to_dict(self) -> dict[str, object]:
        return {
            "class_id": self.class_id,
            "class_name": CLASSES[self.class_id],
            "bbox": [round(v, 2) for v in self.bbox],
            "visible": round(self.visible, 3),
        }


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    small = rng.random((max(2, h * cells // max(h, w)), max(2, w * cells // max(h, w))))
    return cv2.resize(small.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)


def make_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A textured background: gradient, floor tiles or stripes, smooth blotches, clutter."""
    c0 = rng.uniform(30, 220, 3).astype(np.float32)
    c1 = rng.uniform(30, 220, 3).astype(np.float32)
    kind = int(rng.integers(3))
    if kind == 0:  # gradient in a random direction
        ang = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        t = xx * np.cos(ang) + yy * np.sin(ang)
        t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
    elif kind == 1:  # floor tiles of low contrast
        tile = int(rng.integers(12, 60))
        yy, xx = np.mgrid[0:height, 0:width]
        t = (((xx // tile) + (yy // tile)) % 2).astype(np.float32) * rng.uniform(0.1, 0.35)
    else:  # soft stripes
        period = rng.uniform(15, 80)
        ang = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        t = 0.5 + 0.25 * np.sin((xx * np.cos(ang) + yy * np.sin(ang)) * 2 * np.pi / period)
    img = c0 + (c1 - c0) * t[..., None]
    blotch = _smooth_noise(rng, height, width, int(rng.integers(3, 12))) - 0.5
    img += blotch[..., None] * rng.uniform(20, 70) * rng.uniform(0.5, 1.0, 3).astype(np.float32)
    img += rng.normal(0, rng.uniform(2, 8), (height, width, 1)).astype(np.float32)
    out = np.clip(img, 0, 255).astype(np.uint8)
    # clutter: thin lines and soft ellipses that are not objects of any class
    for _ in range(int(rng.integers(0, 8))):
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            p0 = (int(rng.integers(width)), int(rng.integers(height)))
            p1 = (int(rng.integers(width)), int(rng.integers(height)))
            cv2.line(out, p0, p1, color, int(rng.integers(1, 3)), cv2.LINE_AA)
        else:
            center = (int(rng.integers(width)), int(rng.integers(height)))
            major = int(rng.integers(8, max(9, width // 4)))
            axes = (major, int(rng.integers(2, max(3, major // 4))))
            cv2.ellipse(
                out, center, axes, float(rng.uniform(0, 180)), 0, 360, color, -1, cv2.LINE_AA
            )
    return cv2.GaussianBlur(out, (3, 3), 0)


def sample_size(rng: np.random.Generator, height: int, width: int, min_size: float = 12.0) -> float:
    """Longer side of a new object, between ``min_size`` and 40% of the frame.

    Roughly log-uniform, leaning a little towards larger objects (``u ** 0.8``).
    """
    hi = max(min_size + 1, 0.4 * min(height, width))
    u = float(rng.random()) ** 0.8
    return float(np.exp(np.log(min_size) + u * (np.log(hi) - np.log(min_size))))


def sample_angle(rng: np.random.Generator, class_id: int) -> float:
    """In-plane rotation in degrees: upright things lean a little, boxes and balls more."""
    spread = {"box": 35.0, "ball": 180.0}.get(CLASSES[class_id], 15.0)
    return float(rng.uniform(-spread, spread))


class Composer:
    """Pastes object pixels onto a frame and tracks which object owns each pixel."""

    def __init__(self, frame: np.ndarray) -> None:
        self.frame = frame
        self.owner = np.full(frame.shape[:2], -1, np.int16)  # objects per frame < 32768
        self.areas: list[int] = []
        self.classes: list[int] = []
        #: the frame region each object was pasted into (None when fully off-frame)
        self.regions: list[tuple[slice, slice] | None] = []

    def fits(self, mask: np.ndarray, x: int, y: int) -> bool:
        """Whether pasting ``mask`` at ``(x, y)`` leaves every earlier object visible enough."""
        region, m = self._clip(mask, x, y)
        if region is None or m is None:
            return False
        covered = self.owner[region][m]
        covered = covered[covered >= 0]
        if covered.size == 0:
            return True
        ids, lost = np.unique(covered, return_counts=True)
        for i, n in zip(ids, lost):
            still = int(np.count_nonzero(self.owner[self.regions[i]] == i)) - int(n)
            if still < MIN_VISIBLE * self.areas[i]:
                return False
        return True

    def paste(self, image: np.ndarray, mask: np.ndarray, x: int, y: int, class_id: int) -> None:
        """Paste sprite pixels with their top-left corner at ``(x, y)`` (clipped to the frame)."""
        region, m = self._clip(mask, x, y)
        self.areas.append(int(np.count_nonzero(mask)))
        self.classes.append(class_id)
        self.regions.append(region)
        if region is None or m is None:
            return
        ys, xs = region
        sy = slice(ys.start - y, ys.stop - y)
        sx = slice(xs.start - x, xs.stop - x)
        self.frame[region][m] = image[sy, sx][m]
        self.owner[region][m] = len(self.classes) - 1

    def annotations(self) -> list[Annotation]:
        """Visible boxes of every pasted object, in paste order, small remnants left out."""
        return list(self.annotations_by_index().values())

    def annotations_by_index(self) -> dict[int, Annotation]:
        """Like :meth:`annotations`, keyed by the paste index of each object."""
        out: dict[int, Annotation] = {}
        for i, cls in enumerate(self.classes):
            region = self.regions[i]
            if region is None:
                continue
            ys, xs = np.nonzero(self.owner[region] == i)
            if len(xs) == 0:
                continue
            ox, oy = region[1].start, region[0].start
            x0, x1 = ox + int(xs.min()), ox + int(xs.max()) + 1
            y0, y1 = oy + int(ys.min()), oy + int(ys.max()) + 1
            if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
                continue
            vis = len(xs) / max(self.areas[i], 1)
            out[i] = Annotation(cls, (float(x0), float(y0), float(x1 - x0), float(y1 - y0)), vis)
        return out

    def _clip(self, mask: np.ndarray, x: int, y: int):
        h, w = self.owner.shape
        mh, mw = mask.shape
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + mw, w), min(y + mh, h)
        if x1 <= x0 or y1 <= y0:
            return None, None
        region = (slice(y0, y1), slice(x0, x1))
        return region, mask[y0 - y : y1 - y, x0 - x : x1 - x] > 0


def apply_camera(frame: np.ndarray, rng: np.random.Generator, jpeg: bool = True) -> np.ndarray:
    """Lighting change, optional blur, sensor noise and JPEG artifacts, in camera order."""
    img = frame.astype(np.float32)
    gain, bias = rng.uniform(0.65, 1.35), rng.uniform(-25, 25)
    img = img * gain + bias
    if rng.random() < 0.3:  # colour cast of the light source
        img *= rng.uniform(0.85, 1.15, 3).astype(np.float32)
    img = np.clip(img, 0, 255)
    if rng.random() < 0.3:
        gamma = rng.uniform(0.7, 1.4)
        img = 255.0 * (img / 255.0) ** gamma
    if rng.random() < 0.35:
        k = int(rng.choice([3, 5]))
        img = cv2.GaussianBlur(img, (k, k), rng.uniform(0.5, 1.2))
    sigma = rng.uniform(0, 8)
    if sigma > 1:
        img += rng.normal(0, sigma, img.shape).astype(np.float32)
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    if jpeg and rng.random() < 0.7:
        q = int(rng.integers(30, 96))
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


def render_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    max_objects: int = 8,
    min_objects: int = 1,
    effects: bool = True,
) -> tuple[np.ndarray, list[Annotation]]:
    """Render one still scene; returns the BGR frame and its visible-box annotations."""
    if height < 32 or width < 32:
        raise ValueError(f"scene of {width}x{height} px is too small (minimum 32x32)")
    if not 0 <= min_objects <= max_objects:
        raise ValueError(f"need 0 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    comp = Composer(make_background(rng, height, width))
    n = int(rng.integers(min_objects, max_objects + 1))
    for _ in range(n):
        cls = int(rng.integers(len(CLASSES)))
        sprite = draw_sprite(cls, sample_size(rng, height, width), rng)
        img, mask = warp_sprite(sprite, sample_angle(rng, cls))
        mh, mw = mask.shape
        for _try in range(10):
            x = int(rng.integers(0, max(1, width - mw + 1)))
            y = int(rng.integers(0, max(1, height - mh + 1)))
            if comp.fits(mask, x, y):
                comp.paste(img, mask, x, y, cls)
                break
    frame = apply_camera(comp.frame, rng) if effects else comp.frame
    return frame, comp.annotations()
