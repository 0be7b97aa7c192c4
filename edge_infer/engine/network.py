"""Network definition API: build a network layer by layer, without ONNX.

The counterpart of TensorRT's ``INetworkDefinition``. Layers become ordinary IR nodes with
ONNX op types, so a network built here goes through exactly the same shape inference,
optimization passes, tactics and engine format as an imported model::

    net = Network("inception_3a")
    x = net.add_input("data", (1, 192, 28, 28))
    b1 = net.add_activation(net.add_convolution(x, 64, 1, w1, b1_bias), "relu")
    ...
    net.mark_output(net.add_concatenation([b1, b2, b3, b4], axis=1), "out")
    engine = edge_infer.build(net)

Weights are numpy arrays; when omitted, deterministic He-initialised weights are generated
from ``Network(seed=...)`` (handy for tests and benchmarks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_infer.engine.ir import Graph, TensorType, Value
from edge_infer.engine.shape_inference import infer_shapes
from edge_infer.errors import EdgeInferError, GraphError

Tensor = Value

_ACTIVATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "relu": ("Relu", {}),
    "sigmoid": ("Sigmoid", {}),
    "tanh": ("Tanh", {}),
    "leaky_relu": ("LeakyRelu", {"alpha": 0.01}),
    "elu": ("Elu", {"alpha": 1.0}),
    "selu": ("Selu", {}),
    "softplus": ("Softplus", {}),
    "hard_sigmoid": ("HardSigmoid", {}),
    "hard_swish": ("HardSwish", {}),
    "mish": ("Mish", {}),
    "gelu": ("Gelu", {}),
}
_ELEMENTWISE = {
    "sum": "Add",
    "sub": "Sub",
    "prod": "Mul",
    "div": "Div",
    "max": "Max",
    "min": "Min",
    "pow": "Pow",
}
_POOLING = {"max": "MaxPool", "average": "AveragePool"}


def _pair(v: int | Sequence[int]) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(x) for x in v]


class Network:
    """A network under construction; ``graph`` is the IR it builds."""

    def __init__(self, name: str = "network", *, seed: int = 0, opset: int = 17) -> None:
        self.graph = Graph(name=name, opsets={"": opset})
        self._rng = np.random.default_rng(seed)

    # -- inputs and outputs -----------------------------------------------------------------
    def add_input(self, name: str, shape: Sequence[int | str], dtype: Any = np.float32) -> Tensor:
        """A network input; use a str (e.g. ``"batch"``) for a dynamic batch dim."""
        return self.graph.add_input(name, TensorType(tuple(shape), np.dtype(dtype)))

    def mark_output(self, tensor: Tensor, name: str | None = None) -> None:
        self.graph.add_output(tensor, name or tensor.name)

    def add_constant(self, array: np.ndarray, name: str = "const") -> Tensor:
        return self.graph.add_constant(name, np.asarray(array))

    # -- layers -----------------------------------------------------------------------------
    def _layer(
        self,
        op_type: str,
        inputs: Sequence[Value | None],
        attrs: dict[str, Any],
        name: str | None,
        outputs: int = 1,
    ) -> Any:
        node = self.graph.add_node(op_type, inputs, outputs, attrs, name=name)
        return node.outputs if outputs > 1 else node.outputs[0]  # type: ignore[return-value]

    def _channels(self, x: Tensor) -> int:
        if x.type is None or len(x.shape) < 2 or not isinstance(x.shape[1], int):
            self._infer()
        if x.type is None or not isinstance(x.shape[1], int):
            raise GraphError(f"cannot tell the channel count of '{x.name}'; pass weights")
        return int(x.shape[1])

    def _infer(self) -> None:
        """Type whatever can be typed (symbolic batch is fine for channel counts)."""
        probe = self.graph.copy()
        try:
            from edge_infer.engine.shape_inference import bind_input_shapes

            bind_input_shapes(
                probe,
                {
                    v.name: tuple(d if isinstance(d, int) else 1 for d in v.shape)
                    for v in probe.inputs
                },
            )
            infer_shapes(probe, fold=False)
        except EdgeInferError as exc:
            raise GraphError(f"cannot infer the shapes of the network so far: {exc}") from exc
        for name, value in probe.values.items():
            if self.graph.has_value(name) and self.graph.value(name).type is None:
                self.graph.value(name).type = value.type

    def add_convolution(
        self,
        x: Tensor,
        out_channels: int,
        kernel: int | Sequence[int],
        weights: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        *,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | str = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        name: str | None = None,
    ) -> Tensor:
        """2-D convolution; ``padding="same"`` pads to keep the spatial size at stride 1."""
        kh, kw = _pair(kernel)
        if weights is None:
            cin = self._channels(x)
            fan_in = cin // groups * kh * kw
            weights = (
                self._rng.standard_normal((out_channels, cin // groups, kh, kw))
                * np.sqrt(2.0 / fan_in)
            ).astype(np.float32)
        if bias is None:
            bias = (self._rng.standard_normal(out_channels) * 0.1).astype(np.float32)
        d = _pair(dilation)
        if padding == "same":
            pads = [d[0] * (kh - 1) // 2, d[1] * (kw - 1) // 2] * 2
        else:
            p = _pair(padding)  # type: ignore[arg-type]
            pads = [p[0], p[1], p[0], p[1]]
        w = self.graph.add_constant(f"{name or 'conv'}_W", np.asarray(weights))
        b = self.graph.add_constant(f"{name or 'conv'}_B", np.asarray(bias))
        attrs = {
            "kernel_shape": [kh, kw],
            "strides": _pair(stride),
            "pads": pads,
            "dilations": d,
            "group": groups,
        }
        return self._layer("Conv", [x, w, b], attrs, name)

    def add_activation(
        self, x: Tensor, kind: str, *, name: str | None = None, **params: float
    ) -> Tensor:
        """Activation by name: relu, sigmoid, tanh, leaky_relu, elu, hard_swish, silu, ..."""
        if kind == "silu":  # as PyTorch exports it: x * sigmoid(x)
            s = self._layer("Sigmoid", [x], {}, name and f"{name}_sigmoid")
            return self._layer("Mul", [x, s], {}, name)
        if kind in ("clip", "relu6"):
            lo = self.graph.add_constant("clip_min", np.float32(params.get("min", 0.0)))
            hi = self.graph.add_constant("clip_max", np.float32(params.get("max", 6.0)))
            return self._layer("Clip", [x, lo, hi], {}, name)
        if kind not in _ACTIVATIONS:
            known = sorted([*_ACTIVATIONS, "silu", "relu6", "clip"])
            raise GraphError(f"unknown activation '{kind}'; choose one of {known}")
        op, defaults = _ACTIVATIONS[kind]
        return self._layer(op, [x], {**defaults, **params}, name)

    def add_pooling(
        self,
        x: Tensor,
        kind: str,
        kernel: int | Sequence[int],
        *,
        stride: int | Sequence[int] | None = None,
        padding: int | Sequence[int] = 0,
        ceil_mode: bool = False,
        name: str | None = None,
    ) -> Tensor:
        """Max or average pooling."""
        if kind not in _POOLING:
            raise GraphError(f"unknown pooling '{kind}'; choose one of {sorted(_POOLING)}")
        p = _pair(padding)
        attrs = {
            "kernel_shape": _pair(kernel),
            "strides": _pair(stride or kernel),
            "pads": [p[0], p[1], p[0], p[1]],
            "ceil_mode": int(ceil_mode),
        }
        return self._layer(_POOLING[kind], [x], attrs, name)

    def add_global_pooling(
        self, x: Tensor, kind: str = "average", *, name: str | None = None
    ) -> Tensor:
        op = {"average": "GlobalAveragePool", "max": "GlobalMaxPool"}.get(kind)
        if op is None:
            raise GraphError(f"unknown global pooling '{kind}'; choose average or max")
        return self._layer(op, [x], {}, name)

    def add_concatenation(
        self, xs: Sequence[Tensor], axis: int = 1, *, name: str | None = None
    ) -> Tensor:
        if not xs:
            raise GraphError("concatenation needs at least one input")
        return self._layer("Concat", list(xs), {"axis": axis}, name)

    def add_elementwise(
        self, a: Tensor, b: Tensor, kind: str, *, name: str | None = None
    ) -> Tensor:
        """Binary elementwise op with broadcasting: sum, sub, prod, div, max, min, pow."""
        if kind not in _ELEMENTWISE:
            raise GraphError(
                f"unknown elementwise op '{kind}'; choose one of {sorted(_ELEMENTWISE)}"
            )
        return self._layer(_ELEMENTWISE[kind], [a, b], {}, name)

    def add_fully_connected(
        self,
        x: Tensor,
        out_features: int,
        weights: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        *,
        name: str | None = None,
    ) -> Tensor:
        """``y = flatten(x) @ W.T + b`` (Flatten + Gemm)."""
        flat = self._layer("Flatten", [x], {"axis": 1}, name and f"{name}_flatten")
        if weights is None:
            self._infer()
            if flat.type is None or not isinstance(flat.shape[1], int):
                raise GraphError(f"cannot tell the feature count of '{x.name}'; pass weights")
            fan_in = int(flat.shape[1])
            weights = (
                self._rng.standard_normal((out_features, fan_in)) * np.sqrt(1.0 / fan_in)
            ).astype(np.float32)
        if bias is None:
            bias = np.zeros(out_features, np.float32)
        w = self.graph.add_constant(f"{name or 'fc'}_W", np.asarray(weights))
        b = self.graph.add_constant(f"{name or 'fc'}_B", np.asarray(bias))
        return self._layer("Gemm", [flat, w, b], {"transB": 1}, name)

    def add_softmax(self, x: Tensor, axis: int = -1, *, name: str | None = None) -> Tensor:
        return self._layer("Softmax", [x], {"axis": axis}, name)

    def add_resize(
        self, x: Tensor, scale: float, mode: str = "nearest", *, name: str | None = None
    ) -> Tensor:
        """Spatial up/down-sampling of NCHW by ``scale``."""
        scales = self.graph.add_constant("scales", np.array([1, 1, scale, scale], np.float32))
        return self._layer("Resize", [x, None, scales], {"mode": mode}, name)

    def add_layer(
        self,
        op_type: str,
        inputs: Sequence[Tensor | None],
        *,
        outputs: int = 1,
        domain: str = "",
        name: str | None = None,
        **attrs: Any,
    ) -> Any:
        """Any registered op (or plugin) by its ONNX op type."""
        node = self.graph.add_node(op_type, inputs, outputs, attrs, name=name, domain=domain)
        if domain and domain not in self.graph.opsets:
            self.graph.opsets[domain] = 1
        return node.outputs if outputs > 1 else node.outputs[0]
