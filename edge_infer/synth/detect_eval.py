"""Run a detector over a COCO-format dataset and score it with :mod:`edge_infer.synth.evaluate`.

The detector is a plain function ``runner(batch NCHW float32) -> raw output array`` so that
the same loop scores an edge_infer engine, onnxruntime or anything else; the runner
factories below build one from a file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_infer.errors import BindingError, EdgeInferError, ModelLoadError
from edge_infer.pipeline.postprocess import Layout, decode
from edge_infer.pipeline.preprocess import preprocess_batch
from edge_infer.synth.evaluate import Box, EvalResult, coco_ground_truth, evaluate

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ModelRunner:
    """A detector as a function, with its input geometry and the batch sizes it accepts."""

    run: Runner
    input_size: tuple[int, int]  # (width, height)
    max_batch: int
    description: str


def parse_input_size(text: str) -> tuple[int, int]:
    """``WxH`` (e.g. ``416x256``) → ``(width, height)``, both positive multiples of 32."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise EdgeInferError(f"input size must be WxH (e.g. 416x256), got {text!r}") from None
    if w < 32 or h < 32 or w % 32 or h % 32:
        raise EdgeInferError(f"input size must be WxH, multiples of 32, got {text!r}")
    return w, h


def dynamic_hw(path: str | os.PathLike[str]) -> bool:
    """Whether an ONNX model's first input has a dynamic height or width (False for an
    engine file or any other file)."""
    import onnx

    if Path(path).suffix.lower() != ".onnx":
        return False
    shape = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape
    return any(not d.HasField("dim_value") or d.dim_value < 1 for d in list(shape.dim)[2:4])


def _onnx_input(
    path: Path, input_size: tuple[int, int] | None = None
) -> tuple[str, tuple[int, int]]:
    """The model's input name and ``(width, height)``: its fixed H and W, or ``input_size``
    for a model with dynamic H and W (which needs one)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises several unrelated types for bad files
        raise ModelLoadError(f"{path}: not a readable ONNX model ({exc})") from exc
    inp = model.graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ModelLoadError(f"{path}: input '{inp.name}' must be [N, 3, H, W], got {dims}")
    fixed = (dims[3], dims[2])
    if min(fixed) < 1:
        if input_size is None:
            raise ModelLoadError(
                f"{path}: input '{inp.name}' has dynamic height/width {dims}; "
                "give the input size with --input-size WxH (e.g. 416x256)"
            )
        return inp.name, input_size
    if input_size is not None and input_size != fixed:
        raise ModelLoadError(
            f"{path}: input '{inp.name}' is fixed at {fixed[0]}x{fixed[1]} (WxH); "
            f"--input-size gave {input_size[0]}x{input_size[1]}"
        )
    return inp.name, fixed


def onnxruntime_runner(
    path: str | os.PathLike[str], threads: int = 0, input_size: tuple[int, int] | None = None
) -> ModelRunner:
    """A runner backed by onnxruntime's CPU provider (a reference, not our engine);
    ``input_size`` ``(width, height)`` is needed for a model with dynamic H and W."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise EdgeInferError(
            "--runtime onnxruntime needs the onnxruntime package (pip install onnxruntime)"
        ) from exc
    p = Path(path)
    name, size = _onnx_input(p, input_size)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    # idle worker threads sleep instead of spinning: kinder to a shared CPU, same results
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
    out_name = sess.get_outputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        return sess.run([out_name], {name: batch})[0]

    return ModelRunner(run, size, 1 << 16, f"onnxruntime {ort.__version__} (CPU)")


def engine_runner(
    path: str | os.PathLike[str], batch: int, input_size: tuple[int, int] | None = None
) -> ModelRunner:
    """A runner backed by an edge_infer engine file, or an ONNX model built on the spot
    (for ``input_size`` ``(width, height)`` if its H and W are dynamic)."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"{p}: no such model or engine file")
    if p.suffix.lower() == ".onnx":
        try:
            from edge_infer.engine import build
        except ImportError as exc:
            raise EdgeInferError(
                f"the edge_infer builder is unavailable ({exc}); evaluate "
                f"with --runtime onnxruntime instead"
            ) from exc

        name, (w, h) = _onnx_input(p, input_size)
        engine = build(
            str(p),
            min_shapes={name: (1, 3, h, w)},
            opt_shapes={name: (batch, 3, h, w)},
            max_shapes={name: (batch, 3, h, w)},
        )
        what = f"edge_infer engine built from {p.name}"
    else:
        from edge_infer.engine import Engine

        engine = Engine.load(p)
        what = f"edge_infer engine {p.name}"
    inp = engine.inputs[0]
    if len(inp.shape) != 4:
        raise BindingError(f"engine input '{inp.name}' must be [N, 3, H, W], got {inp.shape}")
    if input_size is not None and input_size != (inp.shape[3], inp.shape[2]):
        raise BindingError(
            f"{p}: the engine's input is {inp.shape[3]}x{inp.shape[2]} (WxH); "
            f"--input-size gave {input_size[0]}x{input_size[1]}"
        )
    out_name = engine.outputs[0].name
    ctx = engine.create_context()

    def run(x: np.ndarray) -> np.ndarray:
        return ctx.execute({inp.name: x})[out_name]

    return ModelRunner(run, (inp.shape[3], inp.shape[2]), engine.profile.max_batch, what)


def evaluate_on_coco(
    runner: ModelRunner,
    coco: dict[str, Any],
    root: str | os.PathLike[str],
    batch: int = 8,
    layout: Layout = "yolov8",
    score_threshold: float = 0.001,
    iou_threshold: float = 0.7,
    progress: bool = True,
) -> EvalResult:
    """Detect on every image of ``coco`` (files relative to ``root``) and compute mAP.

    Model class ``c`` is the dataset's ``c``-th category (categories in file order).
    The defaults (score 0.001, NMS IoU 0.7) are ultralytics' validation settings.
    """
    from tqdm import tqdm

    if batch < 1 or batch > runner.max_batch:
        raise BindingError(f"batch {batch} is outside 1..{runner.max_batch} for this model")
    cat_ids = [int(c["id"]) for c in coco["categories"]]
    images = coco["images"]
    dets: list[Box] = []
    for start in tqdm(
        range(0, len(images), batch), desc="evaluate", unit="batch", disable=not progress
    ):
        chunk = images[start : start + batch]
        frames = [_read(Path(root) / img["file_name"]) for img in chunk]
        x, boxes = preprocess_batch(frames, runner.input_size)
        out = runner.run(np.ascontiguousarray(x))
        for img, d in zip(chunk, decode(out, boxes, layout, score_threshold, iou_threshold)):
            for (x0, y0, x1, y1), s, c in zip(
                d.boxes.tolist(), d.scores.tolist(), d.classes.tolist()
            ):
                if c >= len(cat_ids):
                    raise BindingError(
                        f"model predicts class {c} but the dataset has only "
                        f"{len(cat_ids)} categories"
                    )
                dets.append(Box(int(img["id"]), cat_ids[c], (x0, y0, x1, y1), s))
    return evaluate(coco_ground_truth(coco), dets, cat_ids)


def _read(path: Path) -> np.ndarray:
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise EdgeInferError(f"cannot read image {path}")
    return frame
