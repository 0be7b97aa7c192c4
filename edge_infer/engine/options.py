"""Build options: everything that shapes an engine, validated when constructed.

A leaf module (it imports nothing else of the engine), so the builder, the backends, the
precision stage, the commands and the daemon can all name :class:`BuildOptions` without
importing each other. Checks that need the model (input names, ranks against the graph)
happen when the builder makes the profile; everything that can be checked from the options
alone is checked here, so a wrong option fails before any work, with a message that says
which option and how to fix it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edge_infer.errors import BuildError

if TYPE_CHECKING:
    from edge_infer.engine.precision.cache import CalibrationCache

#: per-layer and whole-engine precisions an engine can have
PRECISIONS = ("fp32", "fp16", "int8")
#: what the layers an INT8 build does not quantize run in
INT8_FALLBACKS = ("fp32", "fp16")

Shape = tuple[int, ...]
ShapeMap = Mapping[str, Sequence[int]]


def _shape_map(name: str, value: Any) -> dict[str, Shape] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise BuildError(
            f"{name} must map input names to shapes, e.g. "
            f"{{'images': (1, 3, 640, 640)}}; got {type(value).__name__}"
        )
    out: dict[str, Shape] = {}
    for key, dims in value.items():
        try:
            shape = tuple(int(d) for d in dims)
        except (TypeError, ValueError):
            raise BuildError(
                f"{name}['{key}'] must be a sequence of integers, got {dims!r}"
            ) from None
        if any(d < 1 for d in shape):
            raise BuildError(f"{name}['{key}'] = {list(shape)}: every dimension must be ≥ 1")
        out[str(key)] = shape
    return out


def _check_ranges(lo: dict[str, Shape], opt: dict[str, Shape], hi: dict[str, Shape]) -> None:
    if not (set(lo) == set(opt) == set(hi)):
        raise BuildError(
            f"min/opt/max shapes must name the same inputs, got {sorted(lo)}, "
            f"{sorted(opt)} and {sorted(hi)}"
        )
    for name in lo:
        a, b, c = lo[name], opt[name], hi[name]
        if not (len(a) == len(b) == len(c)) or a[1:] != c[1:] or b[1:] != c[1:]:
            raise BuildError(
                f"input '{name}': only the batch dimension (axis 0) may differ "
                f"between min {list(a)}, opt {list(b)} and max {list(c)}"
            )
        if a and not a[0] <= b[0] <= c[0]:
            raise BuildError(
                f"input '{name}': need min ≤ opt ≤ max batch, got {a[0]}, {b[0]}, {c[0]}"
            )


def parse_layer_precision(text: str | None) -> dict[str, str]:
    """``"NAME:fp32,OTHER:fp16"`` → ``{"NAME": "fp32", "OTHER": "fp16"}``."""
    result: dict[str, str] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, prec = item.rpartition(":")
        prec = prec.strip().lower()
        if not sep or not name or prec not in PRECISIONS:
            raise BuildError(
                f"--layer-precision entry {item!r} must be NAME:PREC with PREC one "
                f"of {', '.join(PRECISIONS)}"
            )
        result[name.strip()] = prec
    return result


@dataclass(frozen=True)
class BuildOptions:
    """Everything that shapes an engine; recorded in its build record.

    Validated when constructed (and by :func:`dataclasses.replace`, which constructs anew);
    a wrong value raises :class:`~edge_infer.errors.BuildError` naming the option.
    """

    backend: str = "cpu"
    #: fixed shapes of the inputs (``{"images": (1, 3, 640, 640)}``); or a batch range:
    shapes: ShapeMap | None = None
    min_shapes: ShapeMap | None = None
    opt_shapes: ShapeMap | None = None
    max_shapes: ShapeMap | None = None
    optimize: bool = True
    precision: str = "fp32"
    #: layers an INT8 build does not quantize run in this precision ("fp16" with --int8 --fp16)
    int8_fallback: str = "fp32"
    #: per-layer overrides {layer name: "fp32" | "fp16" | "int8"} (--layer-precision); the
    #: command-line text "NAME:PREC,..." is accepted too
    layer_precision: Mapping[str, str] = field(default_factory=dict)
    #: calibration cache file with the INT8 scales (from `edge-infer calibrate`)
    calib_cache: str | None = None
    #: the same scales in memory (a CalibrationCache), instead of ``calib_cache``
    calibration: CalibrationCache | None = None
    timing_cache: str | None = None
    #: time every candidate tactic per layer (off: first applicable tactic, faster builds)
    tune: bool = True
    #: run every timed candidate tactic once against the reference op first and never choose
    #: one that disagrees (``--no-verify-tactics`` turns it off; tactics/verify.py)
    verify_tactics: bool = True
    progress: bool = False
    #: settings of the backend, checked by it (the CPU's: ``{"threads": N}``, the threads
    #: per execution context its tactics are timed with — ``edge-infer build --threads``)
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    #: deprecated spelling of ``calibration``: ``{"calibration": cache}``
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalize once, here
        if not isinstance(self.backend, str) or not self.backend:
            raise BuildError(f"backend must be a backend name such as 'cpu', got {self.backend!r}")
        precision = str(self.precision or "fp32").lower()
        if precision not in PRECISIONS:
            raise BuildError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        set_(self, "precision", precision)
        fallback = str(self.int8_fallback or "fp32").lower()
        if fallback not in INT8_FALLBACKS:
            raise BuildError(f"int8_fallback must be fp32 or fp16, got {self.int8_fallback!r}")
        set_(self, "int8_fallback", fallback)
        overrides = self.layer_precision
        if isinstance(overrides, str):
            overrides = parse_layer_precision(overrides)
        overrides = {str(k): str(v).lower() for k, v in dict(overrides or {}).items()}
        bad = {k: v for k, v in overrides.items() if v not in PRECISIONS}
        if bad:
            raise BuildError(
                f"layer_precision {bad}: each layer's precision must be one of "
                f"{', '.join(PRECISIONS)}"
            )
        set_(self, "layer_precision", overrides)
        for name in ("shapes", "min_shapes", "opt_shapes", "max_shapes"):
            set_(self, name, _shape_map(name, getattr(self, name)))
        ranged = [m for m in (self.min_shapes, self.opt_shapes, self.max_shapes) if m]
        if ranged and len(ranged) != 3:
            raise BuildError("give --min-shapes, --opt-shapes and --max-shapes together")
        if ranged and self.shapes:
            raise BuildError("give either --shapes or --min/--opt/--max-shapes, not both")
        if ranged:
            _check_ranges(*ranged)  # type: ignore[arg-type]
        extra = dict(self.extra or {})
        unknown = sorted(set(extra) - {"calibration"})
        if unknown:
            raise BuildError(
                f"unknown extra build options {unknown}; backend settings go in "
                "backend_options, calibration scales in calibration"
            )
        if self.calibration is None and extra.get("calibration") is not None:
            set_(self, "calibration", extra["calibration"])
        set_(self, "extra", {})
        if self.calibration is not None and not hasattr(self.calibration, "scales"):
            raise BuildError(
                "calibration must be a CalibrationCache (from `calibrate`), got "
                f"{type(self.calibration).__name__}"
            )
        if not isinstance(self.backend_options, Mapping):
            raise BuildError("backend_options must be a mapping, e.g. {'threads': 2}")
        set_(self, "backend_options", dict(self.backend_options))
        for name in ("optimize", "tune", "verify_tactics", "progress"):
            set_(self, name, bool(getattr(self, name)))

    @property
    def needs_calibration(self) -> bool:
        """True when some layer may run in INT8 (the build needs scales)."""
        return self.precision == "int8" or "int8" in self.layer_precision.values()

    def replace(self, **changes: Any) -> BuildOptions:
        """A copy with ``changes`` (validated like a new one)."""
        return dataclasses.replace(self, **changes)

    def record(self) -> dict[str, Any]:
        """The options as the build record stores them (JSON)."""

        def shapes(m: ShapeMap | None) -> dict[str, list[int]] | None:
            return None if m is None else {k: [int(d) for d in v] for k, v in m.items()}

        return {
            "backend": self.backend,
            "shapes": shapes(self.shapes),
            "min_shapes": shapes(self.min_shapes),
            "opt_shapes": shapes(self.opt_shapes),
            "max_shapes": shapes(self.max_shapes),
            "optimize": self.optimize,
            "tune": self.tune,
            "verify_tactics": self.verify_tactics,
            "backend_options": dict(self.backend_options),
            "precision": self.precision,
            "int8_fallback": self.int8_fallback,
            "layer_precision": dict(self.layer_precision),
        }


__all__ = ["INT8_FALLBACKS", "PRECISIONS", "BuildOptions", "ShapeMap", "parse_layer_precision"]
