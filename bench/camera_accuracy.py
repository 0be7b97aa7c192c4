"""Precision and recall of the demo detector on the synthetic camera videos.

Renders (or reuses) 12 synthetic cameras as the demo renders them (640×360, 15 fps, H.264,
seed 0; the demo's 8 cameras are cams 0-7 of these), decodes every frame with OpenCV as the
daemon does, runs the model with the daemon's preprocessing and postprocessing
(``pipeline.preprocess`` / ``postprocess.decode`` with ``PostprocessConfig``'s defaults),
and matches detections to the per-frame ground truth at IoU 0.5 with the greedy, class-aware
matcher of :mod:`edge_infer.synth.camera_eval`.

    python bench/camera_accuracy.py                       # our engine (FP32, CPU backend)
    python bench/camera_accuracy.py --runtime both        # and onnxruntime as a cross-check
    python bench/camera_accuracy.py --model /tmp/new.onnx --out /tmp/cam  # another model

A model with dynamic height/width (the demo detector) runs at ``--input-size`` (default
416x256, what the daemon builds it for: a 640x360 frame letterboxes to 416x234).

Writes ``OUT.json`` and ``OUT.md`` (default ``bench/results/camera_accuracy``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from edge_infer.pipeline.config import PostprocessConfig
from edge_infer.pipeline.postprocess import decode
from edge_infer.pipeline.preprocess import preprocess_batch
from edge_infer.synth.camera_eval import (
    SIZE_BUCKETS,
    FrameTruth,
    PRCurve,
    load_camera_truth,
    match_frame,
)
from edge_infer.synth.detect_eval import (
    ModelRunner,
    dynamic_hw,
    engine_runner,
    onnxruntime_runner,
    parse_input_size,
)
from edge_infer.synth.video import write_videos

POST = PostprocessConfig()
#: detections are decoded down to this score once; every higher threshold is a filter of them
FLOOR = 0.05
TARGET_PRECISION = 0.85
SWEEP = (0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6)


def videos(folder: Path, cameras: int, seconds: float, seed: int) -> list[dict]:
    """The manifest entries of ``cameras`` camera files, rendering them if missing."""
    manifest = folder / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        if len(m["cameras"]) >= cameras and m.get("seed") == seed:
            same = all(c["frames"] == round(seconds * c["fps"]) for c in m["cameras"])
            if same:
                return m["cameras"][:cameras]
    codec = "h264" if _has_ffmpeg() else "mjpeg"
    write_videos(folder, cameras, seconds, 15.0, 640, 360, codec=codec, seed=seed, workers=2)
    return json.loads(manifest.read_text())["cameras"][:cameras]


def _has_ffmpeg() -> bool:
    import shutil

    return shutil.which("ffmpeg") is not None


def read_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    return frames


def camera_curve(
    runner: ModelRunner, frames: list[np.ndarray], truth: list[FrameTruth], batch: int
) -> tuple[PRCurve, np.ndarray, np.ndarray]:
    """Curve of one camera, plus every ground-truth box's short side and matched score."""
    scores, tps, sides, matched = [], [], [], []
    for start in range(0, len(frames), batch):
        chunk = frames[start : start + batch]
        x, boxes = preprocess_batch(chunk, runner.input_size)
        out = runner.run(np.ascontiguousarray(x))
        dets = decode(out, boxes, POST.layout, FLOOR, POST.iou_threshold, POST.max_detections, 4096)
        for d, gt in zip(dets, truth[start : start + batch]):
            tp, m = match_frame(d.boxes, d.scores, d.classes, gt)
            scores.append(d.scores.astype(np.float64))
            tps.append(tp)
            wh = gt.boxes[:, 2:] - gt.boxes[:, :2]
            sides.append(wh.min(axis=1))
            matched.append(m)
    n_truth = sum(len(t.classes) for t in truth[: len(frames)])
    curve = PRCurve(np.concatenate(scores), np.concatenate(tps), n_truth)
    return curve, np.concatenate(sides), np.concatenate(matched)


def measure(runner: ModelRunner, cams: list[dict], folder: Path, batch: int) -> dict:
    thr = POST.score_threshold
    per_cam, curves, sides, matched = {}, [], [], []
    t0 = time.perf_counter()
    for cam in cams:
        video = folder / cam["files"].get("h264", cam["files"].get("mjpeg", ""))
        frames = read_frames(video)
        truth = load_camera_truth(folder / cam["ground_truth"])
        if len(frames) != len(truth):
            raise SystemExit(f"{video}: {len(frames)} frames decoded, {len(truth)} in its truth")
        curve, s, m = camera_curve(runner, frames, truth, batch)
        curves.append(curve)
        sides.append(s)
        matched.append(m)
        per_cam[f"cam{cam['camera']:02d}"] = {"frames": len(frames), **curve.at(thr)}
    total = PRCurve.combine(curves)
    side, score = np.concatenate(sides), np.concatenate(matched)
    by_size = {}
    for name, lo, hi in SIZE_BUCKETS:
        sel = (side >= lo) & (side < hi)
        n = int(np.count_nonzero(sel))
        by_size[name] = {
            "objects": n,
            "recall": float(np.count_nonzero(score[sel] > thr)) / n if n else 1.0,
        }
    return {
        "runtime": runner.description,
        "seconds": round(time.perf_counter() - t0, 1),
        "operating_point": total.at(thr),
        "best_recall_at_precision": {
            "min_precision": TARGET_PRECISION,
            **total.best_recall(TARGET_PRECISION),
        },
        "sweep": [total.at(t) for t in SWEEP],
        "per_camera": per_cam,
        "recall_by_size": by_size,
    }


def markdown(result: dict, args: argparse.Namespace) -> str:
    size_given = bool(result.get("dynamic_input"))
    lines = [
        "# Demo detector on the synthetic camera videos",
        "",
        f"Model `{args.model}` (input {result['input']}, W×H"
        + ("; its height and width are dynamic, this is `--input-size`" if size_given else "")
        + f"); {args.cameras} cameras × "
        f"{args.seconds:g} s at 15 fps, 640×360, H.264, seed {args.seed} "
        f"(`edge_infer.synth.video`, as `edge-infer demo` renders them). Daemon preprocessing "
        f"(letterbox to the input) and postprocessing (NMS IoU {POST.iou_threshold}, max "
        f"{POST.max_detections} detections), greedy class-aware matching at IoU 0.5 "
        f"(`edge_infer.synth.camera_eval`). Operating threshold: the daemon's default "
        f"`postprocess.score_threshold` {POST.score_threshold}.",
        "",
        "```sh",
        "python bench/camera_accuracy.py " + " ".join(args.argv),
        "```",
        "",
    ]
    for r in result["runs"]:
        op, best = r["operating_point"], r["best_recall_at_precision"]
        lines += [
            f"## {r['runtime']}",
            "",
            f"At score > {op['threshold']}: **precision {op['precision']:.3f}, recall "
            f"{op['recall']:.3f}** ({op['tp']} TP, {op['fp']} FP, {op['fn']} missed). "
            f"Best recall at precision ≥ {best['min_precision']}: **{best['recall']:.3f}** "
            f"(threshold {best['threshold']:.3f}, precision {best['precision']:.3f}).",
            "",
            "| camera | frames | precision | recall | TP | FP | missed |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for cam, c in r["per_camera"].items():
            lines.append(
                f"| {cam} | {c['frames']} | {c['precision']:.3f} | {c['recall']:.3f} | "
                f"{c['tp']} | {c['fp']} | {c['fn']} |"
            )
        lines += ["", "| score threshold | precision | recall |", "|---:|---:|---:|"]
        lines += [
            f"| {s['threshold']} | {s['precision']:.3f} | {s['recall']:.3f} |" for s in r["sweep"]
        ]
        lines += ["", "| object size (short side) | objects | recall |", "|---|---:|---:|"]
        lines += [
            f"| {k} | {v['objects']} | {v['recall']:.3f} |" for k, v in r["recall_by_size"].items()
        ]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="models/edge_demo_det.onnx", help="ONNX detector")
    p.add_argument("--videos", default="build/camera_accuracy", help="camera files (cached)")
    p.add_argument("--cameras", type=int, default=12)
    p.add_argument("--seconds", type=float, default=5.0, help="length of each camera file")
    p.add_argument("--seed", type=int, default=0, help="seed of the cameras (the demo's: 0)")
    p.add_argument("--runtime", choices=("edge_infer", "onnxruntime", "both"), default="edge_infer")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2, help="onnxruntime threads")
    p.add_argument(
        "--input-size",
        default="416x256",
        metavar="WxH",
        help="input of a model with dynamic height/width (default 416x256, the cameras'); a "
        "fixed-size model runs at its own",
    )
    p.add_argument("--out", default="bench/results/camera_accuracy", help="OUT.json and OUT.md")
    args = p.parse_args()
    args.argv = [
        f"--{k.replace('_', '-')} {v}"
        for k, v in vars(args).items()
        if k not in ("argv", "threads") and v != p.get_default(k)
    ]
    folder = Path(args.videos)
    cams = videos(folder, args.cameras, args.seconds, args.seed)
    size = parse_input_size(args.input_size) if dynamic_hw(args.model) else None
    runners = []
    if args.runtime in ("edge_infer", "both"):
        runners.append(engine_runner(args.model, args.batch, size))
    if args.runtime in ("onnxruntime", "both"):
        runners.append(onnxruntime_runner(args.model, args.threads, size))
    w, h = runners[0].input_size
    result = {
        "model": args.model,
        "input": f"{w}x{h}",
        "dynamic_input": size is not None,
        "cameras": args.cameras,
        "seconds": args.seconds,
        "seed": args.seed,
        "score_threshold": POST.score_threshold,
        "runs": [],
    }
    for runner in runners:
        r = measure(runner, cams, folder, args.batch)
        op = r["operating_point"]
        print(
            f"{r['runtime']}: precision {op['precision']:.3f} recall {op['recall']:.3f} at "
            f"{op['threshold']}; best recall at precision >= {TARGET_PRECISION}: "
            f"{r['best_recall_at_precision']['recall']:.3f} ({r['seconds']} s)"
        )
        result["runs"].append(r)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result, args))


if __name__ == "__main__":
    main()
