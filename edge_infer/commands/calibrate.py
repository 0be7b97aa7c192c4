"""`edge-infer calibrate MODEL.onnx --data PATH -o CACHE [--calibrator ...] [--frames N]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_infer.errors import CalibrationError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="INT8 calibration: frames → a calibration cache for `build --int8`",
        description="Run the FP32 model over calibration frames (a folder of images, a video "
        "file or a camera URL), preprocessed as the daemon does, and write the per-tensor INT8 "
        "scales to a calibration cache. The cache is tied to the model (by hash), not to the "
        "device: copy it to other devices running the same model.",
    )
    p.add_argument("model", help="ONNX model file")
    p.add_argument(
        "--data",
        required=True,
        help="folder of images, video file, or camera URL (rtsp://..., or a device number)",
    )
    p.add_argument("-o", "--output", required=True, help="calibration cache file to write")
    p.add_argument(
        "--calibrator",
        choices=("entropy", "minmax", "percentile"),
        default="entropy",
        help="entropy (default; TensorRT's KL search), minmax, or percentile",
    )
    p.add_argument(
        "--percentile",
        type=float,
        default=99.99,
        help="percentile of |x| for --calibrator percentile (default 99.99)",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=500,
        help="calibration frames to use (default 500; 0 = all a folder holds)",
    )
    p.add_argument("--shapes", help="input shape if the model's is not fixed: NAME:1x3xHxW")
    p.add_argument(
        "--config",
        metavar="DAEMON.yaml",
        help="preprocess as this daemon config does (its preprocess.color_order)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from edge_infer.engine import calibrate, calibration_graph, parse_shapes
    from edge_infer.pipeline.calibration_data import CalibrationData

    if not Path(args.model).is_file():
        raise CalibrationError(f"{args.model}: no such model file")
    if args.frames < 0:
        raise CalibrationError(f"--frames must be 0 or more, got {args.frames}")
    if not 0.0 < args.percentile <= 100.0:
        raise CalibrationError(f"--percentile must be in (0, 100], got {args.percentile}")
    shapes = parse_shapes(args.shapes) or None
    graph, _ = calibration_graph(args.model, shapes)
    _, _, h, w = graph.inputs[0].shape
    if args.config:
        from edge_infer.pipeline.config import load_config

        data = CalibrationData.for_daemon(
            args.data, (int(w), int(h)), load_config(args.config), args.frames
        )
    else:
        data = CalibrationData(args.data, (int(w), int(h)), args.frames)
    kind = data.kind  # validates the source before the model runs
    if not args.quiet:
        print(f"calibration data: {kind} {args.data}", file=sys.stderr)
    total = args.frames or None
    bar = tqdm(total=total, desc="calibrating", unit="frame", disable=args.quiet)
    try:
        result = calibrate(
            args.model,
            data,
            calibrator=args.calibrator,
            percentile=args.percentile,
            shapes=shapes,
            on_frame=lambda _: bar.update(1),
        )
    finally:
        bar.close()
    result.cache.save(args.output)
    if not args.quiet:
        print(result.summary())
        print(
            f"wrote {args.output}: {len(result.cache.scales)} tensors, {args.calibrator} "
            f"calibrator, {result.frames_used} frames"
        )
    return 0
