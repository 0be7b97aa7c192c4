"""Reduced-precision benchmark: engine sizes, INT8/FP16 cosine on zoo models, detector mAP.

    # cosine + sizes on the zoo's YOLOv8n and ResNet-50 (own synthetic inputs)
    python bench/precision.py zoo --out bench/results/precision_zoo.md
    # mAP of FP32 / FP16 / INT8 engines of a detector on a COCO-format val set
    python bench/precision.py detector models/edge_demo_det.onnx --calib DATA/calib \
        --val DATA/val.json --frames 500 --out bench/results/precision_det.md
    # a model with dynamic height/width (the demo detector) runs at --input-size (default
    # 416x256, the cameras'; 320x320 for the square val images); a fixed one at its own

Every engine is built with ``tune=False`` (tactic choice does not change the numerics).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_infer.engine.builder import BuildOptions, build
from edge_infer.engine.calibration import calibrate
from edge_infer.engine.precision.metrics import cosine_similarity
from edge_infer.zoo import build_model


def _inputs(count: int, size: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((3, size, size), dtype=np.float32) for _ in range(count)]


def _size(model: object, folder: Path, name: str, opts: BuildOptions) -> tuple[object, int]:
    path = folder / f"{name}.engine"
    engine = build(model, path, options=opts)
    return engine, path.stat().st_size


def zoo(args: argparse.Namespace) -> list[str]:
    rows = [
        "| model | input | calib frames | precision | engine MB | % of FP32 | "
        "min cosine vs FP32 | mean cosine |",
        "|---|---|---|---|---|---|---|---|",
    ]
    cases = [
        ("yolov8n", {"imgsz": args.yolo_size}, args.yolo_size, "images"),
        ("resnet50", {"image_size": args.resnet_size}, args.resnet_size, "input"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name, kw, size, inp in cases:
            model = build_model(name, batch=1, **kw)
            t0 = time.perf_counter()
            cal = calibrate(
                model, _inputs(args.calib_frames, size, seed=1), calibrator=args.calibrator
            )
            print(f"{name}: calibrated in {time.perf_counter() - t0:.0f} s")
            base = BuildOptions(shapes={inp: (1, 3, size, size)}, tune=False)
            ref, ref_size = _size(model, Path(tmp), f"{name}_fp32", base)
            ctx = ref.create_context()
            evals = _inputs(args.eval_frames, size, seed=99)
            want = [ctx.execute({inp: x[None]}) for x in evals]
            rows.append(
                f"| {name} | {size}x{size} | - | fp32 | {ref_size / 1e6:.2f} | 100% | 1 | 1 |"
            )
            for prec in ("fp16", "int8"):
                opts = BuildOptions(
                    shapes=base.shapes, tune=False, precision=prec, extra={"calibration": cal.cache}
                )
                eng, nbytes = _size(model, Path(tmp), f"{name}_{prec}", opts)
                c = eng.create_context()
                cos = [
                    cosine_similarity(w[k], c.execute({inp: x[None]})[k])
                    for x, w in zip(evals, want, strict=True)
                    for k in w
                ]
                rows.append(
                    f"| {name} | {size}x{size} | {args.calib_frames} | {prec} | "
                    f"{nbytes / 1e6:.2f} | {100 * nbytes / ref_size:.0f}% | "
                    f"{min(cos):.6f} | {np.mean(cos):.6f} |"
                )
                print(rows[-1])
    return rows


def detector(args: argparse.Namespace) -> list[str]:
    from edge_infer.pipeline.calibration_data import CalibrationData
    from edge_infer.synth.dataset import load_coco
    from edge_infer.synth.detect_eval import ModelRunner, evaluate_on_coco

    coco = load_coco(args.val)
    if args.limit:
        coco["images"] = coco["images"][: args.limit]
        keep = {i["id"] for i in coco["images"]}
        coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in keep]
    from edge_infer.synth.detect_eval import _onnx_input, dynamic_hw, parse_input_size

    root = Path(args.val).parent
    import onnx

    size = parse_input_size(args.input_size) if dynamic_hw(args.model) else None
    name, (w, h) = _onnx_input(Path(args.model), size)
    dim0 = (
        onnx.load(args.model, load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    )
    if dim0.HasField("dim_value") and dim0.dim_value > 0:  # a fixed batch
        shapes: dict = {"shapes": {name: (dim0.dim_value, 3, h, w)}}
    else:
        shapes = {
            "min_shapes": {name: (1, 3, h, w)},
            "opt_shapes": {name: (8, 3, h, w)},
            "max_shapes": {name: (8, 3, h, w)},
        }
    t0 = time.perf_counter()
    if args.cache and Path(args.cache).is_file():
        from edge_infer.engine.calibration import CalibrationResult
        from edge_infer.engine.precision.cache import CalibrationCache

        cache = CalibrationCache.load(args.cache)
        cal = CalibrationResult(cache, frames_used=cache.frames)
    else:
        data = CalibrationData(args.calib, (w, h), args.frames)
        cal = calibrate(args.model, data, calibrator=args.calibrator, shapes={name: (1, 3, h, w)})
        if args.cache:
            cal.cache.save(args.cache)
    print(f"calibrated on {cal.frames_used} frames in {time.perf_counter() - t0:.0f} s")
    rows = [
        f"input {w}x{h}; val set: {args.val} ({len(coco['images'])} images); calibration: "
        f"{cal.frames_used} frames of {args.calib}, {args.calibrator}",
        "",
        "| precision | engine MB | % of FP32 | mAP@0.5 | Δ vs FP32 | mAP@0.5:0.95 |",
        "|---|---|---|---|---|---|",
    ]
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        ref_size = 0
        for prec in args.precisions.split(","):
            # "int8+fp16": INT8 with the other layers in FP16 (`build --int8 --fp16`)
            mode, _, fallback = prec.partition("+")
            opts = BuildOptions(
                tune=False,
                precision=mode,
                int8_fallback=fallback or "fp32",
                extra={"calibration": cal.cache},
                **shapes,
            )
            eng, nbytes = _size(args.model, Path(tmp), prec, opts)
            ref_size = ref_size or nbytes
            ctx = eng.create_context()
            runner = ModelRunner(
                lambda x, c=ctx, e=eng: c.execute({e.inputs[0].name: x})[e.outputs[0].name],
                (w, h),
                eng.profile.max_batch,
                prec,
            )
            res = evaluate_on_coco(
                runner, coco, root, min(8, eng.profile.max_batch), progress=False
            )
            base = res.map50 if base is None else base
            rows.append(
                f"| {prec} | {nbytes / 1e6:.2f} | {100 * nbytes / ref_size:.0f}% | "
                f"{res.map50:.4f} | {res.map50 - base:+.4f} | {res.map50_95:.4f} |"
            )
            print(rows[-1])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    z = sub.add_parser("zoo")
    z.add_argument("--yolo-size", type=int, default=320)
    z.add_argument("--resnet-size", type=int, default=224)
    z.add_argument("--calib-frames", type=int, default=16)
    z.add_argument("--eval-frames", type=int, default=4)
    z.add_argument("--calibrator", default="entropy")
    z.add_argument("--out")
    d = sub.add_parser("detector")
    d.add_argument("model")
    d.add_argument("--calib", required=True, help="calibration frames (folder, video)")
    d.add_argument("--val", required=True, help="COCO json of the held-out val set")
    d.add_argument("--frames", type=int, default=500)
    d.add_argument("--limit", type=int, default=0, help="first N val images only")
    d.add_argument("--calibrator", default="entropy")
    d.add_argument(
        "--input-size",
        default="416x256",
        metavar="WxH",
        help="input of a model with dynamic height/width (default 416x256, the cameras'); "
        "calibration frames and val images are letterboxed to it",
    )
    d.add_argument("--cache", help="calibration cache: reused when it exists, else written")
    d.add_argument(
        "--precisions",
        default="fp32,fp16,int8",
        help="engines to measure, the first the reference (int8+fp16: --int8 --fp16)",
    )
    d.add_argument("--out")
    args = p.parse_args()
    rows = zoo(args) if args.what == "zoo" else detector(args)
    if args.out:
        Path(args.out).write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
