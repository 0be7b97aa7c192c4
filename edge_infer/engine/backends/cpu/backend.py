"""The CPU backend: numpy/BLAS kernels, the portable default and the numeric reference."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge_infer.engine.backends.base import Backend, Program
from edge_infer.engine.backends.cpu.device import cpu_fingerprint
from edge_infer.engine.backends.cpu.program import CpuProgram
from edge_infer.engine.ir import Graph


class CpuBackend(Backend):
    name = "cpu"

    def device_fingerprint(self) -> dict[str, Any]:
        return dict(cpu_fingerprint())

    def compile(self, graph: Graph, *, batch: int, options: Any) -> dict[str, bytes]:
        # Kernels are numpy functions chosen at load time from node.meta; nothing to emit.
        return {}

    def prepare(self, graph: Graph, blobs: Mapping[str, bytes]) -> Program:
        return CpuProgram(graph)
