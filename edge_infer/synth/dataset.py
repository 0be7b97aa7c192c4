"""COCO-format image datasets of the synthetic world (train / val / calib splits).

Image ``i`` of split ``s`` with seed ``k`` is rendered from the random stream
``SeedSequence([split_id(s), k, i])``: splits never share a stream, and the result does not
depend on how many worker processes render it.

Layout written under ``out``::

    out/<split>.json           COCO annotations; file names are relative to ``out``
    out/<split>/000000.jpg     images
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_infer.atomic import write_bytes_atomic
from edge_infer.synth.scenes import Annotation, render_scene
from edge_infer.synth.shapes import CLASSES

#: stream id of each split; part of every image's seed so that splits are disjoint
SPLITS: dict[str, int] = {"train": 0, "val": 1, "calib": 2}
JPEG_QUALITY = 95


def _split_id(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    return SPLITS[split]


def image_rng(split: str, seed: int, index: int) -> np.random.Generator:
    """The random stream of image ``index`` of ``split`` under ``seed``."""
    return np.random.default_rng([_split_id(split), int(seed), int(index)])


def render_image(
    split: str, seed: int, index: int, size: int = 320
) -> tuple[np.ndarray, list[Annotation]]:
    """Render image ``index`` of a split: a ``size``×``size`` BGR frame and its annotations."""
    return render_scene(image_rng(split, seed, index), size, size)


def coco_categories() -> list[dict[str, Any]]:
    """COCO categories; category id = class index + 1 (model class ``c`` is id ``c + 1``)."""
    return [{"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(CLASSES)]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (no torn files)."""
    write_bytes_atomic(path, data)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically."""
    atomic_write_bytes(path, json.dumps(obj, separators=(",", ":")).encode())


def worker_init() -> None:
    """Initializer of generator worker processes: one process per core is the parallelism,
    so OpenCV's own thread pool would only oversubscribe the CPU."""
    cv2.setNumThreads(1)


def _render_chunk(job: tuple[str, str, int, int, list[int]]) -> list[tuple[int, list[dict]]]:
    out_dir, split, seed, size, indices = job
    results = []
    for i in indices:
        img, anns = render_image(split, seed, i, size)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for image {i}")
        atomic_write_bytes(Path(out_dir) / split / f"{i:06d}.jpg", buf.tobytes())
        results.append((i, [a.to_dict() for a in anns]))
    return results


def _chunks(count: int, size: int) -> Iterator[list[int]]:
    for start in range(0, count, size):
        yield list(range(start, min(count, start + size)))


def write_dataset(
    out_dir: str | os.PathLike[str],
    split: str,
    count: int,
    seed: int,
    size: int = 320,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Render ``count`` images of ``split`` into ``out_dir`` and write ``<split>.json``.

    Returns the path of the COCO JSON file.
    """
    _split_id(split)
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if not 32 <= size <= 4096:
        raise ValueError(f"image size must be within 32..4096 px, got {size}")
    out = Path(out_dir)
    (out / split).mkdir(parents=True, exist_ok=True)
    workers = workers or min(os.cpu_count() or 1, 8)
    jobs = [(str(out), split, seed, size, idx) for idx in _chunks(count, 16)]
    per_image: dict[int, list[dict]] = {}
    bar = _progress(count, f"synth {split}", progress)
    if workers > 1 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(workers, initializer=worker_init) as pool:
            for chunk in pool.imap_unordered(_render_chunk, jobs):
                per_image.update(chunk)
                bar.update(len(chunk))
    else:
        for job in jobs:
            chunk = _render_chunk(job)
            per_image.update(chunk)
            bar.update(len(chunk))
    bar.close()
    coco = _to_coco(per_image, split, seed, size)
    path = out / f"{split}.json"
    atomic_write_json(path, coco)
    return path


def _to_coco(per_image: dict[int, list[dict]], split: str, seed: int, size: int) -> dict:
    images, annotations = [], []
    for i in sorted(per_image):
        images.append({"id": i, "file_name": f"{split}/{i:06d}.jpg", "width": size, "height": size})
        for a in per_image[i]:
            x, y, w, h = a["bbox"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": a["class_id"] + 1,
                    "bbox": [x, y, w, h],
                    "area": round(w * h, 2),
                    "iscrowd": 0,
                    "visible": a["visible"],
                }
            )
    return {
        "info": {
            "description": f"edge_infer synthetic world, split {split}, seed {seed}",
            "version": "1",
        },
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(),
    }


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled)


def load_coco(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a COCO detection JSON file and check the fields the evaluator relies on."""
    p = Path(path)
    try:
        coco = json.loads(p.read_text())
    except FileNotFoundError:
        raise ValueError(f"dataset file {p} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"dataset file {p} is not valid JSON: {exc}") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise ValueError(f"dataset file {p} has no list {key!r}: not COCO detection format")
    image_ids = {img["id"] for img in coco["images"]}
    cat_ids = {c["id"] for c in coco["categories"]}
    for a in coco["annotations"]:
        if a.get("image_id") not in image_ids or a.get("category_id") not in cat_ids:
            raise ValueError(
                f"annotation {a.get('id')} in {p} refers to an unknown image or category"
            )
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and bbox[2] >= 0 and bbox[3] >= 0):
            raise ValueError(f"annotation {a.get('id')} in {p} has an invalid bbox {bbox!r}")
    return coco
