"""Which backend and device the daemon's engine runs on (``inference.backend`` / ``device``).

``auto`` picks the CUDA backend when it can open the configured device (pycuda installed, a
GPU and its driver present), else the CPU; the choice and the reason are logged, so a
machine that silently lost its GPU shows up in the first lines of the log. ``cuda`` never
falls back: a missing GPU is a start-up error saying what to install.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from edge_infer.engine import backend_problem, configure_backend
from edge_infer.errors import ConfigError
from edge_infer.pipeline.config import InferenceConfig

log = logging.getLogger("edge_infer.daemon")


@dataclass(frozen=True)
class BackendChoice:
    """The resolved backend: ``name`` ("cpu" or "cuda") and, for cuda, the device spec."""

    name: str
    device: str | None = None

    def build_options(self, contexts: int, cores: int | None) -> dict[str, Any]:
        """Backend options for an engine built for this choice, shared by ``contexts``
        workers (the CPU: threads per context; the CUDA backend: its device)."""
        options = dict(configure_backend(self.name, contexts=contexts, cores=cores))
        if self.device is not None:
            options["device"] = self.device
        return options

    def describe(self) -> str:
        return self.name if self.device is None else f"{self.name} (device {self.device})"


def resolve_backend(inference: InferenceConfig) -> BackendChoice:
    """The backend ``inference`` asks for, its device opened and selected for this process;
    :class:`ConfigError` when ``backend: cuda`` cannot run here."""
    if inference.backend == "cpu":
        return BackendChoice("cpu")
    device = str(inference.device)
    problem = backend_problem("cuda", device)
    if problem is None:
        choice = BackendChoice("cuda", device)
        log.info("inference.backend %s: using %s", inference.backend, choice.describe())
        return choice
    if inference.backend == "cuda":
        raise ConfigError(f"inference.backend cuda: {problem}")
    log.info("inference.backend auto: using cpu (cuda on device %s: %s)", device, problem)
    return BackendChoice("cpu")
