"""The calibration cache: a small, portable text file of per-tensor INT8 scales.

Format (UTF-8, one record per line)::

    # edge_infer calibration cache
    version: 1
    calibrator: entropy
    edge_infer_version: 0.1.0
    model_sha256: 3f2a...
    frames: 500
    fp16_overflow: name_a,name_b            (tensors whose |x| exceeded 65504; may be empty)
    tensor: <scale> <amax> <name>           (one per calibrated tensor)

Scales and amaxes are written with ``float.hex`` so a cache read back reproduces the engine
bit for bit. The tensor name comes last so it may contain spaces. The cache is written
atomically (temporary file + rename). A cache whose model hash differs from the model being
built is refused, as is any file that does not parse.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from edge_infer._version import __version__
from edge_infer.atomic import write_text_atomic
from edge_infer.errors import CalibrationError

MAGIC = "# edge_infer calibration cache"
FORMAT_VERSION = 1


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
        ]
        for name in sorted(self.scales):
            lines.append(f"tensor: {float(self.scales[name]).hex()} "
                         f"{float(self.amax.get(name, 0.0)).hex()} {name}")
        return "\n".join(lines) + "\n"

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
            raise CalibrationError(f"calibration cache {p} does not exist; create it with "
                                   "`edge-infer calibrate MODEL.onnx --data PATH -o CACHE`"
                                   ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CalibrationError(f"calibration cache {p} cannot be read: {exc}") from exc
        return cls.from_text(text, str(p))

    @classmethod
    def from_text(cls, text: str, where: str = "<text>") -> CalibrationCache:
        lines = text.splitlines()
        if not lines or lines[0].strip() != MAGIC:
            raise CalibrationError(f"{where} is not an edge_infer calibration cache (the first "
                                   f"line must be {MAGIC!r}); recreate it with "
                                   "`edge-infer calibrate`")
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
            scales[parts[2]] = scale
            amax[parts[2]] = top
        missing = [k for k in ("version", "calibrator", "model_sha256") if k not in header]
        if missing:
            raise CalibrationError(f"calibration cache {where} is corrupt: header lacks "
                                   f"{', '.join(missing)}; recreate it with `edge-infer calibrate`")
        if header["version"] != str(FORMAT_VERSION):
            raise CalibrationError(f"calibration cache {where} has format version "
                                   f"{header['version']}; this edge_infer reads version "
                                   f"{FORMAT_VERSION}. Recreate it with `edge-infer calibrate`")
        try:
            frames = int(header.get("frames", "0"))
        except ValueError:
            raise CalibrationError(f"calibration cache {where} is corrupt: frames "
                                   f"{header['frames']!r} is not a number") from None
        overflow = [n for n in header.get("fp16_overflow", "").split(",") if n]
        return cls(header["calibrator"], header["model_sha256"], scales, amax, frames, overflow,
                   header.get("edge_infer_version", "?"), where)


def _corrupt(where: str, number: int, line: str, why: str = "") -> CalibrationError:
    detail = f" ({why})" if why else ""
    return CalibrationError(f"calibration cache {where} is corrupt at line {number}: "
                            f"{line[:80]!r}{detail}; recreate it with `edge-infer calibrate`")
