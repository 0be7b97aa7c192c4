"""edge_infer wrapped as an ``onnx.backend.base.Backend``, to run the ONNX conformance suite.

``EdgeInferBackend.prepare(model)`` builds an :class:`~edge_infer.engine.runtime.Engine` for
the model's declared input shapes (the ONNX node test cases are fully static) and returns an
:class:`EdgeInferRep`; ``rep.run(inputs)`` returns the outputs in the model's output order,
as ``onnx.backend.test.runner.Runner`` expects. The ONNX reference evaluator is wrapped the
same way upstream (``onnx/test/test_backend_reference.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.base import Backend, BackendRep, Device, DeviceType

from edge_infer.engine.builder import build
from edge_infer.engine.runtime import Engine
from edge_infer.errors import BindingError, BuildError


def declared_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph inputs a caller feeds: declared inputs that are not initializers (IR < 4
    models list their weights as inputs too)."""
    initializers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def declared_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """``{input name: static shape}`` from the model's declarations; symbolic dims raise."""
    shapes: dict[str, tuple[int, ...]] = {}
    for info in declared_inputs(model):
        dims = info.type.tensor_type.shape.dim
        if not all(d.HasField("dim_value") for d in dims):
            names = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
            raise BuildError(
                f"input '{info.name}' has dynamic dims {names}; pass shapes={{...}} to "
                "EdgeInferBackend.prepare to fix them"
            )
        shapes[info.name] = tuple(int(d.dim_value) for d in dims)
    return shapes


def bind_inputs(model: onnx.ModelProto, values: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` where the inputs in ``values`` are initializers with those values."""
    names = {i.name for i in declared_inputs(model)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise BindingError(f"cannot bind {unknown}: not inputs of the model {sorted(names)}")
    bound = onnx.ModelProto()
    bound.CopyFrom(model)
    kept = [i for i in bound.graph.input if i.name not in values]
    del bound.graph.input[:]
    bound.graph.input.extend(kept)
    bound.graph.initializer.extend(
        numpy_helper.from_array(np.asarray(value), name) for name, value in values.items()
    )
    return bound


class EdgeInferRep(BackendRep):
    """A prepared model: an engine, one execution context, and the model's I/O order."""

    def __init__(
        self,
        engine: Engine,
        input_names: Sequence[str],
        output_names: Sequence[str],
        bound: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.engine = engine
        #: inputs the caller feeds, in declared order (bound inputs are not among them)
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        #: inputs whose values were fixed at build time (``constant_inputs`` of prepare)
        self.bound = dict(bound or {})
        self._context = engine.create_context()

    def run(self, inputs: Any, **kwargs: Any) -> list[np.ndarray]:
        """Run on ``inputs`` (one array, a list in declared-input order, or a name → array
        dict); returns the outputs in the model's output order."""
        feeds = self._feeds(inputs)
        outputs = self._context.execute(feeds)
        return [np.asarray(outputs[name]) for name in self.output_names]

    def _feeds(self, inputs: Any) -> dict[str, np.ndarray]:
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        if isinstance(inputs, Mapping):
            given = {str(k): v for k, v in inputs.items()}
        elif isinstance(inputs, Sequence):
            if len(inputs) != len(self.input_names):
                raise BindingError(
                    f"model takes {len(self.input_names)} input(s) {self.input_names}, "
                    f"got {len(inputs)}"
                )
            given = dict(zip(self.input_names, inputs, strict=True))
        else:
            raise BindingError(
                f"inputs must be an array, a list of arrays or a dict, got {type(inputs).__name__}"
            )
        for name, value in self.bound.items():
            if name in given and not np.array_equal(given.pop(name), value):
                raise BindingError(
                    f"input '{name}' was bound to {value.tolist()} when the engine was built; "
                    "rebuild to run it with another value"
                )
        # The engine may have dropped inputs that no output depends on; feed only its own.
        wanted = {b.name for b in self.engine.inputs}
        return {name: np.asarray(value) for name, value in given.items() if name in wanted}


class EdgeInferBackend(Backend):
    """The ONNX backend interface over :func:`edge_infer.build` (CPU backend)."""

    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        return cls.supports_device(device)

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> EdgeInferRep:
        """Build an engine for ``model`` at its declared input shapes.

        Keyword arguments: ``optimize`` and ``tune`` (as :func:`edge_infer.build`, default
        True); ``shapes`` (overrides declared
        shapes); ``constant_inputs`` (``{name: array}``: inputs turned into initializers before
        the build, as TensorRT takes shape-tensor values in its profile — for inputs that define
        shapes: Reshape's shape, Slice's starts, Resize's sizes, ...). Others (the runner's
        ``rtol``/``atol``) are ignored.
        """
        if not cls.supports_device(device):
            raise BuildError(f"edge_infer's ONNX backend runs on CPU only, not on '{device}'")
        if isinstance(model, bytes | str):
            model = (
                onnx.load_model_from_string(model) if isinstance(model, bytes) else onnx.load(model)
            )
        bound = {k: np.asarray(v) for k, v in (kwargs.get("constant_inputs") or {}).items()}
        if bound:
            model = bind_inputs(model, bound)
        shapes = dict(declared_shapes(model)) if kwargs.get("shapes") is None else kwargs["shapes"]
        engine = build(
            model,
            shapes=shapes,
            optimize=bool(kwargs.get("optimize", True)),
            tune=bool(kwargs.get("tune", True)),
        )
        inputs = [i.name for i in declared_inputs(model)]
        outputs = [o.name for o in model.graph.output]
        return EdgeInferRep(engine, inputs, outputs, bound)

    @classmethod
    def run_model(
        cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any
    ) -> list[np.ndarray]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(
        cls,
        node: onnx.NodeProto,
        inputs: Any,
        device: str = "CPU",
        outputs_info: Any = None,
        **kwargs: Any,
    ) -> list[np.ndarray]:
        raise NotImplementedError(
            "edge_infer runs whole models; wrap the node in a model and call run_model"
        )

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return Device(device).type == DeviceType.CPU


prepare = EdgeInferBackend.prepare
run_model = EdgeInferBackend.run_model
supports_device = EdgeInferBackend.supports_device

__all__ = [
    "EdgeInferBackend",
    "EdgeInferRep",
    "bind_inputs",
    "declared_inputs",
    "declared_shapes",
    "prepare",
    "run_model",
    "supports_device",
]
