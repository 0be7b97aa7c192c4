"""Engine table (issue 18 §4): FP32 and INT8, ours against onnxruntime, per model and batch.

Per row (model × batch): the FP32 ONNX model is built into our FP32 engine and, calibrated
on ``--calib-frames`` synthetic camera frames, into our INT8 engine; onnxruntime quantizes
the same model with ``quantize_static`` (QDQ, per-channel, same frames, same calibrator
kind). Ours FP32 is timed against onnxruntime FP32 and ours INT8 against onnxruntime's
quantized model, each pair in alternating fresh processes
(``edge_infer.engine.benchmark.compare``), and again with ``--paired-rounds`` turns of about
``--turn-seconds`` each between resident processes (``compare_paired``, ``--paired-pairs``
pairs of them one after another): the "paired" columns, the median per-turn ratio, which the
host's slow phases (seconds to minutes, up to 1.5x, that a fresh process falls in) do not
move as they move the per-process medians where they slow both sides alike; where some
rounds were slowed and others not, the cell adds the median over the quiet rounds and their
count ("quiet", ``benchmark.quiet_rounds``). Agreement with our FP32 output on
``--eval-frames`` other frames: cosine, max abs diff and, where the output has classes,
top-1 (classifier) or per-step argmax (CRNN) agreement.

Rows are merged into ``bench/results/engine_table.json`` (a run of some ``--rows`` keeps
the others); ``engine_table.md`` is written from all rows, "not measured" where none.

Run (BLAS unthrottled; 2 threads, the project's benchmark method):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/engine_table.py \
        --rows mobilenetv2-b1 resnet50-b1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Model:
    """A benchmark subject: where its FP32 ONNX comes from and its one image input."""

    source: str  # "zoo:NAME" or an ONNX path
    kwargs: tuple[tuple[str, Any], ...]
    input_name: str
    chw: tuple[int, int, int]
    kind: str  # classifier | detector | sequence: how agreement is scored


MODELS: dict[str, Model] = {
    "resnet50": Model("zoo:resnet50", (), "input", (3, 224, 224), "classifier"),
    "mobilenetv2": Model("zoo:mobilenetv2", (), "input", (3, 224, 224), "classifier"),
    "yolov8n-320": Model(
        "zoo:yolov8n", (("imgsz", 320), ("fold_bn", True)), "images", (3, 320, 320), "detector"
    ),
    "yolov8n-640": Model(
        "zoo:yolov8n", (("imgsz", 640), ("fold_bn", True)), "images", (3, 640, 640), "detector"
    ),
    "demo-det": Model(  # dynamic H/W: measured at 416x256 (W x H), the cameras' input
        str(ROOT / "models" / "edge_demo_det.onnx"), (), "images", (3, 256, 416), "detector"
    ),
    "crnn-w128": Model("zoo:crnn", (("width", None),), "image", (3, 32, 128), "sequence"),
}
BATCHES = (1, 8)
LOADS = ("before", "after")
ROWS = [f"{m}-b{b}" for m in MODELS for b in BATCHES]


def parse_row(row: str) -> tuple[str, int]:
    """``"yolov8n-320-b8"`` -> ``("yolov8n-320", 8)``."""
    name, _, batch = row.rpartition("-b")
    if name not in MODELS or not batch.isdigit():
        raise ValueError(f"unknown row {row!r}; rows: {', '.join(ROWS)}")
    return name, int(batch)


def synth_frames(count: int, chw: tuple[int, int, int], split: str) -> list[np.ndarray]:
    """``count`` synthetic camera frames preprocessed as the daemon does (letterbox, RGB, /255)
    to ``chw``, from the synthetic world's ``split`` ("calib" or "val"): one source of
    calibration and evaluation data for ours and onnxruntime."""
    from edge_infer.pipeline.preprocess import preprocess
    from edge_infer.synth.dataset import render_image

    _, h, w = chw
    return [preprocess(render_image(split, 0, i, 320)[0], (w, h))[0] for i in range(count)]


class FramesReader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over the same frames we
    calibrate on, one ``[1, C, H, W]`` feed at a time."""

    def __init__(self, input_name: str, frames: list[np.ndarray]) -> None:
        self.input_name = input_name
        self.frames = frames
        self._it: Iterator[np.ndarray] = iter(frames)

    def get_next(self) -> dict[str, np.ndarray] | None:
        frame = next(self._it, None)
        return None if frame is None else {self.input_name: frame[None]}

    def rewind(self) -> None:
        self._it = iter(self.frames)


def quantize_ort(fp32: Path, out: Path, reader: FramesReader, calibrator: str) -> Path:
    """onnxruntime's static quantization as its docs run it: ``quant_pre_process`` (shape
    inference and graph optimization: BatchNorm folded into Conv), then ``quantize_static``
    with QDQ, per-channel int8 weights, uint8 activations (its x86 default, U8S8), the
    calibrator named like ours."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32, out = fp32.resolve(), out.resolve()
    pre = out.with_name(out.stem + "-pre.onnx")
    # it writes its scratch files (sym_shape_infer_temp.onnx, external data) into the
    # working directory: run it in the output's temporary folder
    with contextlib.chdir(out.parent):
        try:
            quant_pre_process(str(fp32), str(pre))
        except Exception:  # its symbolic shape inference gives up on some graphs
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy}
    quantize_static(
        str(pre), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=method[calibrator],
    )  # fmt: skip
    return out


def agreement(ref: np.ndarray, got: np.ndarray, kind: str) -> dict[str, float]:
    """How close ``got`` is to ``ref`` (FP32): cosine, max abs diff, and for classes the
    fraction of equal argmaxes (classifier: over the last axis per image; sequence: per step)."""
    a, b = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    out = {
        "cosine": float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b)),
        "max_abs_diff": float(np.max(np.abs(a - b))) if a.size else 0.0,
    }
    if kind in ("classifier", "sequence"):
        out["top1_agreement"] = float(np.mean(ref.argmax(-1) == got.argmax(-1)))
    return out


def _load_model(model: Model, work: Path) -> Path:
    if not model.source.startswith("zoo:"):
        return Path(model.source)
    from edge_infer.zoo import build_model

    path = work / f"{model.source[4:]}-{abs(hash(model.kwargs))}.onnx"
    if not path.exists():
        onnx.save(build_model(model.source[4:], batch=None, **dict(model.kwargs)), path)
    return path


def _outputs(path: Path, feeds: list[np.ndarray], name: str, batch: int, ours: bool) -> np.ndarray:
    """Run a model over ``feeds`` in batches; outputs concatenated along the batch axis."""
    if ours:
        from edge_infer.engine.runtime import Engine

        ctx = Engine.load(str(path)).create_context()
        run = lambda x: next(iter(ctx.execute({name: x}).values()))  # noqa: E731
    else:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        run = lambda x: sess.run(None, {name: x})[0]  # noqa: E731
    outs = [np.array(run(np.stack(feeds[i : i + batch]))) for i in range(0, len(feeds), batch)]
    axis = 1 if outs[0].ndim == 3 and outs[0].shape[1] == batch and outs[0].shape[0] != batch else 0
    return np.concatenate(outs, axis=axis)


def _timed_iterations(engine: Path, feed: np.ndarray, name: str, args: argparse.Namespace) -> int:
    """Iterations per process so one process times about ``--seconds`` of our engine."""
    from edge_infer.engine.runtime import Engine

    ctx = Engine.load(str(engine)).create_context()
    ctx.execute({name: feed})
    t0 = time.perf_counter()
    ctx.execute({name: feed})
    once = time.perf_counter() - t0
    return int(min(args.iterations, max(args.min_iterations, args.seconds / max(once, 1e-4))))


#: runs a side's turn has at least: the first run after the other side's turn finds the
#: caches cold (ResNet-50 b1 INT8: 38 ms in turns of 2 runs against 25 ms in fresh processes),
#: and the turn's median leaves it out from 3 runs on
MIN_TURN_RUNS = 3


def _turn_runs(report: dict[str, Any], args: argparse.Namespace) -> int:
    """Runs a turn of ``compare_paired`` takes: about ``--turn-seconds`` of our engine (its
    median in the fresh processes of ``report``), at least MIN_TURN_RUNS."""
    once = report["edge_infer"]["median_ms"] * 1e-3
    return max(MIN_TURN_RUNS, round(args.turn_seconds / max(once, 1e-6)))


def run_row(row: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import edge_infer
    from edge_infer.engine.benchmark import compare, compare_paired
    from edge_infer.engine.calibration import calibrate
    from edge_infer.engine.options import BuildOptions

    name, batch = parse_row(row)
    model = MODELS[name]
    fp32 = _load_model(model, work)
    shapes = {model.input_name: (batch, *model.chw)}
    calib = synth_frames(args.calib_frames, model.chw, "calib")
    count = -(-max(args.eval_frames, batch) // batch) * batch  # whole batches
    evals = synth_frames(count, model.chw, "val")
    feed = np.stack(evals[:batch])
    cache = str(work / f"{name}.timing.json")
    t0 = time.perf_counter()
    cal = calibrate(
        str(fp32), calib, calibrator=args.calibrator, shapes={model.input_name: (1, *model.chw)}
    )
    calib_s = time.perf_counter() - t0
    engines = {p: work / f"{row}-{p}.engine" for p in ("fp32", "int8")}
    build_s = {}
    fallen_back: list[str] = []
    for prec, path in engines.items():
        extra = {"calibration": cal.cache} if prec == "int8" else {}
        opts = BuildOptions(shapes=shapes, timing_cache=cache, precision=prec, **extra)
        t0 = time.perf_counter()
        if prec == "int8" and args.int8_layers == "faster":
            from edge_infer.engine import int8_where_faster

            found = int8_where_faster(str(fp32), opts, {model.input_name: feed}, report=print)
            found.engine.save(path)
            fallen_back = found.fallen_back
        else:
            edge_infer.build(str(fp32), str(path), options=opts)
        build_s[prec] = time.perf_counter() - t0
    q_path = work / f"{name}-ort-int8.onnx"
    if not q_path.exists():
        quantize_ort(fp32, q_path, FramesReader(model.input_name, calib), args.calibrator)
    ref = _outputs(fp32, evals, model.input_name, batch, ours=False)
    result: dict[str, Any] = {
        "model": name, "batch": batch, "kind": model.kind, "calibrator": args.calibrator,
        "calib_frames": len(calib), "eval_frames": len(evals), "calibrate_s": calib_s,
        "build_s": build_s, "threads": args.threads, "int8_layers": args.int8_layers,
        "int8_fallen_back": fallen_back,
    }  # fmt: skip
    sides = {"fp32": (engines["fp32"], fp32), "int8": (engines["int8"], q_path)}
    for prec, (engine, onnx_path) in sides.items():
        iterations = _timed_iterations(engine, feed, model.input_name, args)
        load = os.getloadavg()
        report = compare(
            str(engine), str(onnx_path), {model.input_name: feed}, batch=batch,
            threads=args.threads, iterations=iterations, warmup=args.warmup,
            processes=args.processes,
        )  # fmt: skip
        report["load_average"] = {"before": load, "after": os.getloadavg()}
        if args.paired_rounds:
            report["paired"] = compare_paired(
                ("edge_infer", str(engine)), ("onnxruntime", str(onnx_path)),
                {model.input_name: feed}, batch=batch, threads=args.threads,
                rounds=args.paired_rounds, pairs=args.paired_pairs,
                runs=_turn_runs(report, args), warmup=args.warmup,
            )  # fmt: skip
        ours = _outputs(engine, evals, model.input_name, batch, ours=True)
        theirs = _outputs(onnx_path, evals, model.input_name, batch, ours=False)
        report["agreement_vs_fp32"] = {
            "edge_infer": agreement(ref, ours, model.kind),
            "onnxruntime": agreement(ref, theirs, model.kind),
        }
        result[prec] = report
    result["int8_over_our_fp32"] = (
        result["int8"]["edge_infer"]["median_ms"] / result["fp32"]["edge_infer"]["median_ms"]
    )
    if args.paired_rounds:  # our two engines taking turns, as against onnxruntime
        result["int8_over_our_fp32_paired"] = compare_paired(
            ("edge_infer", str(engines["int8"])), ("edge_infer", str(engines["fp32"])),
            {model.input_name: feed}, batch=batch, threads=args.threads,
            rounds=args.paired_rounds, pairs=args.paired_pairs,
            runs=_turn_runs(result["fp32"], args),
            warmup=args.warmup,
        )  # fmt: skip
    return result


def _cell(r: dict | None, *keys: str, fmt: str = "{:.2f}") -> str:
    for k in keys:
        if not isinstance(r, dict) or k not in r:
            return "not measured"
        r = r[k]
    return fmt.format(r)


def _spread(r: dict, prec: str) -> str:
    """ " (spread!)" where a side's per-process medians spread beyond compare's warning."""
    return " (spread!)" if r.get(prec, {}).get("warnings") else ""


def _best(r: dict, prec: str) -> str:
    """Fastest process of ours over fastest of onnxruntime's: at 2 threads beside another
    job a process settles fast or slow, and the fast ones are the undisturbed figure."""
    try:
        ours = min(r[prec]["edge_infer"]["per_process_medians_ms"])
        theirs = min(r[prec]["onnxruntime"]["per_process_medians_ms"])
    except (KeyError, TypeError, ValueError):
        return "not measured"
    return f"{ours / theirs:.2f}×"


def _paired(q: dict | None) -> str:
    """A ``compare_paired`` report's median per-turn ratio with its 10th to 90th
    percentiles, and where some rounds were quiet and not all (``benchmark.quiet_rounds``:
    neither side slowed by the host's phase), the median over those and their count."""
    if not q:
        return "not measured"
    cell = f"{q['ratio']:.2f}× ({q['ratio_p10']:.2f}–{q['ratio_p90']:.2f})"
    quiet, rounds = q.get("quiet_rounds"), len(q.get("round_ratios", ()))
    if quiet and q.get("quiet_ratio") is not None and quiet < rounds:
        cell += f"; quiet {q['quiet_ratio']:.2f}× ({quiet}/{rounds})"
    return cell


def _agree(r: dict | None, side: str) -> str:
    if not r or "int8" not in r:
        return "not measured"
    a = r["int8"]["agreement_vs_fp32"][side]
    text = f"cos {a['cosine']:.4f}"
    if "top1_agreement" in a:
        text += f", top-1 {a['top1_agreement']:.0%}"
    else:
        text += f", max abs diff {a['max_abs_diff']:.3g}"
    return text


def _fallen(r: dict) -> str:
    """With ``--int8-layers faster``: how many convolutions our INT8 engine keeps in FP32."""
    if r.get("int8_layers") != "faster":
        return ""
    return f" ({len(r.get('int8_fallen_back', []))} convs FP32)"


def markdown(results: dict[str, dict]) -> str:
    """The table, one line per row of :data:`ROWS` (and any other row measured)."""
    lines = [
        "| row | FP32 ours ms | FP32 ORT ms | FP32 ours/ORT | FP32 best-process ratio | "
        "FP32 ours/ORT paired | INT8 ours ms | INT8 ORT ms | INT8 ours/ORT | "
        "INT8 best-process ratio | INT8 ours/ORT paired | INT8 ours/FP32 ours | "
        "INT8 ours/FP32 ours paired | INT8 vs FP32 (ours) | INT8 vs FP32 (ORT) | "
        "load avg (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in list(ROWS) + [r for r in results if r not in ROWS]:
        r = results.get(row)
        if r is None or "error" in r:
            why = f"failed: {r['error'][:80]}" if r else "not measured"
            lines.append(f"| {row} |" + f" {why} |" + " not measured |" * 14)
            continue
        loads = [r[p]["load_average"][w][0] for p in ("fp32", "int8") if p in r for w in LOADS]
        lines.append(
            f"| {row} | {_cell(r, 'fp32', 'edge_infer', 'median_ms')} | "
            f"{_cell(r, 'fp32', 'onnxruntime', 'median_ms')} | "
            f"{_cell(r, 'fp32', 'ratio', fmt='{:.2f}×')}{_spread(r, 'fp32')} | "
            f"{_best(r, 'fp32')} | {_paired(r.get('fp32', {}).get('paired'))} | "
            f"{_cell(r, 'int8', 'edge_infer', 'median_ms')}{_fallen(r)} | "
            f"{_cell(r, 'int8', 'onnxruntime', 'median_ms')} | "
            f"{_cell(r, 'int8', 'ratio', fmt='{:.2f}×')}{_spread(r, 'int8')} | "
            f"{_best(r, 'int8')} | {_paired(r.get('int8', {}).get('paired'))} | "
            f"{_cell(r, 'int8_over_our_fp32', fmt='{:.2f}×')} | "
            f"{_paired(r.get('int8_over_our_fp32_paired'))} | {_agree(r, 'edge_infer')} | "
            f"{_agree(r, 'onnxruntime')} | "
            f"{min(loads):.1f}–{max(loads):.1f} |"
        )
    return "\n".join(lines)


HEADER = """# Engine table (issue 18 §4): ours vs onnxruntime, FP32 and INT8, CPU

Generated by `bench/engine_table.py` (its docstring has the method). Times are medians of
per-process medians (alternating fresh processes); "best-process ratio" is the fastest
process of ours over onnxruntime's fastest. "(spread!)": a side's per-process medians spread
over 30 %, the machine was busy. "paired": the median (10th–90th percentile) of the per-turn
ratios ours / onnxruntime (our INT8 / our FP32 in "INT8 ours/FP32 ours paired"), resident
processes taking turns of about a quarter second (three pairs of processes one after
another, a process can hold a slow mode of its own): the host's slow phases hit both sides
of a turn alike. INT8 ours runs the CPU backend's native INT8 kernels (`qconv_native`,
`qdepthwise_native`, int8 reformat/pool/resize/QGemm steps; before 2026-12-05 evening:
reference kernels). Agreement columns compare each INT8 model with our FP32 engine's output
on the held-out frames (zoo models have random weights: top-1 agreement is a numerics check,
not accuracy). Load average, BLAS kernel and per-process medians are in `engine_table.json`.

Beside other jobs, onnxruntime's spinning thread pool (its default) mostly runs in a slow
mode, 2-3.5x its undisturbed time, while ours stays steady: e.g. YOLOv8n-320 b1, 6 fresh
processes each at load 5-6, ORT 42-47 ms with spinning, 24 ms with
`session.intra_op.allow_spinning=0`, 14 ms in its fast mode. Under load the median ratios
flatter us; read the best-process ratio, and remeasure on a quiet machine.
"""


def write_markdown(out: Path, results: dict[str, dict]) -> None:
    (out / "engine_table.md").write_text(HEADER + "\n" + markdown(results) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", nargs="+", default=ROWS, help=f"rows to run: {' '.join(ROWS)}")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--processes", type=int, default=3, help="processes per side")
    p.add_argument("--iterations", type=int, default=30, help="most timed runs per process")
    p.add_argument("--min-iterations", type=int, default=5)
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per process")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument(
        "--paired-rounds",
        type=int,
        default=21,
        help="turns a side between resident processes after the fresh ones (0: none)",
    )
    p.add_argument(
        "--paired-pairs", type=int, default=3, help="pairs of resident processes sharing them"
    )
    p.add_argument("--turn-seconds", type=float, default=0.25, help="about this long a turn")
    p.add_argument("--calib-frames", type=int, default=32)
    p.add_argument("--eval-frames", type=int, default=16)
    p.add_argument("--calibrator", choices=["minmax", "entropy"], default="minmax")
    p.add_argument(
        "--int8-layers",
        choices=["all", "faster"],
        default="all",
        help="our INT8 engine: every layer it can (all) or INT8 only where faster here "
        "(edge-infer build --int8-layers faster); the INT8 cell then counts the FP32 convs",
    )
    p.add_argument("--out", default=str(RESULTS), help="folder for engine_table.{json,md}")
    p.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
    args = p.parse_args(argv)
    if args.render:
        results = json.loads((Path(args.out) / "engine_table.json").read_text())
        write_markdown(Path(args.out), results)
        return 0
    for row in args.rows:
        parse_row(row)  # every name checked before anything runs
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "engine_table.json"
    results = json.loads(table.read_text()) if table.exists() else {}
    with tempfile.TemporaryDirectory(prefix="engine-table-") as tmp:
        for row in args.rows:
            print(f"== {row} (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
            try:
                results[row] = run_row(row, Path(tmp), args)
            except Exception as exc:  # one row failing keeps the others
                print(f"{row} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                results[row] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            table.write_text(json.dumps(results, indent=2))
            write_markdown(out, results)
            line = [x for x in markdown(results).splitlines() if x.startswith(f"| {row} |")]
            print(line[0], flush=True)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
