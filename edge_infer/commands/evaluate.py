"""`edge-infer evaluate MODEL_OR_ENGINE --dataset COCO.json [--batch N]`: COCO mAP of a detector."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_infer.errors import EdgeInferError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="mAP@0.5 and mAP@0.5:0.95 of a detector on a COCO-format dataset",
        description="Run a YOLO-family detector (engine file or ONNX model) over every image of "
        "a COCO-format dataset and print COCO mAP@0.5 and mAP@0.5:0.95, overall and per class. "
        "Model class c is the dataset's c-th category.",
    )
    p.add_argument("model", metavar="MODEL_OR_ENGINE", help="engine file or .onnx model")
    p.add_argument(
        "--dataset",
        required=True,
        metavar="COCO.json",
        help="COCO detection JSON; image paths are relative to its folder",
    )
    p.add_argument("--batch", type=int, default=8, help="images per inference call (default 8)")
    p.add_argument(
        "--input-size",
        metavar="WxH",
        help="network input width x height (multiples of 32, e.g. 416x256): required for an "
        "ONNX model with dynamic height/width (the engine is built for it, images letterboxed "
        "to it); must match a fixed-size model or an engine",
    )
    p.add_argument(
        "--runtime",
        choices=("edge_infer", "onnxruntime"),
        default="edge_infer",
        help="edge_infer (default; builds .onnx with our builder) or onnxruntime "
        "(reference, .onnx only)",
    )
    p.add_argument(
        "--layout",
        choices=("yolov8", "yolov5"),
        default="yolov8",
        help="output layout: yolov8 [B,4+C,N] (default) or yolov5 [B,N,5+C]",
    )
    p.add_argument("--conf", type=float, default=0.001, help="score threshold (default 0.001)")
    p.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default 0.7)")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N images")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="onnxruntime intra-op threads (default 0: its own choice)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_infer.synth.dataset import load_coco
    from edge_infer.synth.detect_eval import (
        engine_runner,
        evaluate_on_coco,
        onnxruntime_runner,
        parse_input_size,
    )

    size = parse_input_size(args.input_size) if args.input_size else None
    if args.batch < 1:
        raise EdgeInferError(f"--batch must be at least 1, got {args.batch}")
    if not 0.0 <= args.conf < 1.0 or not 0.0 < args.iou <= 1.0:
        raise EdgeInferError("--conf must be in [0, 1) and --iou in (0, 1]")
    try:
        coco = load_coco(args.dataset)
    except ValueError as exc:
        raise EdgeInferError(str(exc)) from exc
    if args.limit > 0:
        coco["images"] = coco["images"][: args.limit]
        keep = {img["id"] for img in coco["images"]}
        coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in keep]
    model = Path(args.model)
    if not model.is_file():
        raise EdgeInferError(f"{model}: no such model or engine file")
    if args.runtime == "onnxruntime":
        if model.suffix.lower() != ".onnx":
            raise EdgeInferError("--runtime onnxruntime takes an .onnx model, not an engine")
        runner = onnxruntime_runner(model, args.threads, size)
    else:
        runner = engine_runner(model, args.batch, size)
    result = evaluate_on_coco(
        runner,
        coco,
        Path(args.dataset).parent,
        args.batch,
        args.layout,
        args.conf,
        args.iou,
        progress=not args.no_progress,
    )
    names = {int(c["id"]): str(c["name"]) for c in coco["categories"]}
    w, h = runner.input_size
    print(f"model:   {model} ({runner.description}, input {w}x{h})")
    print(f"dataset: {args.dataset} ({len(coco['images'])} images)")
    print(result.table(names))
    print(f"mAP@0.5 {result.map50:.4f}  mAP@0.5:0.95 {result.map50_95:.4f}")
    if args.json:
        out = {
            "model": str(model),
            "runtime": runner.description,
            "input_size": f"{w}x{h}",
            "dataset": str(args.dataset),
            "images": len(coco["images"]),
            "map50": result.map50,
            "map50_95": result.map50_95,
            "per_class": {
                names[c]: {"ap50": a50, "ap50_95": a, "gt": result.num_gt[c]}
                for c, (a50, a) in result.per_class.items()
            },
        }
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0
