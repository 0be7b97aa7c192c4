"""`edge-infer build MODEL.onnx -o OUT.engine [--shapes ...] [--min/opt/max-shapes ...]`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from edge_infer.commands.build_precision import (
    add_precision_arguments,
    build_to_budget,
    build_where_faster,
    precision_options,
)
from edge_infer.commands.device_option import add_device_argument
from edge_infer.errors import BuildError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build",
        help="build an engine from an ONNX model on this device",
        description="Import, optimize and tune an ONNX model for this device, and write an "
        "engine file (flags follow trtexec, whose spellings --onnx, --saveEngine, "
        "--minShapes/--optShapes/--maxShapes, --calib and --timingCacheFile work too).",
    )
    p.add_argument("model", nargs="?", help="ONNX model file")
    p.add_argument("--onnx", dest="onnx", metavar="MODEL", help=argparse.SUPPRESS)
    p.add_argument(
        "-o", "--output", "--saveEngine", dest="output", help="engine file to write (required)"
    )
    p.add_argument("--shapes", help="fixed input shapes: NAME:1x3x640x640[,NAME:...]")
    p.add_argument(
        "--min-shapes",
        "--minShapes",
        dest="min_shapes",
        help="profile minimum shapes (batch range), like --shapes",
    )
    p.add_argument(
        "--opt-shapes",
        "--optShapes",
        dest="opt_shapes",
        help="profile optimum shapes (tuned for), like --shapes",
    )
    p.add_argument(
        "--max-shapes",
        "--maxShapes",
        dest="max_shapes",
        help="profile maximum shapes, like --shapes",
    )
    p.add_argument("--backend", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--no-optimize", action="store_true", help="skip optimization passes")
    p.add_argument(
        "--timing-cache",
        "--timingCacheFile",
        dest="timing_cache",
        metavar="FILE",
        help="tactic timings to reuse and extend (ignored if from another device)",
    )
    p.add_argument(
        "--no-tune",
        action="store_true",
        help="skip tactic timing: first applicable tactic per layer (fast build)",
    )
    p.add_argument(
        "--no-verify-tactics",
        action="store_true",
        help="skip the self-check that runs each timed candidate tactic once "
        "against the reference op and rejects those that disagree (on by default)",
    )
    p.add_argument(
        "--threads",
        type=_positive,
        metavar="N",
        help="threads per execution context to time tactics with: the width the "
        "engine will run at (e.g. 1 for a daemon with one worker per core; "
        "default: all cores)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    add_device_argument(p)
    add_precision_arguments(p)
    p.set_defaults(func=run)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from edge_infer.engine import BuildOptions, build, parse_shapes

    if args.model and args.onnx and args.model != args.onnx:
        raise BuildError(f"two models given: {args.model} and --onnx {args.onnx}; give one")
    args.model = args.model or args.onnx
    if not args.model:
        raise BuildError("no model: give MODEL.onnx (or --onnx MODEL.onnx)")
    if not args.output:
        raise BuildError("no output: give -o OUT.engine (or --saveEngine OUT.engine)")
    if not Path(args.model).is_file():
        raise BuildError(f"{args.model}: no such model file")
    if args.device is not None and args.backend != "cuda":
        raise BuildError(f"--device {args.device} chooses a CUDA device: add --backend cuda")
    if args.threads is not None and args.backend != "cpu":
        raise BuildError(
            f"--threads is a CPU backend setting: leave it out with --backend {args.backend}"
        )
    # backend settings: the CPU's threads per context its tactics are timed with, the CUDA
    # device the engine is built for
    backend_options = {} if args.threads is None else {"threads": args.threads}
    if args.device is not None:
        backend_options = {"device": args.device}
    opts = BuildOptions(
        backend=args.backend,
        shapes=parse_shapes(args.shapes) or None,
        min_shapes=parse_shapes(args.min_shapes) or None,
        opt_shapes=parse_shapes(args.opt_shapes) or None,
        max_shapes=parse_shapes(args.max_shapes) or None,
        optimize=not args.no_optimize,
        tune=not args.no_tune,
        verify_tactics=not args.no_verify_tactics,
        backend_options=backend_options,
        timing_cache=args.timing_cache,
        progress=not args.quiet,
        **precision_options(args),
    )
    start = time.perf_counter()
    if args.max_map_drop is not None:
        engine = build_to_budget(args, opts)
    elif args.int8_layers == "faster":
        engine = build_where_faster(args, opts)
    else:
        engine = build(args.model, args.output, options=opts)
    if not args.quiet:
        size = Path(args.output).stat().st_size
        rec = engine.build_record
        print(f"built {args.output} ({size / 1e6:.2f} MB) in {time.perf_counter() - start:.1f} s")
        tuned = ", ".join(f"{k}={v}" for k, v in engine.tuned_settings.items()) or "-"
        print(
            f"  backend {rec['backend']}, batch sizes {engine.batch_sizes}, "
            f"{rec['original_layers']} layers in the model, tuned at {tuned}"
        )
        if rec.get("rejected_tactics"):  # deploy/jetson/tactic-self-check.md
            print(
                f"  tactic self-check rejected {len(rec['rejected_tactics'])} candidate(s) "
                f"(never chosen): `edge-infer inspect {args.output}` lists them"
            )
        for b in engine.inputs:
            print(f"  input  {b}")
        for b in engine.outputs:
            print(f"  output {b}")
    return 0
