"""The model zoo: whole networks built in code as ONNX, with random, well-scaled weights.

Each builder takes ``seed``, ``batch`` (an int, or ``None`` for a symbolic "batch" dim), an
input size where relevant and ``opset`` (default 17), and returns an ``onnx.ModelProto``
that passes ``onnx.checker`` (full check) and has inferred shapes. The models are the
engine's whole-network test and benchmark subjects (see issues 6 and 4).
"""

from __future__ import annotations

from collections.abc import Callable

import onnx

from edge_infer.zoo.crnn import build_crnn
from edge_infer.zoo.googlenet import build_googlenet, build_inception_module
from edge_infer.zoo.mobilenet import build_mobilenetv2
from edge_infer.zoo.resnet import build_resnet50
from edge_infer.zoo.yolov8 import build_yolov8n

#: Model name -> builder. Explicit, so a reader sees every model the zoo offers.
MODELS: dict[str, Callable[..., onnx.ModelProto]] = {
    "googlenet": build_googlenet,
    "resnet50": build_resnet50,
    "mobilenetv2": build_mobilenetv2,
    "yolov8n": build_yolov8n,
    "crnn": build_crnn,
}

__all__ = [
    "MODELS",
    "build_crnn",
    "build_googlenet",
    "build_inception_module",
    "build_mobilenetv2",
    "build_model",
    "build_resnet50",
    "build_yolov8n",
]


def build_model(name: str, **kw: object) -> onnx.ModelProto:
    """Build zoo model ``name`` (a key of :data:`MODELS`) with the builder's keyword args."""
    try:
        builder = MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ValueError(f"unknown zoo model {name!r}; known models: {known}") from None
    return builder(**kw)
