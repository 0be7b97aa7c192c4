"""`edge-infer synth images|videos`: the synthetic camera world (datasets and camera files)."""

from __future__ import annotations

import argparse
import time

from edge_infer.errors import EdgeInferError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="generate synthetic COCO datasets and camera videos with ground truth",
        description="Render the synthetic world: deterministic from --seed.",
    )
    kinds = p.add_subparsers(dest="synth_kind", metavar="KIND", required=True)

    img = kinds.add_parser(
        "images",
        help="a COCO-format image dataset split",
        description="Write OUT/SPLIT/*.jpg and OUT/SPLIT.json (COCO).",
    )
    img.add_argument("--out", required=True, help="output folder")
    img.add_argument("--split", required=True, choices=("train", "val", "calib"))
    img.add_argument("--count", type=int, required=True, help="number of images")
    img.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    img.add_argument("--size", type=int, default=320, help="square image side in px (default 320)")
    img.add_argument("--workers", type=int, default=0, help="processes (default: CPU count)")
    img.set_defaults(func=run_images)

    vid = kinds.add_parser(
        "videos",
        help="camera video files with per-frame ground truth",
        description="Write OUT/camNN.mp4 (H.264) and/or OUT/camNN.avi (MJPEG), "
        "OUT/camNN.json (per-frame ground truth) and OUT/manifest.json.",
    )
    vid.add_argument("--out", required=True, help="output folder")
    vid.add_argument("--cameras", type=int, default=4, help="number of cameras (default 4)")
    vid.add_argument("--seconds", type=float, default=10.0, help="length of each file (default 10)")
    vid.add_argument("--fps", type=float, default=15.0, help="frames per second (default 15)")
    vid.add_argument("--width", type=int, default=640, help="frame width (default 640)")
    vid.add_argument("--height", type=int, default=360, help="frame height (default 360)")
    vid.add_argument(
        "--codec",
        choices=("h264", "mjpeg", "both"),
        default="both",
        help="h264 (.mp4, needs ffmpeg), mjpeg (.avi) or both (default)",
    )
    vid.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    vid.add_argument("--workers", type=int, default=0, help="processes (default: CPU count)")
    vid.set_defaults(func=run_videos)


def run_images(args: argparse.Namespace) -> int:
    from edge_infer.synth.dataset import write_dataset

    t0 = time.monotonic()
    try:
        path = write_dataset(
            args.out, args.split, args.count, args.seed, args.size, workers=args.workers or None
        )
    except ValueError as exc:
        raise EdgeInferError(str(exc)) from exc
    print(f"wrote {args.count} {args.split} images and {path} in {time.monotonic() - t0:.1f} s")
    return 0


def run_videos(args: argparse.Namespace) -> int:
    from edge_infer.synth.video import write_videos

    t0 = time.monotonic()
    try:
        path = write_videos(
            args.out,
            args.cameras,
            args.seconds,
            args.fps,
            args.width,
            args.height,
            args.codec,
            args.seed,
            workers=args.workers or None,
        )
    except (ValueError, RuntimeError) as exc:
        raise EdgeInferError(str(exc)) from exc
    print(
        f"wrote {args.cameras} cameras ({args.codec}) and {path} in {time.monotonic() - t0:.1f} s"
    )
    return 0
