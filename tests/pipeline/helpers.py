"""Shared helpers of the pipeline tests: a tiny detector built in code, configs, clocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: input side of the tiny detector (64 keeps preprocessing and inference cheap)
TINY_SIZE = 64
#: its fixed boxes, in input pixels: (cx, cy, w, h, class); one anchor per class 0..3
TINY_BOXES = [(16, 24, 12, 8, 0), (48, 24, 12, 8, 1), (16, 44, 12, 8, 2), (48, 44, 12, 8, 3)]
TINY_SCORE = 0.9
NUM_CLASSES = 6


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


def tiny_detector() -> onnx.ModelProto:
    """A YOLOv8-layout detector ``[N, 3, 64, 64] -> [N, 4 + 6, 4]`` with known boxes.

    Every anchor predicts a fixed box and class (``TINY_BOXES``) with score ~0.9; a small
    image-dependent term (1e-3 x the mean pixel) keeps the output a function of the input so
    nothing folds it into a constant, and batches stay batches.
    """
    k = len(TINY_BOXES)
    const = np.zeros((1, 4 + NUM_CLASSES, k), np.float32)
    for a, (cx, cy, w, h, cls) in enumerate(TINY_BOXES):
        const[0, :4, a] = (cx, cy, w, h)
        const[0, 4 + cls, a] = TINY_SCORE
    weight = np.full((4 + NUM_CLASSES, 3, 1, 1), 1e-3, np.float32)
    inits = [
        numpy_helper.from_array(weight, "w"),
        numpy_helper.from_array(np.zeros(4 + NUM_CLASSES, np.float32), "b"),
        numpy_helper.from_array(np.array([0, 4 + NUM_CLASSES, k], np.int64), "shape"),
        numpy_helper.from_array(const, "const"),
    ]
    nodes = [
        helper.make_node(
            "AveragePool", ["images"], ["pooled"], kernel_shape=[32, 32], strides=[32, 32]
        ),
        helper.make_node("Conv", ["pooled", "w", "b"], ["conv"]),
        helper.make_node("Reshape", ["conv", "shape"], ["flat"]),
        helper.make_node("Add", ["flat", "const"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_det",
        [
            helper.make_tensor_value_info(
                "images", TensorProto.FLOAT, ["N", 3, TINY_SIZE, TINY_SIZE]
            )
        ],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 4 + NUM_CLASSES, k])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build_tiny_engine(folder: Path, max_batch: int = 8) -> Path:
    """Build the tiny detector into ``folder/tiny.engine``; returns its path."""
    from edge_infer.engine.builder import BuildOptions, build

    onnx_path = folder / "tiny.onnx"
    onnx.save(tiny_detector(), str(onnx_path))
    shape = (3, TINY_SIZE, TINY_SIZE)
    opts = BuildOptions(
        min_shapes={"images": (1, *shape)},
        opt_shapes={"images": (4, *shape)},
        max_shapes={"images": (max_batch, *shape)},
        tune=False,
    )
    out = folder / "tiny.engine"
    build(str(onnx_path), out, options=opts)
    return out


def expected_frame_boxes(width: int, height: int) -> dict[int, np.ndarray]:
    """Where the tiny detector's boxes land in a ``width`` x ``height`` frame, per class."""
    from edge_infer.pipeline.preprocess import letterbox_geometry

    lb = letterbox_geometry(width, height, TINY_SIZE, TINY_SIZE)
    out = {}
    for cx, cy, w, h, cls in TINY_BOXES:
        box = np.array([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]])
        b = lb.to_frame(box)[0]
        out[cls] = np.clip(b, 0, [width, height, width, height])
    return out


# Linux's SO_TIMESTAMPNS (asm-generic and x86; 64-bit struct timespec): Python's socket module
# does not name it.
SO_TIMESTAMPNS = 35


class NotifyListener:
    """A fake systemd: a datagram socket collecting sd_notify messages in a thread.

    Each message is stamped with the kernel's arrival time (``SO_TIMESTAMPNS``, wall clock),
    not with when this thread got to read it: under load the test process can be descheduled
    for most of a second, and two pings queued meanwhile would otherwise look one late and
    one early. Only differences between these stamps mean anything.
    """

    def __init__(self, path: Path) -> None:
        import socket
        import threading

        self.path = path
        self.messages: list[tuple[float, str]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._sock.bind(str(path))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        import socket
        import struct
        import time

        while not self._stop.is_set():
            try:
                data, ancillary, _, _ = self._sock.recvmsg(65536, socket.CMSG_SPACE(16))
            except TimeoutError:
                continue
            stamp = time.time()
            for level, kind, value in ancillary:
                if (level, kind) == (socket.SOL_SOCKET, SO_TIMESTAMPNS):  # SCM_ == SO_
                    sec, nsec = struct.unpack("qq", value[:16])
                    stamp = sec + nsec * 1e-9
            self.messages.append((stamp, data.decode()))

    def count(self, field: str) -> int:
        return sum(field in m.split("\n") for _, m in self.messages)

    def wait_for(self, field: str, timeout: float) -> bool:
        import time

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.count(field):
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self._sock.close()


def write_config(
    path: Path, engine_path: Path, cameras: list[dict], endpoint: str, **sections: dict
) -> Path:
    """A daemon config for tests: the tiny engine, fast status, short timeouts."""
    import yaml

    cfg = {
        "device_id": "testdev",
        "engine": {"path": str(engine_path)},
        "cameras": cameras,
        "batching": {"latency_budget_ms": 300},
        "inference": {"workers": 2},
        "postprocess": {"class_names": ["person", "car", "bicycle", "box", "sign", "ball"]},
        "publisher": {"endpoints": [endpoint], "status_interval_s": 0.5},
        "health": {"stall_after_s": 3.0, "shutdown_timeout_s": 5.0},
        "logging": {"level": "INFO"},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def start_daemon(
    config: Path, log: Path, notify: Path | None = None, watchdog_usec: int | None = None
):
    """``python -m edge_infer run --config CONFIG`` as a child process."""
    import os
    import subprocess
    import sys

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
    }
    if notify is not None:
        env["NOTIFY_SOCKET"] = str(notify)
    if watchdog_usec is not None:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    with open(log, "w") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "edge_infer", "run", "--config", str(config)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
        )
