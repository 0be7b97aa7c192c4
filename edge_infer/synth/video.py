"""Camera video files of the synthetic world, with per-frame ground truth.

Each camera is a fixed textured background with objects that move plausibly: people walk,
cars and bicycles cross the view, balls bounce under gravity, boxes slide a little, signs
stand still; objects leave the frame and new ones enter. Lighting drifts slowly and the
sensor adds noise. Every frame's ground truth (visible boxes, track ids) is computed from
the pixels the frame was rendered with, before encoding.

Files written for camera ``k`` under ``out``::

    cam{k:02d}.mp4    H.264 (libx264 through the ffmpeg program)      -- codec h264 / both
    cam{k:02d}.avi    MJPEG (OpenCV's JPEG encoder, muxed by ffmpeg)   -- codec mjpeg / both
    cam{k:02d}.json   {"frames": [[{track_id, class_id, bbox, ...}, ...], ...], ...}
    manifest.json     every camera, its files and settings
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from edge_infer.atomic import commit
from edge_infer.synth.dataset import atomic_write_json, worker_init
from edge_infer.synth.scenes import Composer, make_background, sample_size
from edge_infer.synth.shapes import CLASSES, Sprite, draw_sprite, warp_sprite

#: stream id of video cameras (image splits use 0..2), so videos never repeat an image scene
VIDEO_STREAM = 7
CODECS = ("h264", "mjpeg", "both")
#: (min, max) speed in pixels per second at 640 px frame width, per class
_SPEED = {
    "person": (15, 50),
    "car": (60, 180),
    "bicycle": (40, 100),
    "box": (0, 8),
    "sign": (0, 0),
    "ball": (40, 140),
}
GRAVITY = 300.0  # px / s², balls only


@dataclass
class Track:
    """One moving object: upright sprite, centre position, velocity, rotation, scale."""

    track_id: int
    sprite: Sprite
    x: float
    y: float
    vx: float
    vy: float
    angle: float = 0.0
    spin: float = 0.0
    scale: float = 1.0
    grow: float = 0.0  # relative scale change per second (approaching > 0)
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def class_id(self) -> int:
        return self.sprite.class_id


class CameraWorld:
    """The state of one camera: background, tracks, lighting; ``step()`` renders a frame."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, fps: float) -> None:
        self.rng, self.w, self.h, self.fps = rng, width, height, fps
        self.background = make_background(rng, height, width)
        self.tracks: list[Track] = []
        self.next_id = 0
        self.target = int(rng.integers(3, 9))
        self.t = 0.0
        self.light_phase = rng.uniform(0, 2 * np.pi, 2)
        # sensor noise: a few noisy copies of the background, cycled through (fresh noise per
        # frame would cost more than rendering everything else)
        base = self.background.astype(np.int16)
        self.noisy = [
            np.clip(base + rng.normal(0, 3.0, base.shape).astype(np.int16), 0, 255).astype(np.uint8)
            for _ in range(4)
        ]
        for _ in range(self.target):
            self.tracks.append(self._spawn(inside=True))

    def _spawn(self, inside: bool) -> Track:
        rng = self.rng
        cls = int(rng.integers(len(CLASSES)))
        name = CLASSES[cls]
        size = sample_size(rng, self.h, self.w)
        sprite = draw_sprite(cls, size, rng)
        lo, hi = _SPEED[name]
        speed = rng.uniform(lo, hi) * self.w / 640.0
        direction = 1.0 if rng.random() < 0.5 else -1.0
        sh, sw = sprite.mask.shape
        if inside or speed == 0:
            x = rng.uniform(sw / 2, max(sw / 2 + 1, self.w - sw / 2))
        else:  # enter from the side it moves away from
            x = -sw / 2 + 1 if direction > 0 else self.w + sw / 2 - 1
        y = rng.uniform(sh / 2, max(sh / 2 + 1, self.h - sh / 2))
        vy = rng.uniform(-0.15, 0.15) * speed
        track = Track(self.next_id, sprite, x, y, direction * speed, vy)
        if name == "ball":
            track.vy = -rng.uniform(0, 250) * self.h / 360.0
            track.spin = rng.uniform(-180, 180)
            track.extra["floor"] = rng.uniform(0.6, 1.0) * self.h - sh / 2
        elif name in ("person", "bicycle", "car"):
            track.grow = rng.uniform(-0.03, 0.03)
            track.angle = rng.uniform(-5, 5)
        elif name == "box":
            track.angle = rng.uniform(-30, 30)
        self.next_id += 1
        return track

    def _move(self, tr: Track, dt: float) -> None:
        tr.x += tr.vx * dt
        tr.y += tr.vy * dt
        tr.angle += tr.spin * dt
        tr.scale = float(np.clip(tr.scale * (1 + tr.grow * dt), 0.5, 1.5))
        if "floor" in tr.extra:
            tr.vy += GRAVITY * self.h / 360.0 * dt
            if tr.y > tr.extra["floor"] and tr.vy > 0:  # bounce, losing some energy
                tr.y = tr.extra["floor"]
                tr.vy = -tr.vy * 0.8

    def _gone(self, tr: Track) -> bool:
        sh, sw = tr.sprite.mask.shape
        r = max(sh, sw) * tr.scale
        return tr.x < -r or tr.x > self.w + r or tr.y < -2 * self.h or tr.y > self.h + r

    def step(self) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Render the current frame, then advance time by one frame."""
        k = round(self.t * self.fps) % len(self.noisy)
        comp = Composer(self.noisy[k].copy())
        # nearer objects (lower in the frame) are drawn last, so they occlude farther ones
        order = sorted(self.tracks, key=lambda tr: tr.y + tr.sprite.mask.shape[0] * tr.scale / 2)
        for tr in order:
            img, mask = warp_sprite(tr.sprite, tr.angle, tr.scale)
            mh, mw = mask.shape
            comp.paste(img, mask, round(tr.x - mw / 2), round(tr.y - mh / 2), tr.class_id)
        gt = []
        for i, ann in comp.annotations_by_index().items():
            entry = ann.to_dict()
            entry["track_id"] = order[i].track_id
            gt.append(entry)
        frame = self._camera(comp.frame)
        dt = 1.0 / self.fps
        self.t += dt
        for tr in self.tracks:
            self._move(tr, dt)
        self.tracks = [tr for tr in self.tracks if not self._gone(tr)]
        while len(self.tracks) < self.target:
            self.tracks.append(self._spawn(inside=False))
        if self.rng.random() < 0.2 * dt:  # the scene gets busier or quieter now and then
            self.target = int(self.rng.integers(3, 9))
        return frame, gt

    def _camera(self, frame: np.ndarray) -> np.ndarray:
        gain = 1.0 + 0.2 * np.sin(self.t * 0.3 + self.light_phase[0])
        bias = 15.0 * np.sin(self.t * 0.17 + self.light_phase[1])
        return cv2.convertScaleAbs(frame, alpha=float(gain), beta=float(bias))


class _FfmpegWriter:
    """Pipes frames into the ffmpeg program, which encodes or muxes them into ``path``.

    ``h264``: raw BGR frames → libx264 (OpenCV's wheels cannot encode H.264).
    ``mjpeg``: frames JPEG-encoded here by OpenCV (libjpeg-turbo) → stream-copied into AVI,
    about 2.5× cheaper than OpenCV's own MJPEG writer.
    """

    def __init__(self, path: Path, width: int, height: int, fps: float, codec: str) -> None:
        exe = shutil.which("ffmpeg")
        if exe is None:
            raise RuntimeError(
                "H.264 output needs the ffmpeg program with libx264; install it "
                "with tools/install_system_deps.sh, or use --codec mjpeg"
            )
        self.jpeg = codec == "mjpeg"
        if self.jpeg:
            # image2pipe, not the raw mjpeg demuxer: the latter writes a doubled frame rate
            src = ["-f", "image2pipe", "-c:v", "mjpeg", "-framerate", f"{fps:g}", "-i", "-"]
            dst = ["-c:v", "copy", "-f", "avi"]
        else:
            src = [
                "-f",
                "rawvideo",
                "-pix_fmt",
                "bgr24",
                "-s",
                f"{width}x{height}",
                "-r",
                f"{fps:g}",
                "-i",
                "-",
            ]
            dst = [
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-crf",
                "23",
                "-pix_fmt",
                "yuv420p",
                "-g",
                str(max(1, round(fps * 2))),
                "-threads",
                "1",
                "-f",
                "mp4",
            ]
        cmd = [exe, "-loglevel", "error", "-y", *src, "-an", *dst, str(path)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stdin: IO[bytes] = self.proc.stdin  # type: ignore[assignment]  # stdin=PIPE

    def write(self, frame: np.ndarray) -> None:
        if self.jpeg:
            ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
            if not ok:
                raise RuntimeError("JPEG encoding of a video frame failed")
            self.stdin.write(buf.data)
        else:
            self.stdin.write(memoryview(np.ascontiguousarray(frame)))  # no copy if contiguous

    def release(self) -> None:
        _, err = self.proc.communicate()
        if self.proc.returncode != 0:
            raise RuntimeError(f"ffmpeg failed ({self.proc.returncode}): {err.decode()[-500:]}")


def render_camera(
    out_dir: str | os.PathLike[str],
    camera: int,
    seconds: float,
    fps: float,
    width: int,
    height: int,
    codec: str = "both",
    seed: int = 0,
) -> dict[str, Any]:
    """Render one camera's files; returns its manifest entry."""
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; expected one of {CODECS}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([VIDEO_STREAM, int(seed), int(camera)])
    world = CameraWorld(rng, width, height, fps)
    n = round(seconds * fps)
    stem = f"cam{camera:02d}"
    files: dict[str, str] = {}
    writers: list[tuple[Any, Path, Path]] = []
    if codec in ("h264", "both"):
        tmp, final = out / f".{stem}.tmp.mp4", out / f"{stem}.mp4"
        writers.append((_FfmpegWriter(tmp, width, height, fps, "h264"), tmp, final))
        files["h264"] = final.name
    if codec in ("mjpeg", "both"):
        tmp, final = out / f".{stem}.tmp.avi", out / f"{stem}.avi"
        if shutil.which("ffmpeg") is not None:
            writers.append((_FfmpegWriter(tmp, width, height, fps, "mjpeg"), tmp, final))
        else:  # OpenCV's own writer needs no ffmpeg program, but is slower
            w = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
            if not w.isOpened():
                raise RuntimeError(f"OpenCV cannot open an MJPEG writer for {tmp}")
            writers.append((w, tmp, final))
        files["mjpeg"] = final.name
    frames = []
    try:
        for _ in range(n):
            frame, gt = world.step()
            for w, _tmp, _final in writers:
                w.write(frame)
            frames.append(gt)
    finally:
        for w, _tmp, _final in writers:
            w.release()
    for _w, tmp, final in writers:
        commit(tmp, final)
    meta = {
        "camera": camera,
        "width": width,
        "height": height,
        "fps": fps,
        "frames": n,
        "seed": seed,
        "files": files,
        "classes": list(CLASSES),
    }
    atomic_write_json(out / f"{stem}.json", {**meta, "ground_truth": frames})
    return {**meta, "ground_truth": f"{stem}.json"}


def _render_job(job: tuple) -> dict[str, Any]:
    return render_camera(*job)


def write_videos(
    out_dir: str | os.PathLike[str],
    cameras: int,
    seconds: float,
    fps: float,
    width: int,
    height: int,
    codec: str = "both",
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Render ``cameras`` camera files in parallel and write ``manifest.json``; returns its path."""
    if cameras < 1 or seconds <= 0 or fps <= 0:
        raise ValueError(
            f"need cameras >= 1, seconds > 0 and fps > 0; got {cameras}, {seconds}, {fps}"
        )
    if width < 64 or height < 64 or width % 2 or height % 2:
        raise ValueError(f"frame size must be even and at least 64x64, got {width}x{height}")
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; expected one of {CODECS}")
    if codec in ("h264", "both") and shutil.which("ffmpeg") is None:
        raise RuntimeError(
            "H.264 output needs the ffmpeg program with libx264; install it with "
            "tools/install_system_deps.sh, or use --codec mjpeg"
        )
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(str(out), k, seconds, fps, width, height, codec, seed) for k in range(cameras)]
    workers = max(1, min(workers or os.cpu_count() or 1, cameras))
    entries = []
    with tqdm(total=cameras, desc="synth videos", unit="cam", disable=not progress) as bar:
        if workers == 1:
            for job in jobs:
                entries.append(_render_job(job))
                bar.update(1)
        else:
            with mp.get_context("spawn").Pool(workers, initializer=worker_init) as pool:
                for entry in pool.imap_unordered(_render_job, jobs):
                    entries.append(entry)
                    bar.update(1)
    entries.sort(key=lambda e: e["camera"])
    manifest = {"cameras": entries, "classes": list(CLASSES), "seed": seed}
    path = out / "manifest.json"
    atomic_write_json(path, manifest)
    return path
