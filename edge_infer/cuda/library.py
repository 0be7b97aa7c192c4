"""The kernel library's registry: every CUDA entry point, its source file and its params struct.

Each kernel concept (``kernels/<concept>.cu``) has a params module
(``edge_infer.cuda.params.<concept>``) whose ``SPECS`` lists its entry points;
:data:`CONCEPT_MODULES` names those modules explicitly, one line per concept (no discovery by
file name). A duplicate entry point, a missing source or a spec that is not a
:class:`KernelSpec` raises :class:`~edge_infer.errors.BackendError`.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_infer.errors import BackendError

#: the folder of the .cu sources and the headers they include
KERNELS_DIR = Path(__file__).resolve().parent / "kernels"

#: the SMs every kernel is compiled for: Xavier, Orin, Hopper
TARGET_SMS: tuple[int, ...] = (72, 87, 90)

#: the params modules, one per kernel concept (owners add their line here)
CONCEPT_MODULES: tuple[str, ...] = (
    "edge_infer.cuda.params.copy",
    "edge_infer.cuda.params.transpose",
    "edge_infer.cuda.params.reformat",
    "edge_infer.cuda.params.activation",
    "edge_infer.cuda.params.softmax",
    "edge_infer.cuda.params.pointwise",
    "edge_infer.cuda.params.conv",
    "edge_infer.cuda.params.gemm",
    "edge_infer.cuda.params.postprocess",
    "edge_infer.cuda.params.preprocess",
    "edge_infer.cuda.params.pool",
    "edge_infer.cuda.params.resize",
)


@dataclass(frozen=True)
class KernelSpec:
    """One ``extern "C" __global__`` entry point.

    ``source`` is the file name under :data:`KERNELS_DIR`; ``params`` the ctypes mirror of the
    one struct the kernel takes by value; ``min_sm`` the oldest SM it is compiled for (a
    kernel using ``wmma`` int8, for instance, needs 72).
    """

    entry: str
    source: str
    params: type[ctypes.Structure]
    min_sm: int = 72

    @property
    def path(self) -> Path:
        """The source file."""
        return KERNELS_DIR / self.source


Dim3 = tuple[int, int, int]


@dataclass(frozen=True)
class KernelCall:
    """One launch: what the params modules' planning functions return, and what the emulator
    (``EmuLibrary.run``) and the device backend execute."""

    entry: str
    grid: Dim3
    block: Dim3
    params: ctypes.Structure
    shared_bytes: int = 0
    #: the arrays the params point into, kept alive as long as the call (a pointer field holds
    #: only an address: a temporary array would otherwise be freed before the launch)
    keep: tuple[Any, ...] = field(default=(), compare=False, repr=False)


def grid_1d(count: int, block: int, max_blocks: int = 4096) -> Dim3:
    """A 1-D grid of ``block``-thread blocks covering ``count`` items, for grid-stride loops
    (capped: a grid-stride kernel covers any count with fewer blocks)."""
    return (max(1, min(max_blocks, -(-int(count) // block))), 1, 1)


@functools.cache
def specs() -> dict[str, KernelSpec]:
    """Every registered kernel by entry point name."""
    found: dict[str, KernelSpec] = {}
    for name in CONCEPT_MODULES:
        module = importlib.import_module(name)
        for spec in getattr(module, "SPECS", None) or ():
            if not isinstance(spec, KernelSpec):
                raise BackendError(f"{name}.SPECS holds {spec!r}, not a KernelSpec")
            if spec.entry in found:
                raise BackendError(
                    f"kernel {spec.entry} is registered twice ({name} and "
                    f"{found[spec.entry].source}); rename one entry point"
                )
            if not spec.path.is_file():
                raise BackendError(f"kernel {spec.entry}: source {spec.path} does not exist")
            found[spec.entry] = spec
    return found


def get(entry: str) -> KernelSpec:
    """The spec of ``entry``; :class:`BackendError` naming the known ones if there is none."""
    try:
        return specs()[entry]
    except KeyError:
        raise BackendError(f"no kernel named {entry!r}; registered: {sorted(specs())}") from None


def sources() -> tuple[Path, ...]:
    """The .cu files of every registered kernel, in a stable order."""
    return tuple(sorted({spec.path for spec in specs().values()}))
