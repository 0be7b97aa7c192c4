"""The calibration cache: a small, portable text file of per-tensor INT8 scales.

Format (UTF-8, one record per line)::

    # edge_infer calibration cache
    version: 2
    calibrator: entropy
    edge_infer_version: 0.1.0
    model_sha256: 3f2a...
    frames: 500
    fp16_overflow: name_a,name_b            (tensors whose |x| exceeded 65504; may be empty)
    tensors: 57                             (the number of tensor lines)
    tensor: <scale> <amax> <name>           (one per calibrated tensor)
    sha256: <hex>                           (of every byte before this line)

Scales and amaxes are written with ``float.hex`` so a cache read back reproduces the engine
bit for bit. The tensor name comes last so it may contain spaces. The cache is written
atomically (temporary file + rename). A cache whose model hash differs from the model being
built is refused, as is any file that does not parse; so is a cut, truncated or edited one
(the count and the checksum), a tensor named twice, and a scale that is not a normal float32
or an amax beyond the float32 range. Version 1 (no count, no checksum; written before
edge_infer checked them) still loads, with a warning that says how to rewrite it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_infer._version import __version__
from edge_infer.atomic import write_text_atomic
from edge_infer.errors import CalibrationError

log = logging.getLogger(__name__)

MAGIC = "# edge_infer calibration cache"
#: 2: the count of tensor lines and a SHA-256 of the body; version 1 (neither) still loads
FORMAT_VERSION = 2
_READS = ("1", "2")
_CHECKSUM = "sha256: "
#: a scale must be a normal float32 whose int8 range (127 steps) stays finite in float32
MIN_SCALE = float(2.0**-126)
MAX_AMAX = float((2 - 2.0**-23) * 2.0**127)
_RECALIBRATE = "recreate it with `edge-infer calibrate MODEL.onnx --data FRAMES -o CACHE`"


@dataclass
class CalibrationCache:
    """Per-tensor scales (and the amax they came from) for one model."""

    calibrator: str
    model_sha256: str
    scales: dict[str, float] = field(default_factory=dict)
    amax: dict[str, float] = field(default_factory=dict)
    frames: int = 0
    fp16_overflow: list[str] = field(default_factory=list)
    edge_infer_version: str = __version__
    #: where the cache was read from (for messages)
    source: str = ""

    def to_text(self) -> str:
        lines = [
            MAGIC,
            f"version: {FORMAT_VERSION}",
            f"calibrator: {self.calibrator}",
            f"edge_infer_version: {self.edge_infer_version}",
            f"model_sha256: {self.model_sha256}",
            f"frames: {self.frames}",
            f"fp16_overflow: {','.join(self.fp16_overflow)}",
            f"tensors: {len(self.scales)}",
        ]
        for name in sorted(self.scales):
            lines.append(
                f"tensor: {float(self.scales[name]).hex()} "
                f"{float(self.amax.get(name, 0.0)).hex()} {name}"
            )
        body = "\n".join(lines) + "\n"
        return f"{body}{_CHECKSUM}{hashlib.sha256(body.encode()).hexdigest()}\n"

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the cache atomically: readers see the old file or the new one, never half."""
        write_text_atomic(Path(path), self.to_text())

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_text().encode()).hexdigest()

    def check_model(self, model_sha256: str | None, where: str = "") -> None:
        """Refuse a cache made for another model."""
        if model_sha256 is not None and model_sha256 != self.model_sha256:
            where = where or self.source or "(in memory)"
            raise CalibrationError(
                f"calibration cache {where} was made for another model (sha256 "
                f"{self.model_sha256[:12]}…, this model is {model_sha256[:12]}…); "
                "run `edge-infer calibrate` for this model, or pass the cache made for it"
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CalibrationCache:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CalibrationError(
                f"calibration cache {p} does not exist; create it with "
                "`edge-infer calibrate MODEL.onnx --data PATH -o CACHE`"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CalibrationError(f"calibration cache {p} cannot be read: {exc}") from exc
        return cls.from_text(text, str(p))

    def check_covers(self, names: list[str], dtypes: Mapping[str, np.dtype] | None = None) -> None:
        """Refuse a cache that lacks a scale for any of ``names`` (the tensors an INT8 build
        quantizes: a cut cache would otherwise give a mostly-FP32 "INT8" engine), or whose
        amax for one of them is beyond the range of its dtype in ``dtypes``."""
        where = self.source or "(in memory)"
        for name, dtype in (dtypes or {}).items():
            top = max(self.amax.get(name, 0.0), self.scales.get(name, 0.0) * 127)
            if dtype.kind == "f" and top > float(np.finfo(dtype).max):
                raise CalibrationError(
                    f"calibration cache {where}: tensor {name!r} has amax {top:g}, beyond the "
                    f"range of its dtype {dtype.name}; {_RECALIBRATE}"
                )
        missing = [n for n in names if n not in self.scales]
        if missing:
            more = len(missing) - 10
            shown = ", ".join(missing[:10]) + (f" and {more} more" if more > 0 else "")
            raise CalibrationError(
                f"calibration cache {where} has no scale for "
                f"{len(missing)} of the model's {len(names)} INT8 tensors: {shown}; it is "
                f"incomplete or made for another build of the model: {_RECALIBRATE}"
            )

    @classmethod
    def from_text(cls, text: str, where: str = "<text>") -> CalibrationCache:
        lines = text.splitlines()
        if not lines or lines[0].strip() != MAGIC:
            raise CalibrationError(
                f"{where} is not an edge_infer calibration cache (the first "
                f"line must be {MAGIC!r}); recreate it with "
                "`edge-infer calibrate`"
            )
        lines = _checked_body(text, lines, where)
        header: dict[str, str] = {}
        scales: dict[str, float] = {}
        amax: dict[str, float] = {}
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            key, sep, rest = line.partition(": ")
            if not sep and line.endswith(":"):
                key, sep, rest = line[:-1], ":", ""
            if not sep:
                raise _corrupt(where, number, line)
            if key != "tensor":
                header[key] = rest.strip()
                continue
            parts = rest.split(" ", 2)
            if len(parts) != 3 or not parts[2]:
                raise _corrupt(where, number, line)
            try:
                scale, top = float.fromhex(parts[0]), float.fromhex(parts[1])
            except ValueError:
                raise _corrupt(where, number, line) from None
            if not (scale > 0.0 and scale < float("inf")) or not top >= 0.0:
                raise _corrupt(where, number, line, "scale must be positive and finite")
            if not (scale >= MIN_SCALE and scale * 127 <= MAX_AMAX and top <= MAX_AMAX):
                raise _corrupt(where, number, line, "scale or amax outside the float32 range")
            if parts[2] in scales:
                raise _corrupt(where, number, line, f"tensor {parts[2]!r} is listed twice")
            scales[parts[2]] = scale
            amax[parts[2]] = top
        missing = [k for k in ("version", "calibrator", "model_sha256") if k not in header]
        if missing:
            raise CalibrationError(
                f"calibration cache {where} is corrupt: header lacks "
                f"{', '.join(missing)}; recreate it with `edge-infer calibrate`"
            )
        if header["version"] not in _READS:
            raise CalibrationError(
                f"calibration cache {where} has format version "
                f"{header['version']}; this edge_infer reads versions "
                f"{', '.join(_READS)}. Recreate it with `edge-infer calibrate`"
            )
        if header["version"] == "1":
            log.warning(
                "calibration cache %s has format version 1, without a checksum: a cut "
                "or edited cache is only caught when a tensor lacks its scale; to "
                "rewrite it as version 2, %s",
                where,
                _RECALIBRATE,
            )
        elif header.get("tensors") != str(len(scales)):
            raise CalibrationError(
                f"calibration cache {where} is corrupt: it declares "
                f"{header.get('tensors')} tensors and lists {len(scales)}; "
                f"{_RECALIBRATE}"
            )
        try:
            frames = int(header.get("frames", "0"))
        except ValueError:
            raise CalibrationError(
                f"calibration cache {where} is corrupt: frames {header['frames']!r} is not a number"
            ) from None
        overflow = [n for n in header.get("fp16_overflow", "").split(",") if n]
        return cls(
            header["calibrator"],
            header["model_sha256"],
            scales,
            amax,
            frames,
            overflow,
            header.get("edge_infer_version", "?"),
            where,
        )


def _checked_body(text: str, lines: list[str], where: str) -> list[str]:
    """The lines before the checksum, checked against it (version 2); version 1 has none,
    another version is refused by its number."""
    if len(lines) < 2 or lines[1].strip() != f"version: {FORMAT_VERSION}":
        return lines
    last = lines[-1] if text.endswith("\n") else ""
    if not last.startswith(_CHECKSUM):
        raise CalibrationError(
            f"calibration cache {where} is truncated (its last line is not "
            f"the {_CHECKSUM.strip()} checksum); {_RECALIBRATE}"
        )
    body = text[: len(text) - len(last) - 1]
    if hashlib.sha256(body.encode()).hexdigest() != last[len(_CHECKSUM) :].strip():
        raise CalibrationError(
            f"calibration cache {where} is corrupt (checksum mismatch): it "
            f"was cut or edited after it was written; {_RECALIBRATE}"
        )
    return lines[:-1]


def _corrupt(where: str, number: int, line: str, why: str = "") -> CalibrationError:
    detail = f" ({why})" if why else ""
    return CalibrationError(
        f"calibration cache {where} is corrupt at line {number}: "
        f"{line[:80]!r}{detail}; recreate it with `edge-infer calibrate`"
    )
