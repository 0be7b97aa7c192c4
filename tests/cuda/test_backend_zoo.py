"""Whole networks on the CUDA backend (emulator, hazard checker on) against the CPU engine:
the zoo models and the demo detector, batch 1 and 2, FP32; FP16 and INT8 on the small net and
YOLOv8n. Inputs are small: the emulator runs every CUDA thread as a fiber of one OS thread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_infer.engine import calibrate
from edge_infer.zoo import build_model
from tests.cuda.backend_support import assert_close, build_pair, random_feeds, small_net

REPO = Path(__file__).resolve().parents[2]
#: FP16: each FP16 layer may round one FP16 ulp away from the CPU's (docs/cuda-kernels.md),
#: and a flipped ulp travels through the later layers
FP16_TOL = 2e-3


def _profile(name: str, shape: tuple[int, ...]) -> dict:
    return {
        "min_shapes": {name: (1, *shape)},
        "opt_shapes": {name: (2, *shape)},
        "max_shapes": {name: (2, *shape)},
    }


#: model -> (builder arguments, input, input shape, batches run): every model at batch 1 and
#: 2 (each batch has its own plan), at small inputs to keep the emulator's time in budget
ZOO = {
    "yolov8n": ({"imgsz": 64}, "images", (3, 64, 64), (1, 2)),
    "googlenet": ({"image_size": 64, "num_classes": 10}, "input", (3, 64, 64), (1, 2)),
    "resnet50": ({"image_size": 32, "num_classes": 10}, "input", (3, 32, 32), (1, 2)),
    "mobilenetv2": (
        {"image_size": 32, "num_classes": 10, "width_mult": 0.5},
        "input",
        (3, 32, 32),
        (1, 2),
    ),
}


def _check_batches(cpu, cuda, tol: float = 1e-4, batches: tuple[int, ...] = (1, 2)) -> None:
    for batch in batches:
        feeds = random_feeds(cpu, batch, seed=batch)
        with cuda.create_context() as ctx:
            assert_close(ctx.execute(feeds), cpu.create_context().execute(feeds), tol)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_fp32_matches_the_cpu_engine(name) -> None:
    kwargs, input_name, shape, batches = ZOO[name]
    model = build_model(name, seed=0, batch=None, **kwargs)
    cpu, cuda = build_pair(model, **_profile(input_name, shape))
    _check_batches(cpu, cuda, batches=batches)
    launched = [n for n in cuda.graph(2).nodes if n.meta.get("cuda_kernels", ["host"]) != ["host"]]
    assert len(launched) >= 0.8 * len([n for n in cuda.graph(2).nodes if "cuda_kernels" in n.meta])


@pytest.mark.parametrize("hw", [(256, 416), (320, 320)], ids=["416x256", "320x320"])
def test_demo_detector_fp32_matches_the_cpu_engine(hw: tuple[int, int]) -> None:
    """Dynamic H/W: the cameras' 416x256 and the square val images' 320x320."""
    cpu, cuda = build_pair(
        str(REPO / "models" / "edge_demo_det.onnx"), **_profile("images", (3, *hw))
    )
    _check_batches(cpu, cuda)


def test_small_net_fp16_matches_the_cpu_fp16_engine() -> None:
    cpu, cuda = build_pair(small_net(), precision="fp16", **_profile("x", (3, 12, 12)))
    kernels = {k for n in cuda.graph(1).nodes for k in n.meta.get("cuda_kernels", [])}
    assert any(k.startswith("ei_conv_f16_wmma") for k in kernels)
    _check_batches(cpu, cuda, FP16_TOL)


def test_yolov8n_fp16_matches_the_cpu_fp16_engine() -> None:
    model = build_model("yolov8n", seed=0, batch=1, imgsz=32)
    cpu, cuda = build_pair(model, precision="fp16")
    assert cuda.graph(1).meta["cuda"]["host_layers"] == []
    feeds = random_feeds(cpu, 1)
    with cuda.create_context() as ctx:
        assert_close(ctx.execute(feeds), cpu.create_context().execute(feeds), FP16_TOL)


def _int8_pair(model, shape, **kw):
    rng = np.random.default_rng(0)
    cal = calibrate(model, [rng.random(shape, dtype=np.float32) for _ in range(3)])
    return build_pair(model, precision="int8", calibration=cal.cache, **kw)


def test_small_net_int8_matches_the_cpu_int8_engine() -> None:
    cpu, cuda = _int8_pair(small_net(), (1, 3, 12, 12), **_profile("x", (3, 12, 12)))
    kernels = {k for n in cuda.graph(1).nodes for k in n.meta.get("cuda_kernels", [])}
    assert (
        any(k.startswith("ei_conv_s8_") for k in kernels) and "ei_gemm_s8_wmma_32x32_f32" in kernels
    )
    _check_batches(cpu, cuda)


def test_yolov8n_int8_matches_the_cpu_int8_engine() -> None:
    model = build_model("yolov8n", seed=0, batch=1, imgsz=32)
    cpu, cuda = _int8_pair(model, (1, 3, 32, 32))
    # every layer on the device: the SPPF max pools and the neck's nearest resizes on int8
    # storage go through FP32 scratch (exact), the first layer quantizes with the reformat
    assert cuda.graph(1).meta["cuda"]["host_layers"] == []
    feeds = random_feeds(cpu, 1)
    with cuda.create_context() as ctx:
        assert_close(ctx.execute(feeds), cpu.create_context().execute(feeds))
