"""FP16 engines on the CPU against FP32 ones, in one process, alternating (issue 18 item 3).

    .venv/bin/python bench/fp16_cpu.py [--models yolov8n-320 mobilenetv2-b8 ...]
        [--rounds 40] [--threads 1 --cpu-time]

Builds each model in FP32 and FP16 (both tuned), then times three programs round by round
(each round runs each once, in turn, after a warm-up): FP32; FP16 as built; and FP16 with
each convolution's tactic set to the FP16 form of the FP32 engine's choice ("aligned": on a
loaded machine the two builds' timings pick different tactics, and this isolates what the
float16 storage itself costs). Prints the median of the per-round ratios FP16 / FP32 and the
largest difference of the FP16 engine's outputs from the FP16 reference (the graph run by
the reference evaluator). ``--threads 1 --cpu-time`` times the calling thread's CPU time on
one thread: less at the mercy of other processes on a loaded machine than wall time.

The models: the engine table's (bench/engine_table.py: ResNet-50, MobileNetV2, YOLOv8n at
320 and 640, the demo detector, CRNN at width 128), batch 1 by default, batch 8 as NAME-b8.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).parent))

from alternating import alternate, median_ms, ratios_to, run_models

from edge_infer.engine.backends.cpu.program import CpuProgram
from edge_infer.engine.builder import BuildOptions, build
from edge_infer.engine.reference import execute_graph

MODELS: dict[str, tuple[str, dict[str, Any], str, tuple[int, ...]]] = {
    "yolov8n-320": ("zoo:yolov8n", {"imgsz": 320, "fold_bn": True}, "images", (1, 3, 320, 320)),
    "yolov8n-640": ("zoo:yolov8n", {"imgsz": 640, "fold_bn": True}, "images", (1, 3, 640, 640)),
    "mobilenetv2": ("zoo:mobilenetv2", {}, "input", (1, 3, 224, 224)),
    "demo": ("models/edge_demo_det.onnx", {}, "images", (1, 3, 256, 416)),
    "resnet50": ("zoo:resnet50", {}, "input", (1, 3, 224, 224)),
    "crnn-w128": ("zoo:crnn", {"width": None}, "image", (1, 3, 32, 128)),
}
#: the same models at batch 8 (the engine table's b8 rows): NAME-b8
MODELS.update({f"{k}-b8": (*v[:3], (8, *v[3][1:])) for k, v in list(MODELS.items())})


def _model(name: str) -> tuple[onnx.ModelProto, str, tuple[int, ...]]:
    source, kwargs, inp, shape = MODELS[name]
    if source.startswith("zoo:"):
        from edge_infer.zoo import build_model

        return build_model(source[4:], batch=None, **kwargs), inp, shape
    return onnx.load(source), inp, shape  # the 416x256 export (W x H)


def _aligned(fp16_graph: Any, fp32_graph: Any) -> CpuProgram:
    chosen = {n.name: n.meta.get("tactic") for n in fp32_graph.nodes}
    for node in fp16_graph.nodes:
        want = chosen.get(node.name)
        if node.op_type == "Fp16Layer" and want:
            node.meta["tactic"] = f"fp16_{want}"
    return CpuProgram(fp16_graph)


def run_model(name: str, rounds: int, cpu_time: bool = False) -> dict[str, Any]:
    model, inp, shape = _model(name)
    feeds = {inp: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    engines = {
        p: build(model, options=BuildOptions(shapes={inp: shape}, precision=p))
        for p in ("fp32", "fp16")
    }
    graphs = {p: e.graph(shape[0]) for p, e in engines.items()}
    programs = {
        "fp32": CpuProgram(graphs["fp32"]),
        "fp16": CpuProgram(graphs["fp16"]),
        "fp16 aligned": _aligned(engines["fp16"].graph(shape[0]), graphs["fp32"]),
    }
    states = {k: p.new_state() for k, p in programs.items()}
    outs = {k: p.run(states[k], feeds) for k, p in programs.items()}
    ref = execute_graph(graphs["fp16"], feeds)
    worst = {
        k: max(
            float(
                np.abs(np.asarray(o[n], np.float64) - ref[n]).max() / max(1.0, np.abs(ref[n]).max())
            )
            for n in ref
        )
        for k, o in outs.items()
    }
    clock = time.thread_time if cpu_time else time.perf_counter
    times = alternate(programs, states, feeds, rounds, clock)
    return {
        "ms": median_ms(times),
        "ratio": ratios_to(times),
        "max_rel_diff_vs_fp16_reference": {k: float(f"{v:.3g}") for k, v in worst.items()},
    }


def main(argv: list[str] | None = None) -> int:
    b1 = [k for k in MODELS if not k.endswith("-b8")]
    return run_models(argv, __doc__, run_model, list(MODELS), b1, 40, True)


if __name__ == "__main__":
    raise SystemExit(main())
