"""`edge-infer compare REF OTHER... [--per-layer] [--dataset COCO.json]` (after Polygraphy).

Runs engines (``*.engine``) and/or ONNX models under onnxruntime (``*.onnx``) on the same
inputs — seeded random ones, or frames from ``--data`` preprocessed as the daemon does — and
reports, per output, the error of each against the first (the reference): max/mean absolute
and relative error and cosine similarity. ``--dataset`` adds detection mAP per runner;
``--per-layer`` compares every intermediate tensor of two engines (where FP16/INT8 error
grows), and flags values beyond the FP16 range.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge_infer.commands.device_option import add_device_argument, apply_device
from edge_infer.errors import EdgeInferError

Feeds = dict[str, np.ndarray]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare engines and/or onnxruntime on the same inputs (accuracy of FP16/INT8)",
        description="Run each MODEL_OR_ENGINE on the same inputs and report per output the "
        "max/mean absolute and relative error and the cosine similarity against the first.",
    )
    p.add_argument(
        "runners",
        nargs="+",
        metavar="MODEL_OR_ENGINE",
        help="engine files, or .onnx models (run with onnxruntime); the first is the reference",
    )
    p.add_argument(
        "--data",
        help="frames to compare on: folder of images, video or camera URL "
        "(default: seeded random inputs)",
    )
    p.add_argument("--frames", type=int, default=4, help="inputs to compare on (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument(
        "--per-layer",
        action="store_true",
        help="compare every intermediate tensor of the engines against the first",
    )
    p.add_argument("--dataset", metavar="COCO.json", help="also report mAP@0.5 per runner")
    p.add_argument("--batch", type=int, default=8, help="batch for --dataset (default 8)")
    p.add_argument(
        "--input-size",
        metavar="WxH",
        help="input width x height for .onnx models with dynamic height/width (e.g. 416x256; "
        "engines have theirs)",
    )
    add_device_argument(p)
    p.set_defaults(func=run)


class _Runner:
    """One engine or onnxruntime session as ``feeds -> outputs``."""

    def __init__(self, path: str, input_size: tuple[int, int] | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise EdgeInferError(f"{path}: no such model or engine file")
        self.engine: Any = None
        if self.path.suffix.lower() == ".onnx":
            import onnxruntime as ort

            sess = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
            i = sess.get_inputs()[0]
            self.input_name = i.name
            self.shape = _onnx_shape(self.path, list(i.shape), input_size)
            self.output_names = [o.name for o in sess.get_outputs()]
            self._run: Callable[[Feeds], dict[str, np.ndarray]] = lambda f: dict(
                zip(self.output_names, sess.run(None, f), strict=True)
            )
            self.label = f"{self.path.name} (onnxruntime)"
        else:
            from edge_infer.engine import Engine

            self.engine = Engine.load(self.path)
            b = self.engine.inputs[0]
            self.input_name = b.name
            self.shape = tuple(self.engine.profile.min_batch if d == -1 else d for d in b.shape)
            self.output_names = [o.name for o in self.engine.outputs]
            ctx = self.engine.create_context()
            self._run = ctx.execute
            mode = self.engine.build_record.get("options", {}).get("precision", "fp32")
            self.label = f"{self.path.name} ({mode})"

    def __call__(self, feeds: Feeds) -> dict[str, np.ndarray]:
        return self._run(feeds)


def _onnx_shape(path: Path, dims: list[Any], input_size: tuple[int, int] | None) -> tuple[int, ...]:
    """An ONNX input's shape to run: a dynamic batch is 1, dynamic height/width (NCHW) come
    from ``input_size`` (width, height)."""
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in dims]
    if len(dims) == 4 and not all(isinstance(d, int) and d > 0 for d in dims[2:]):
        if input_size is None:
            raise EdgeInferError(
                f"{path.name}: its input has dynamic height/width; give --input-size WxH"
            )
        shape[2], shape[3] = input_size[1], input_size[0]
    return tuple(shape)


def _inputs(args: argparse.Namespace, ref: _Runner) -> list[Feeds]:
    if args.data:
        from edge_infer.pipeline.calibration_data import CalibrationData

        _, _, h, w = ref.shape
        data = CalibrationData(args.data, (int(w), int(h)), args.frames)
        return [{ref.input_name: f[None]} for f in data]
    rng = np.random.default_rng(args.seed)
    return [
        {ref.input_name: rng.random(ref.shape, dtype=np.float32)}
        for _ in range(max(1, args.frames))
    ]


def run(args: argparse.Namespace) -> int:
    from edge_infer.engine import compare_arrays

    if len(args.runners) < 2 and not args.dataset:
        raise EdgeInferError(
            "compare needs at least two models/engines (the first is the reference), or --dataset"
        )
    apply_device(args)
    from edge_infer.synth.detect_eval import parse_input_size

    size = parse_input_size(args.input_size) if args.input_size else None
    runners = [_Runner(p, size) for p in args.runners]
    ref = runners[0]
    feeds = _inputs(args, ref)
    results = [[r(f) for f in feeds] for r in runners]
    print(f"reference: {ref.label}; {len(feeds)} input(s) of shape {list(ref.shape)}")
    header = (
        f"{'runner':<28} {'output':<12} {'max abs':>10} {'mean abs':>10} {'max rel':>10} "
        f"{'mean rel':>10} {'cosine':>9}"
    )
    print(header)
    for runner, outs in zip(runners[1:], results[1:], strict=True):
        for name in ref.output_names:
            if name not in runner.output_names:
                continue
            a = np.concatenate([np.ravel(o[name]) for o in results[0]])
            b = np.concatenate([np.ravel(o[name]) for o in outs])
            e = compare_arrays(a, b)
            print(
                f"{runner.label[:28]:<28} {name[:12]:<12} {e.max_abs:>10.4g} "
                f"{e.mean_abs:>10.4g} {e.max_rel:>10.4g} {e.mean_rel:>10.4g} {e.cosine:>9.6f}"
            )
            if e.fp16_overflow:
                print(f"warning: output {name} reaches {e.peak:.4g}, beyond the FP16 range")
    if args.per_layer:
        _per_layer(runners, feeds[0])
    if args.dataset:
        _dataset(args, runners)
    return 0


def _per_layer(runners: list[_Runner], feed: Feeds) -> None:
    from edge_infer.engine import per_layer_errors

    ref = runners[0]
    if ref.engine is None:
        raise EdgeInferError(
            "--per-layer compares engines: give an engine file first (build "
            "the FP32 reference with `edge-infer build`)"
        )
    batch = next(iter(feed.values())).shape[0]
    for runner in runners[1:]:
        if runner.engine is None:
            continue
        print(f"\nper layer: {runner.label} against {ref.label}")
        print(f"{'tensor':<44} {'layer [precision]':<44} {'cosine':>9} {'max abs':>10}")
        rows = per_layer_errors(ref.engine.graph(batch), runner.engine.graph(batch), feed)
        for tensor, layer, e in rows:
            flag = "  FP16 OVERFLOW" if e.fp16_overflow else ""
            print(f"{tensor[-44:]:<44} {layer[-44:]:<44} {e.cosine:>9.6f} {e.max_abs:>10.4g}{flag}")
        worst = min(rows, key=lambda r: r[2].cosine, default=None)
        if worst is not None:
            print(f"lowest cosine: {worst[0]} ({worst[2].cosine:.6f}) from {worst[1]}")


def _dataset(args: argparse.Namespace, runners: list[_Runner]) -> None:
    from edge_infer.synth.dataset import load_coco
    from edge_infer.synth.detect_eval import (
        engine_runner,
        evaluate_on_coco,
        onnxruntime_runner,
        parse_input_size,
    )

    try:
        coco = load_coco(args.dataset)
    except ValueError as exc:
        raise EdgeInferError(str(exc)) from exc
    root = Path(args.dataset).parent
    print(f"\nmAP on {args.dataset} ({len(coco['images'])} images)")
    size = parse_input_size(args.input_size) if args.input_size else None
    for r in runners:
        if r.engine is None:
            model = onnxruntime_runner(r.path, input_size=size)
        else:
            model = engine_runner(r.path, args.batch)
        batch = min(args.batch, model.max_batch)
        res = evaluate_on_coco(model, coco, root, batch, progress=False)
        print(f"{r.label:<40} mAP@0.5 {res.map50:.4f}  mAP@0.5:0.95 {res.map50_95:.4f}")
