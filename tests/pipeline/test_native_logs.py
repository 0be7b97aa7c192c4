"""With JSON logging, OpenCV's and FFmpeg's own stderr lines come out as JSON log records."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading

import pytest

from edge_infer.pipeline.native_logs import classify

SCRIPT = r"""
import os, sys, logging
from edge_infer.pipeline.config import parse_config
from edge_infer.pipeline.logs import setup_logging
cfg = parse_config({"device_id": "d", "engine": {"path": "e.engine"},
                    "cameras": [{"type": "file", "id": "c", "path": "c.mp4"}],
                    "logging": {"json": True, "level": sys.argv[1]}})
setup_logging(cfg, journald=False)
import cv2
# what the C libraries do: write to file descriptor 2 directly
os.write(2, b"[ WARN:0@0.1] global cap.cpp:1 open VIDEOIO(FFMPEG): cannot open x\n")
os.write(2, b"[rtsp @ 0x55d0] method DESCRIBE failed: 404 Not Found\n")
cv2.VideoCapture("/nonexistent/file.mp4", cv2.CAP_FFMPEG)  # OpenCV's own warning, if any
logging.getLogger("edge_infer.test").warning("ours")
print("python stderr", file=sys.stderr)
sys.stderr.flush()
import time; time.sleep(0.3)
"""


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_native_stderr_lines_become_json_records(level: str) -> None:
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT, level], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    python_line = "python stderr"
    records = [json.loads(line) for line in lines if line != python_line]  # all JSON
    assert python_line in lines  # Python's own stderr is not swallowed
    by_logger: dict[tuple[str, str], list[str]] = {}
    for r in records:
        by_logger.setdefault((r["logger"], r["level"]), []).append(r["msg"])
    assert by_logger[("edge_infer.test", "WARNING")] == ["ours"]
    opencv = by_logger[("native.opencv", "WARNING")]
    assert any("cannot open x" in m for m in opencv)
    assert any("can't be used to capture by name" in m for m in opencv)  # OpenCV's own
    ffmpeg = ("native.ffmpeg", "DEBUG")
    assert (ffmpeg in by_logger) == (level == "DEBUG")  # reachable at debug level
    if level == "DEBUG":
        assert any("404 Not Found" in m for m in by_logger[ffmpeg])


def test_classify() -> None:
    assert classify("[ERROR:0@2.1] global x.cpp:9 f boom")[:2] == ("native.opencv", logging.ERROR)
    assert (
        classify(
            "[ WARN:2@41.2] global cap_ffmpeg_impl.hpp:1043 isThreadSafe "
            "OPENCV_FFMPEG_IS_THREAD_SAFE == 1"
        )[1]
        == logging.DEBUG
    )
    assert classify("[h264 @ 0x1] error while decoding MB 3 4") == (
        "native.ffmpeg",
        logging.DEBUG,
        "[h264 @ 0x1] error while decoding MB 3 4",
    )


def test_a_line_half_written_by_one_thread_is_not_split_by_another() -> None:
    """print() writes its text and its newline in two calls; a log record written by the
    pump thread between them must not land inside the line (the JSON test's flake:
    'python stderr{"ts": ...}')."""
    from edge_infer.pipeline.native_logs import _WholeLines

    read, write = os.pipe()
    stream = _WholeLines(write)
    stream.write("python stderr")  # print()'s first call
    other = threading.Thread(target=stream.write, args=('{"msg": "record"}\n',))
    other.start()
    other.join()
    stream.write("\n")  # print()'s second call
    stream.write("tail without newline")
    stream.flush()
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        lines = pipe.read().decode().split("\n")
    assert lines == ['{"msg": "record"}', "python stderr", "tail without newline"]
