"""The daemon's logging: plain lines on stderr (no timestamps under journald) or one JSON
object per line (``logging.json: true``)."""

from __future__ import annotations

import json
import logging

from edge_infer.pipeline.config import DaemonConfig
from edge_infer.pipeline.native_logs import NativeStderr

__all__ = ["JsonFormatter", "setup_logging"]


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``logging.json: true``)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(cfg: DaemonConfig, journald: bool) -> None:
    """stderr logs; no timestamps under journald (it adds its own). With JSON logs, what
    OpenCV and FFmpeg write to stderr is routed through logging too (native_logs)."""
    handler = logging.StreamHandler()
    if cfg.logging.json_format:
        handler = logging.StreamHandler(NativeStderr().start())
        handler.setFormatter(JsonFormatter())
    else:
        fmt = "%(levelname)s %(name)s: %(message)s"
        handler.setFormatter(logging.Formatter(fmt if journald else "%(asctime)s " + fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(cfg.logging.level)
