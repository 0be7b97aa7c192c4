"""The precision flags of `edge-infer build`, and the accuracy-to-a-budget build.

``--fp16``, ``--int8`` (both: INT8 with FP16 fallback), ``--calib-cache CACHE``,
``--layer-precision NAME:fp32,...``, ``--int8-layers faster``,
``--max-map-drop D --dataset VAL.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edge_infer.errors import BuildError


def add_precision_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("precision")
    g.add_argument(
        "--fp16",
        action="store_true",
        help="FP16 layers (with --int8: FP16 for the layers not in INT8)",
    )
    g.add_argument(
        "--int8",
        action="store_true",
        help="INT8 convolutions from a calibration cache (see `edge-infer calibrate`)",
    )
    g.add_argument(
        "--calib-cache",
        "--calib",
        dest="calib_cache",
        metavar="CACHE",
        help="calibration cache for --int8",
    )
    g.add_argument(
        "--layer-precision",
        metavar="NAME:PREC,...",
        help="per-layer overrides, PREC one of fp32, fp16, int8",
    )
    g.add_argument(
        "--int8-layers",
        choices=("all", "faster"),
        default="all",
        help="with --int8: 'all' quantizes every layer it can (default); 'faster' keeps "
        "INT8 only where it ran faster than FP32 (FP16 with --fp16) on this device, "
        "measured layer by layer, then checks the whole engine (about 3 builds)",
    )
    g.add_argument(
        "--max-map-drop",
        type=float,
        metavar="D",
        help="with --int8 and --dataset: keep the most sensitive layers in "
        "FP16/FP32 until mAP@0.5 is within D of the FP32 engine",
    )
    g.add_argument(
        "--dataset", metavar="VAL.json", help="COCO-format validation set for --max-map-drop"
    )
    g.add_argument(
        "--sensitivity-frames",
        type=int,
        default=4,
        metavar="N",
        help="frames for the per-layer sensitivity of --max-map-drop (default 4)",
    )


def precision_options(args: argparse.Namespace) -> dict[str, Any]:
    """The BuildOptions fields the precision flags set, validated."""
    from edge_infer.engine import parse_layer_precision

    if args.int8:
        precision, fallback = "int8", ("fp16" if args.fp16 else "fp32")
    else:
        precision, fallback = ("fp16" if args.fp16 else "fp32"), "fp32"
    if args.int8 and not args.calib_cache:
        raise BuildError(
            "--int8 needs --calib-cache CACHE; create one with `edge-infer "
            "calibrate MODEL.onnx --data FRAMES -o CACHE`"
        )
    if args.calib_cache and not args.int8:
        raise BuildError("--calib-cache is for INT8 engines: add --int8, or drop --calib-cache")
    if args.calib_cache and not Path(args.calib_cache).is_file():
        raise BuildError(f"--calib-cache {args.calib_cache}: no such file")
    if args.int8_layers == "faster":
        if not args.int8:
            raise BuildError("--int8-layers faster is for INT8 engines: add --int8")
        if args.max_map_drop is not None:
            raise BuildError(
                "--int8-layers faster and --max-map-drop both choose the FP32 layers: "
                "give one of them"
            )
    if args.max_map_drop is not None:
        if not args.int8 or not args.dataset:
            raise BuildError("--max-map-drop needs --int8 and --dataset VAL.json")
        if not 0.0 <= args.max_map_drop < 1.0:
            raise BuildError(f"--max-map-drop must be in [0, 1), got {args.max_map_drop}")
    return {
        "precision": precision,
        "int8_fallback": fallback,
        "layer_precision": parse_layer_precision(args.layer_precision),
        "calib_cache": args.calib_cache,
    }


def build_to_budget(args: argparse.Namespace, opts: Any) -> Any:
    """Search fallbacks to meet ``--max-map-drop``, then build and save the final engine."""
    import numpy as np

    from edge_infer.engine import build, fit_to_budget
    from edge_infer.pipeline.calibration_data import read_image
    from edge_infer.pipeline.preprocess import preprocess_batch
    from edge_infer.synth.dataset import load_coco
    from edge_infer.synth.detect_eval import ModelRunner, evaluate_on_coco

    try:
        coco = load_coco(args.dataset)
    except ValueError as exc:
        raise BuildError(str(exc)) from exc
    root = Path(args.dataset).parent

    def evaluate(engine: Any) -> float:
        inp, out = engine.inputs[0], engine.outputs[0].name
        ctx = engine.create_context()
        batch = min(8, engine.profile.max_batch)
        runner = ModelRunner(
            lambda x: ctx.execute({inp.name: x})[out],
            (inp.shape[3], inp.shape[2]),
            engine.profile.max_batch,
            "engine",
        )
        return evaluate_on_coco(runner, coco, root, batch, progress=False).map50

    probe = build(
        args.model,
        options=opts.replace(precision="fp32", layer_precision={}, tune=False, progress=False),
    )
    inp = probe.inputs[0]
    size = (inp.shape[3], inp.shape[2])
    images = coco["images"][: max(1, args.sensitivity_frames)]
    frames = [read_image(root / img["file_name"]) for img in images]
    if any(f is None for f in frames):
        raise BuildError(f"{args.dataset}: cannot read the first {len(images)} images")
    x, _ = preprocess_batch(frames, size)  # type: ignore[arg-type]
    feeds = [{inp.name: np.ascontiguousarray(x[i : i + 1])} for i in range(len(images))]
    report = (lambda m: None) if args.quiet else print
    result = fit_to_budget(args.model, opts, evaluate, args.max_map_drop, feeds, report=report)
    final_opts = opts.replace(layer_precision=result.options.layer_precision)
    engine = build(args.model, args.output, options=final_opts)
    fallback = opts.int8_fallback.upper()
    print(f"layers kept in {fallback}: {', '.join(result.fallen_back) or 'none'}")
    print(
        f"mAP@0.5: FP32 {result.baseline:.4f}, final {result.score:.4f} "
        f"(drop {result.drop:+.4f}, budget {args.max_map_drop})"
    )
    if not result.within_budget:
        print(f"warning: even with every INT8 layer in {fallback} the drop exceeds the budget")
    return engine


def build_where_faster(args: argparse.Namespace, opts: Any) -> Any:
    """``--int8-layers faster``: INT8 only where it beat the fallback here, then save."""
    from edge_infer.engine import int8_where_faster

    report = (lambda m: None) if args.quiet else print
    result = int8_where_faster(args.model, opts, report=report)
    result.engine.save(args.output)
    if not args.quiet:
        fallback = opts.int8_fallback.upper()
        kept = len(result.fallen_back)
        print(
            f"layers kept in {fallback} (faster here): "
            + (", ".join(result.fallen_back) if kept else "none")
        )
    return result.engine
