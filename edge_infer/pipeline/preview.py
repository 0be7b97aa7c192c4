"""Preview images: a frame with its detections drawn, and a mosaic of many cameras."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_infer.pipeline.workers import FrameResult


def label_of(class_id: int, names: list[str]) -> str:
    """The class name of ``class_id``, or ``class<N>`` when the list has none."""
    return names[class_id] if 0 <= class_id < len(names) else f"class{class_id}"


def put_label(
    img: np.ndarray, text: str, anchor: tuple[int, int], color: tuple[int, ...], scale: float = 0.4
) -> None:
    """``text`` on a filled box in ``color`` with black or white letters (whichever contrasts),
    placed above ``anchor`` (x, y) when it fits, below otherwise, and always inside ``img``."""
    font, thick = cv2.FONT_HERSHEY_SIMPLEX, 1
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    h, w = img.shape[:2]
    bw, bh = min(tw + 4, w), th + base + 4
    x = min(max(0, anchor[0]), max(0, w - bw))
    y = anchor[1] - bh if anchor[1] - bh >= 0 else anchor[1]
    y = min(max(0, y), max(0, h - bh))
    cv2.rectangle(img, (x, y), (x + bw - 1, y + bh - 1), color, cv2.FILLED)
    luma = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]  # BGR
    ink = (0, 0, 0) if luma > 128 else (255, 255, 255)
    cv2.putText(img, text, (x + 2, y + th + 2), font, scale, ink, thick, cv2.LINE_AA)


def draw_detections(
    image: np.ndarray, r: FrameResult, class_names: list[str], max_width: int
) -> np.ndarray:
    """A copy of the frame, scaled to ``max_width`` at most, with boxes and labels drawn."""
    h, w = image.shape[:2]
    scale = min(1.0, max_width / w)
    out = cv2.resize(image, (round(w * scale), round(h * scale))) if scale < 1 else image.copy()
    for box, s, c in zip(r.detections.boxes, r.detections.scores, r.detections.classes):
        x1, y1, x2, y2 = (round(float(v) * scale) for v in box)
        color = tuple(int(v) for v in np.random.default_rng(int(c)).integers(64, 256, 3))
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 2)
        put_label(out, f"{label_of(int(c), class_names)} {s:.2f}", (x1, y1), color)
    return out


def mosaic(previews: dict[str, bytes], path: Path) -> bool:
    """Tile the latest preview of every camera into one JPEG."""
    tiles = []
    for cam in sorted(previews):
        img = cv2.imdecode(np.frombuffer(previews[cam], np.uint8), cv2.IMREAD_COLOR)
        if img is not None:
            img = cv2.resize(img, (320, 180))
            put_label(img, cam, (0, 0), (32, 32, 32), scale=0.5)
            tiles.append(img)
    if not tiles:
        return False
    cols = 4 if len(tiles) > 4 else len(tiles)
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)]
    return bool(cv2.imwrite(str(path), np.vstack(rows)))
