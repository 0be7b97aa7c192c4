"""What C libraries write to stderr, routed through Python logging.

OpenCV and FFmpeg log with their own formats straight to file descriptor 2, so with
``logging.json: true`` a journal or a log shipper would see raw lines between the JSON ones.
:class:`NativeStderr` puts a pipe on fd 2 and turns each line written there into a log
record (logger ``native.opencv`` or ``native.ffmpeg``), formatted like every other; Python's
own ``sys.stderr`` and the log handler keep the real stderr. Levels: OpenCV's ``[ERROR…]``
lines are errors and its ``[ WARN…]`` lines warnings (but the one it prints whenever the
daemon lifts its FFmpeg open lock is debug); everything else — FFmpeg's chatter, OpenCV's
info — is debug, reachable with ``logging.level: DEBUG``.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import threading
from typing import TextIO

_OPENCV = re.compile(r"^\[\s*(?P<level>WARN|ERROR|INFO|DEBUG|FATAL)[^\]]*\]\s*(?P<msg>.*)$")
#: OpenCV warns of this every time parallel opens are enabled (capture.parallel_open)
_EXPECTED = ("OPENCV_FFMPEG_IS_THREAD_SAFE",)
_LEVELS = {"FATAL": logging.CRITICAL, "ERROR": logging.ERROR, "WARN": logging.WARNING}


def classify(line: str) -> tuple[str, int, str]:
    """``(logger name, level, message)`` of one line a C library wrote."""
    m = _OPENCV.match(line)
    if m is not None:
        level = _LEVELS.get(m["level"], logging.DEBUG)
        if any(text in line for text in _EXPECTED):
            level = logging.DEBUG
        return "native.opencv", level, m["msg"]
    return "native.ffmpeg", logging.DEBUG, line


class _WholeLines(io.TextIOBase):
    """Text to a file descriptor a whole line per write: ``print()`` writes its text and its
    newline in two calls, and the log handler, on the pump thread, would otherwise put a
    record between them (``python stderr{"ts": …}``). Each thread's unfinished line waits
    for its newline (or a flush); whole lines go out in one locked write."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self._pending = threading.local()
        #: bytes writers (``sys.stderr.buffer``) go straight to the descriptor
        self.buffer = os.fdopen(fd, "wb", buffering=0, closefd=False)

    @property
    def encoding(self) -> str:
        return "utf-8"

    @property
    def errors(self) -> str:
        return "backslashreplace"

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def write(self, text: str) -> int:
        head, newline, tail = (getattr(self._pending, "text", "") + text).rpartition("\n")
        self._pending.text = tail
        if newline:
            self._out(head + newline)
        return len(text)

    def flush(self) -> None:
        text = getattr(self._pending, "text", "")
        if text:
            self._pending.text = ""
            self._out(text)

    def _out(self, text: str) -> None:
        data = memoryview(text.encode("utf-8", "backslashreplace"))
        with self._lock:
            while data:
                data = data[os.write(self._fd, data) :]


class NativeStderr:
    """Route fd 2 through logging until :meth:`stop`; see the module docstring."""

    def __init__(self) -> None:
        self._saved: int | None = None
        self._read: int | None = None
        self._thread: threading.Thread | None = None
        self.stderr: TextIO = sys.stderr

    def start(self) -> TextIO:
        """Install the pipe; returns a stream on the real stderr for log handlers."""
        sys.stderr.flush()
        self._saved = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self._read = read
        # Python's own writes (tracebacks, warnings) bypass the pipe: they are not C chatter
        self.stderr = _WholeLines(os.dup(self._saved))
        sys.stderr = self.stderr
        self._thread = threading.Thread(target=self._pump, name="native-stderr", daemon=True)
        self._thread.start()
        return self.stderr

    def _pump(self) -> None:
        assert self._read is not None
        with os.fdopen(self._read, "rb", buffering=0) as pipe:
            for raw in iter(pipe.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    name, level, msg = classify(line)
                    logging.getLogger(name).log(level, "%s", msg)

    def stop(self, timeout: float = 1.0) -> None:
        """Give fd 2 back (the reader ends when the pipe closes)."""
        if self._saved is None:
            return
        os.dup2(self._saved, 2)  # closes the pipe's last write end: the reader sees EOF
        os.close(self._saved)
        self._saved = None
        if self._thread is not None:
            self._thread.join(timeout)
