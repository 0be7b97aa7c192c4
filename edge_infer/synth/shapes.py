"""Object sprites of the synthetic world: one drawing function per class.

Each sprite is drawn upright at its final size into its own small canvas, together with a
mask of exactly the pixels it covers; scenes then rotate and paste it. Drawing into image
and mask with the same primitives is what keeps annotations consistent with the pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

#: class names, in the order of the detector's class index
CLASSES: tuple[str, ...] = ("person", "car", "bicycle", "box", "sign", "ball")

#: width / height of each class's upright sprite (the longer side is the requested size)
_ASPECT: dict[str, tuple[float, float]] = {
    "person": (0.38, 0.5),
    "car": (1.8, 2.4),
    "bicycle": (1.45, 1.75),
    "box": (0.75, 1.35),
    "sign": (0.5, 0.7),
    "ball": (1.0, 1.0),
}

_SKIN = ((60, 90, 140), (90, 130, 190), (120, 170, 220), (40, 60, 100), (150, 190, 230))


@dataclass(frozen=True)
class Sprite:
    """An upright object drawing: BGR pixels and a 0/255 mask of the same height and width."""

    class_id: int
    image: np.ndarray
    mask: np.ndarray


def random_color(rng: np.random.Generator, min_value: int = 40) -> tuple[int, int, int]:
    """A random saturated-or-not BGR color whose HSV value is at least ``min_value``."""
    hsv = np.array(
        [[[rng.integers(0, 180), rng.integers(40, 256), rng.integers(min_value, 256)]]],
        dtype=np.uint8,
    )
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _shade(color: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in color)  # type: ignore[return-value]


class _Canvas:
    """Draws every primitive twice: in color on the image and in white on the mask."""

    def __init__(self, width: int, height: int) -> None:
        self.image = np.zeros((height, width, 3), np.uint8)
        self.mask = np.zeros((height, width), np.uint8)
        self.w, self.h = width, height

    def poly(self, pts: np.ndarray, color: tuple[int, int, int]) -> None:
        p = np.round(pts).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(self.image, [p], color, cv2.LINE_AA)
        cv2.fillPoly(self.mask, [p], 255, cv2.LINE_AA)

    def rect(self, x0: float, y0: float, x1: float, y1: float, color: tuple[int, int, int]) -> None:
        self.poly(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]), color)

    def circle(
        self, cx: float, cy: float, r: float, color: tuple[int, int, int], t: int = -1
    ) -> None:
        c, rr = (round(cx), round(cy)), max(1, round(r))
        cv2.circle(self.image, c, rr, color, t, cv2.LINE_AA)
        cv2.circle(self.mask, c, rr, 255, t, cv2.LINE_AA)

    def line(self, p0: tuple[float, float], p1: tuple[float, float], color, t: int) -> None:
        a, b = (round(p0[0]), round(p0[1])), (round(p1[0]), round(p1[1]))
        cv2.line(self.image, a, b, color, max(1, t), cv2.LINE_AA)
        cv2.line(self.mask, a, b, 255, max(1, t), cv2.LINE_AA)

    def paint(self, pts: np.ndarray, color: tuple[int, int, int]) -> None:
        """Fill on the image only, inside an area already covered by the mask (details)."""
        p = np.round(pts).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(self.image, [p], color, cv2.LINE_AA)


def _person(c: _Canvas, rng: np.random.Generator) -> None:
    w, h = c.w, c.h
    shirt, pants = random_color(rng), random_color(rng, 20)
    skin = _SKIN[int(rng.integers(len(_SKIN)))]
    limb = max(1, round(w * 0.16))
    head_r = h * 0.1
    c.circle(w / 2, head_r + 1, head_r, skin)
    # arms first so the torso covers the shoulder joints
    swing = rng.uniform(-0.15, 0.15) * h
    c.line((w * 0.3, h * 0.27), (w * 0.07, h * 0.55 + swing), shirt, limb)
    c.line((w * 0.7, h * 0.27), (w * 0.93, h * 0.55 - swing), shirt, limb)
    c.poly(
        np.array(
            [[w * 0.25, h * 0.22], [w * 0.75, h * 0.22], [w * 0.7, h * 0.58], [w * 0.3, h * 0.58]]
        ),
        shirt,
    )
    step = rng.uniform(0.0, 0.2) * w
    c.line((w * 0.4, h * 0.56), (w * 0.3 - step, h - limb / 2 - 1), pants, limb + 1)
    c.line((w * 0.6, h * 0.56), (w * 0.7 + step, h - limb / 2 - 1), pants, limb + 1)


def _car(c: _Canvas, rng: np.random.Generator) -> None:
    w, h = c.w, c.h
    body = random_color(rng)
    glass = (int(rng.integers(120, 200)), int(rng.integers(100, 170)), int(rng.integers(60, 120)))
    c.poly(
        np.array(
            [[w * 0.22, h * 0.42], [w * 0.32, h * 0.02], [w * 0.7, h * 0.02], [w * 0.82, h * 0.42]]
        ),
        _shade(body, 0.85),
    )
    c.paint(
        np.array(
            [[w * 0.28, h * 0.4], [w * 0.35, h * 0.1], [w * 0.49, h * 0.1], [w * 0.49, h * 0.4]]
        ),
        glass,
    )
    c.paint(
        np.array(
            [[w * 0.53, h * 0.4], [w * 0.53, h * 0.1], [w * 0.67, h * 0.1], [w * 0.75, h * 0.4]]
        ),
        glass,
    )
    c.rect(0, h * 0.38, w - 1, h * 0.8, body)
    c.paint(
        np.array(
            [
                [w - w * 0.06, h * 0.48],
                [w - 1, h * 0.48],
                [w - 1, h * 0.58],
                [w - w * 0.06, h * 0.58],
            ]
        ),
        (90, 230, 250),
    )
    r = h * 0.2
    for cx in (w * 0.22, w * 0.78):
        c.circle(cx, h - r - 1, r, (25, 25, 25))
        c.circle(cx, h - r - 1, r * 0.45, (150, 150, 150))


def _bicycle(c: _Canvas, rng: np.random.Generator) -> None:
    w, h = c.w, c.h
    frame = random_color(rng)
    t = max(1, round(h * 0.06))
    r = h * 0.31
    rear, front = (r + t, h - r - t), (w - r - t, h - r - t)
    tire = (30, 30, 30)
    c.circle(*rear, r, tire, t + 1)
    c.circle(*front, r, tire, t + 1)
    pedal = (w * 0.47, rear[1])
    seat = (w * 0.4, h * 0.22)
    bar = (w * 0.74, h * 0.12)
    for a, b in (
        (rear, pedal),
        (pedal, seat),
        (seat, rear),
        (pedal, (w * 0.72, h * 0.3)),
        (seat, (w * 0.72, h * 0.3)),
        (bar, front),
    ):
        c.line(a, b, frame, t)
    c.line((seat[0] - w * 0.07, h * 0.2), (seat[0] + w * 0.06, h * 0.2), (20, 20, 20), t + 1)
    c.line((bar[0] - w * 0.05, bar[1]), (bar[0] + w * 0.07, bar[1]), (20, 20, 20), t)


def _box(c: _Canvas, rng: np.random.Generator) -> None:
    w, h = c.w, c.h
    color = random_color(rng)
    d = rng.uniform(0.15, 0.3)
    dx, dy = w * d, h * d
    c.poly(np.array([[0, dy], [dx, 0], [w - 1, 0], [w - dx, dy]]), _shade(color, 1.25))
    c.poly(
        np.array([[w - dx, dy], [w - 1, 0], [w - 1, h - dy], [w - dx, h - 1]]), _shade(color, 0.65)
    )
    c.rect(0, dy, w - dx, h - 1, color)
    tape = _shade(color, 0.5) if rng.random() < 0.5 else (200, 220, 230)
    tw = max(1.0, w * 0.06)
    cx = (w - dx) / 2
    c.paint(np.array([[cx - tw, dy], [cx + tw, dy], [cx + tw, h - 1], [cx - tw, h - 1]]), tape)


def _sign(c: _Canvas, rng: np.random.Generator) -> None:
    w, h = c.w, c.h
    plate = random_color(rng)
    pole_w = max(1, round(w * 0.12))
    c.rect(w / 2 - pole_w / 2, w * 0.5, w / 2 + pole_w / 2, h - 1, (140, 140, 150))
    kind = int(rng.integers(3))
    cx, cy, r = w / 2, w / 2, w / 2 - 0.5
    if kind == 0:  # octagon
        ang = np.pi / 8 + np.arange(8) * np.pi / 4
    elif kind == 1:  # triangle, point up
        ang = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
    else:  # diamond
        ang = np.arange(4) * np.pi / 2
    pts = np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], 1)
    c.poly(pts, (235, 235, 235))
    c.poly(cx + (pts - cx) * 0.8, plate)


def _ball(c: _Canvas, rng: np.random.Generator) -> None:
    w, h = c.w, c.h
    color = np.array(random_color(rng, 90), np.float32)
    r = (min(w, h) - 1) / 2
    c.circle((w - 1) / 2, (h - 1) / 2, r, (0, 0, 0))
    # radial shading towards a highlight at the upper left makes it read as a sphere
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    hx, hy = w * 0.35, h * 0.35
    dist = np.sqrt((xx - hx) ** 2 + (yy - hy) ** 2) / max(r * 1.6, 1.0)
    shade = np.clip(1.25 - dist, 0.35, 1.25)[..., None]
    c.image[:] = np.clip(color * shade, 0, 255).astype(np.uint8)
    c.image[c.mask == 0] = 0
    if rng.random() < 0.5 and r > 6:
        cv2.ellipse(
            c.image,
            (round(w / 2), round(h / 2)),
            (round(r * 0.9), round(r * 0.35)),
            float(rng.uniform(0, 180)),
            0,
            360,
            (240, 240, 240),
            max(1, round(r * 0.08)),
            cv2.LINE_AA,
        )
        c.image[c.mask == 0] = 0


_DRAW: dict[str, Callable[[_Canvas, np.random.Generator], None]] = {
    "person": _person,
    "car": _car,
    "bicycle": _bicycle,
    "box": _box,
    "sign": _sign,
    "ball": _ball,
}


def draw_sprite(class_id: int, size: float, rng: np.random.Generator) -> Sprite:
    """Draw an upright sprite of class ``class_id`` whose longer side is ``size`` pixels."""
    if not 0 <= class_id < len(CLASSES):
        raise ValueError(f"class_id {class_id} is not in 0..{len(CLASSES) - 1}")
    if size < 4:
        raise ValueError(f"sprite size {size} px is below the 4 px minimum")
    name = CLASSES[class_id]
    lo, hi = _ASPECT[name]
    aspect = float(rng.uniform(lo, hi))  # width / height
    if aspect >= 1:
        w, h = size, size / aspect
    else:
        w, h = size * aspect, size
    canvas = _Canvas(max(3, round(w)), max(3, round(h)))
    _DRAW[name](canvas, rng)
    canvas.mask[canvas.mask < 128] = 0
    canvas.mask[canvas.mask >= 128] = 255
    return Sprite(class_id, canvas.image, canvas.mask)


def warp_sprite(
    sprite: Sprite, angle_deg: float, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate (counter-clockwise, degrees) and scale a sprite into a canvas that fits it.

    Returns the warped BGR image and its 0/255 mask; both are cropped to the mask's extent.
    """
    h, w = sprite.mask.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, scale)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(np.ceil(h * sin + w * cos)) + 2, int(np.ceil(h * cos + w * sin)) + 2
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    img = cv2.warpAffine(sprite.image, m, (nw, nh), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(sprite.mask, m, (nw, nh), flags=cv2.INTER_LINEAR)
    mask = np.where(mask >= 128, 255, 0).astype(np.uint8)
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return img[:1, :1], mask[:1, :1]
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return img[y0:y1, x0:x1], mask[y0:y1, x0:x1]
