"""Run a specialized graph and see its intermediate tensors.

:class:`TensorCapture` compiles a copy of the graph on the reference backend (first applicable
tactic, no tuning) with the tensors of interest added as extra outputs, so calibration,
``compare --per-layer`` and the sensitivity analysis run at the engine's speed and see the
very values the engine computes. Every node output is capturable, aliases included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from edge_infer.engine.ir import Graph

_PREFIX = "__capture__/"


class TensorCapture:
    """``run(feeds)`` → the graph outputs plus the values of ``names``, by tensor name.

    Runs on ``backend`` (default: the registry's reference backend, whose numbers every
    backend must reproduce)."""

    def __init__(self, graph: Graph, names: Iterable[str], backend: str | None = None) -> None:
        from edge_infer.engine.backends import REFERENCE_BACKEND, get_backend
        from edge_infer.engine.options import BuildOptions

        g = graph.copy()
        self._public: dict[str, str] = {}
        existing = {v.name: public for public, v in g.outputs}
        for name in dict.fromkeys(names):
            value = g.value(name)
            if value.is_const:
                continue
            if name in existing:
                self._public[name] = existing[name]
                continue
            g.add_output(value, _PREFIX + name)
            self._public[name] = _PREFIX + name
        self.output_names = [public for public, _ in graph.outputs]
        be = get_backend(backend or REFERENCE_BACKEND)
        opts = BuildOptions(backend=be.name, tune=False)
        batch = int(g.inputs[0].shape[0]) if g.inputs and g.inputs[0].shape else 1
        blobs = be.compile(g, batch=batch, options=opts, cache=None)
        self._program = be.prepare(g, blobs)
        self._state = self._program.new_state()
        self.input_names = [v.name for v in g.inputs]

    @property
    def names(self) -> list[str]:
        return list(self._public)

    def run(
        self, feeds: Mapping[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """``(graph outputs by public name, captured tensors by tensor name)``."""
        out = self._program.run(self._state, feeds)
        outputs = {name: out[name] for name in self.output_names}
        captured = {name: out[public] for name, public in self._public.items()}
        return outputs, captured


def float_activations(graph: Graph) -> list[str]:
    """Names of every real-valued tensor a node produces, in graph order: float32, and the
    float16 / int8 tensors a reduced-precision engine stores (``value.meta["storage"]``)."""
    return [
        v.name
        for n in graph.nodes
        for v in n.outputs
        if v.type is not None
        and (v.dtype == np.float32 or ("storage" in v.meta and v.dtype in (np.float16, np.int8)))
    ]


def real_values(graph: Graph, name: str, array: np.ndarray) -> np.ndarray:
    """A captured tensor as float32 real values: int8 storage dequantized with its scale,
    float16 widened (exactly)."""
    storage = graph.value(name).meta.get("storage") or {}
    if array.dtype == np.int8 and storage.get("dtype") == "int8":
        return array.astype(np.float32) * np.float32(storage["scale"])
    return array.astype(np.float32, copy=False)
