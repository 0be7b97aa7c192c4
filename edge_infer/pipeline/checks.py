"""`edge-infer run --check`: everything about a config that can be verified without starting
the daemon, reported together (one line each) so a field engineer fixes them in one pass.

Config parsing already checked types, bounds, endpoint syntax and port ranges, the
Prometheus address and the INT8 calibration settings. This adds what needs the file system:
camera files, the engine and its model, V4L2 device nodes, CURVE key files (parsed, and
secret keys private), ipc:// paths that binding would delete, that ``backend: cuda``
can open its device, and that ``decode: hardware`` cameras can run their GStreamer
pipelines here (OpenCV with GStreamer, the decoder elements installed).
"""

from __future__ import annotations

import os
from pathlib import Path

from edge_infer.engine import backend_problem
from edge_infer.pipeline.camera_config import FileCamera, UsbCamera
from edge_infer.pipeline.config import DaemonConfig
from edge_infer.pipeline.curve import keys_dir_problems
from edge_infer.pipeline.endpoints import endpoint_problem


def _hardware_decode_problem(cam: object) -> str | None:
    """Why a ``decode: hardware`` camera cannot run here; imports OpenCV only for one."""
    if getattr(cam, "decode", "software") != "hardware":
        return None
    from edge_infer.pipeline.capture import hardware_problem

    return hardware_problem(cam)


def _readable_file(path: Path, what: str) -> str | None:
    if not path.exists():
        return f"{what}: {path} does not exist"
    if not path.is_file():
        return f"{what}: {path} is not a file"
    if not os.access(path, os.R_OK):
        return f"{what}: {path} is not readable by this user"
    return None


def config_problems(cfg: DaemonConfig) -> list[str]:
    """``field.path: problem`` for everything wrong that the file system shows."""
    problems: list[str] = []
    for i, cam in enumerate(cfg.cameras):
        where = f"cameras[{i}] ({cam.id})"
        if not cam.enabled:
            continue
        problem = _hardware_decode_problem(cam)
        if problem is not None:
            problems.append(f"{where}.decode: {problem}")
        if isinstance(cam, FileCamera):
            problem = _readable_file(cam.path, f"{where}.path")
            if problem is not None:
                problems.append(problem)
        elif isinstance(cam, UsbCamera):
            node = Path(f"/dev/video{cam.device}" if isinstance(cam.device, int) else cam.device)
            if not node.exists():
                problems.append(
                    f"{where}.device: {node} does not exist (is the camera "
                    "plugged in? `ls /dev/video*`)"
                )
    engine = cfg.engine
    if engine.path.exists():
        problem = _readable_file(engine.path, "engine.path")
        if problem is not None:
            problems.append(problem)
    elif engine.onnx is None:
        problems.append(
            f"engine.path: {engine.path} does not exist and engine.onnx is not set to build it from"
        )
    elif not os.access(engine.path.parent if engine.path.parent.exists() else Path("."), os.W_OK):
        problems.append(
            f"engine.path: {engine.path.parent} is not writable: the engine built "
            "from engine.onnx could not be saved"
        )
    if engine.onnx is not None:
        problem = _readable_file(engine.onnx, "engine.onnx")
        if problem is not None:
            problems.append(problem)
    cal = engine.build.calibration
    if engine.build.precision == "int8" and cal.cache is not None and cal.data is None:
        problem = _readable_file(cal.cache, "engine.build.calibration.cache")
        if problem is not None:
            problems.append(problem)
    if cfg.inference.backend == "cuda":  # auto falls back to the CPU: nothing to fix
        problem = backend_problem("cuda", str(cfg.inference.device))
        if problem is not None:
            problems.append(f"inference.backend: cuda cannot run here: {problem}")
    pub = cfg.publisher
    for ep in pub.endpoints:  # again: an ipc path may have appeared since parsing
        problem = endpoint_problem(ep)
        if problem is not None:
            problems.append(f"publisher.endpoints: {problem}")
    if pub.curve.enabled and pub.curve.keys_dir is not None:
        problems += [
            f"publisher.curve.keys_dir: {p}" for p in keys_dir_problems(pub.curve.keys_dir)
        ]
    return problems
