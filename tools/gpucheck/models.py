"""The benchmarked models: what each is, where its ONNX comes from, its input.

Run as a step (``python -m tools.gpucheck.models --work DIR``) to write the zoo's YOLOv8n-640
(random, well-scaled weights; BatchNorm folded, dynamic batch: the ultralytics export) next
to the other work files; the demo detector is the committed ``models/edge_demo_det.onnx``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    title: str
    input: str
    width: int  # input width and height in pixels
    height: int
    committed: Path | None  # None: written by this module into the work folder

    def onnx(self, work: Path) -> Path:
        return self.committed if self.committed is not None else work / f"{self.name}.onnx"

    def shape(self, batch: int) -> str:
        return f"{self.input}:{batch}x3x{self.height}x{self.width}"


MODELS = {
    "yolov8n-640": ModelSpec("yolov8n-640", "YOLOv8n 640", "images", 640, 640, None),
    # dynamic height/width: built, calibrated and run at 416x256 (W x H), the input the daemon
    # builds it for from 16:9 cameras (issue 17 item 21)
    "demo-det": ModelSpec(
        "demo-det",
        "demo detector 416x256",
        "images",
        416,
        256,
        ROOT / "models" / "edge_demo_det.onnx",
    ),
}


def write_zoo_models(work: Path) -> list[Path]:
    import onnx

    from edge_infer.zoo import build_model

    work.mkdir(parents=True, exist_ok=True)
    path = MODELS["yolov8n-640"].onnx(work)
    onnx.save(build_model("yolov8n", batch=None, imgsz=640, fold_bn=True), str(path))
    return [path]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="write the zoo models the GPU check benchmarks")
    p.add_argument("--work", required=True, type=Path)
    args = p.parse_args(argv)
    for path in write_zoo_models(args.work):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
