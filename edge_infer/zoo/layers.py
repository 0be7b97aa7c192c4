"""A small layer-by-layer ONNX graph builder shared by the zoo models.

:class:`GraphBuilder` keeps nodes and initializers, gives every node a unique, scoped name in
the style of a PyTorch export (``/model.2/cv1/conv/Conv``), and knows the opset so that ops
whose form changed between opsets (Unsqueeze, Split, Softmax, Resize, Dropout) are written in
the form that opset expects.

Weights are random but scaled so that activations stay O(1) through deep networks: a conv is
He-initialised with a gain that undoes the second moment its input activation removes, and a
BatchNormalization gets non-trivial statistics whose overall gain ``gamma**2 / var`` is 1 on
average over channels. Relative error checks on the outputs are then meaningful.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: Opsets the zoo can write (the importer's range).
MIN_OPSET = 11
MAX_OPSET = 21

#: E[act(z)**2] for z ~ N(0, 1); a conv reading that activation uses gain 1 / this value.
_SECOND_MOMENT = {"relu": 0.5, "relu6": 0.5, "silu": 0.356, "none": 1.0}

#: A tensor dimension: a size, or the name of a symbolic dim ("batch").
Dim = int | str


def check_common_args(name: str, batch: int | None, opset: int) -> None:
    """Reject bad ``batch`` or ``opset`` arguments with a message naming the model."""
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"{name}: batch must be a positive int or None (dynamic), got {batch!r}")
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"{name}: opset must be in {MIN_OPSET}..{MAX_OPSET}, got {opset!r}")


def act_gain(activation: str) -> float:
    """He gain for a conv whose input went through ``activation``."""
    return 1.0 / _SECOND_MOMENT[activation]


class GraphBuilder:
    """Collects nodes and initializers of one ONNX graph; see the module docstring."""

    def __init__(self, seed: int, opset: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._scopes: list[str] = []
        self._used: set[str] = set()

    # -- naming ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def scope(self, name: str) -> Iterator[None]:
        """Prefix node and weight names made inside the ``with`` block by ``name``."""
        self._scopes.append(name)
        try:
            yield
        finally:
            self._scopes.pop()

    def _unique(self, base: str) -> str:
        name, i = base, 0
        while name in self._used:
            i += 1
            name = f"{base}_{i}"
        self._used.add(name)
        return name

    def _node_name(self, op_type: str) -> str:
        prefix = "/" + "/".join(self._scopes) if self._scopes else ""
        return self._unique(f"{prefix}/{op_type}")

    def _weight_name(self, leaf: str) -> str:
        return self._unique(".".join([*self._scopes, leaf]))

    # -- primitives -----------------------------------------------------------------------------

    def const(self, leaf: str, value: np.ndarray) -> str:
        """Add an initializer named after the current scope and return its name."""
        name = self._weight_name(leaf)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def i64(self, leaf: str, values: Sequence[int] | int) -> str:
        """An int64 initializer (1-D for a sequence, a scalar for an int)."""
        return self.const(leaf, np.array(values, dtype=np.int64))

    def f32(self, leaf: str, values: Sequence[float] | float) -> str:
        """A float32 initializer (1-D for a sequence, a scalar for a float)."""
        return self.const(leaf, np.array(values, dtype=np.float32))

    def op(self, op_type: str, inputs: Sequence[str], n_out: int = 1, **attrs: object) -> list[str]:
        """Append one node; returns its output names (``<node name>_output_<i>``)."""
        name = self._node_name(op_type)
        outputs = [f"{name}_output_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs, name=name, **attrs))
        return outputs

    def op1(self, op_type: str, inputs: Sequence[str], **attrs: object) -> str:
        """:meth:`op` for the common single-output case."""
        return self.op(op_type, inputs, 1, **attrs)[0]

    def normal(self, std: float, shape: tuple[int, ...]) -> np.ndarray:
        """float32 samples of N(0, std**2) (drawn in float32: ResNet-50 has 25M weights)."""
        return self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std)

    # -- opset-dependent forms ------------------------------------------------------------------

    def unsqueeze(self, x: str, axes: Sequence[int]) -> str:
        """Unsqueeze with axes as an attribute (opset < 13) or an input (>= 13)."""
        if self.opset < 13:
            return self.op1("Unsqueeze", [x], axes=list(axes))
        return self.op1("Unsqueeze", [x, self.i64("axes", list(axes))])

    def split(self, x: str, sizes: Sequence[int], axis: int) -> list[str]:
        """Split into ``sizes`` along ``axis`` (attribute before opset 13, input after)."""
        if self.opset < 13:
            return self.op("Split", [x], len(sizes), axis=axis, split=list(sizes))
        return self.op("Split", [x, self.i64("split", list(sizes))], len(sizes), axis=axis)

    def softmax(self, x: str, axis: int, rank: int) -> str:
        """Softmax over one axis; before opset 13 the axis is moved last (2-D coercion)."""
        if self.opset >= 13 or axis in (rank - 1, -1):
            return self.op1("Softmax", [x], axis=axis if self.opset >= 13 else rank - 1)
        perm = list(range(rank))
        perm[axis], perm[-1] = perm[-1], perm[axis]
        t = self.op1("Transpose", [x], perm=perm)
        s = self.op1("Softmax", [t], axis=rank - 1)
        return self.op1("Transpose", [s], perm=perm)

    def upsample_nearest(self, x: str, scale: int) -> str:
        """Resize by ``scale`` with nearest/asymmetric/floor, as nn.Upsample exports."""
        scales = self.f32("scales", [1.0, 1.0, float(scale), float(scale)])
        roi = self.f32("roi", []) if self.opset < 13 else ""
        return self.op1(
            "Resize",
            [x, roi, scales],
            coordinate_transformation_mode="asymmetric",
            cubic_coeff_a=-0.75,
            mode="nearest",
            nearest_mode="floor",
        )

    def dropout(self, x: str, ratio: float) -> str:
        """Inference-mode Dropout (ratio as attribute before opset 12, input after)."""
        if self.opset < 12:
            return self.op1("Dropout", [x], ratio=ratio)
        return self.op1("Dropout", [x, self.f32("ratio", ratio)])

    def clip(self, x: str, lo: float, hi: float) -> str:
        """Clip with min/max as inputs (the opset >= 11 form); Relu6 is ``clip(x, 0, 6)``."""
        return self.op1("Clip", [x, self.f32("min", lo), self.f32("max", hi)])

    # -- layers ---------------------------------------------------------------------------------

    def conv(
        self,
        x: str,
        cin: int,
        cout: int,
        k: int,
        stride: int = 1,
        pad: int | None = None,
        group: int = 1,
        bias: bool = True,
        gain: float = 2.0,
    ) -> str:
        """Conv2d with He-like weights ``N(0, gain / fan_in)`` and a small random bias."""
        pad = k // 2 if pad is None else pad
        fan_in = cin // group * k * k
        w = self.normal(np.sqrt(gain / fan_in), (cout, cin // group, k, k))
        inputs = [x, self.const("weight", w)]
        if bias:
            inputs.append(self.const("bias", self.rng.normal(0.0, 0.1, cout).astype(np.float32)))
        return self.op1(
            "Conv",
            inputs,
            dilations=[1, 1],
            group=group,
            kernel_shape=[k, k],
            pads=[pad] * 4,
            strides=[stride, stride],
        )

    def bn_params(self, c: int, gamma_scale: float = 1.0) -> dict[str, np.ndarray]:
        """Non-trivial BatchNorm parameters whose mean ``gamma**2 / var`` is ``gamma_scale**2``."""
        var = self.rng.uniform(0.6, 1.4, c)
        gamma = self.rng.uniform(0.6, 1.4, c) * self.rng.choice([-1.0, 1.0], c, p=[0.1, 0.9])
        gamma *= gamma_scale / np.sqrt(np.mean(gamma**2 / var))
        return {
            "scale": gamma.astype(np.float32),
            "B": self.rng.normal(0.0, 0.1, c).astype(np.float32),
            "mean": self.rng.normal(0.0, 0.1, c).astype(np.float32),
            "var": var.astype(np.float32),
        }

    def batchnorm(self, x: str, c: int, gamma_scale: float = 1.0) -> str:
        """An inference BatchNormalization node with :meth:`bn_params` statistics."""
        p = self.bn_params(c, gamma_scale)
        names = [self.const(k, p[k]) for k in ("scale", "B", "mean", "var")]
        return self.op1("BatchNormalization", [x, *names], epsilon=1e-5, momentum=0.9)

    def activation(self, x: str, kind: str) -> str:
        """``relu``, ``relu6`` (Clip 0..6), ``silu`` (``x * Sigmoid(x)``) or ``none``."""
        if kind == "relu":
            return self.op1("Relu", [x])
        if kind == "relu6":
            return self.clip(x, 0.0, 6.0)
        if kind == "silu":
            return self.op1("Mul", [x, self.op1("Sigmoid", [x])])
        if kind == "none":
            return x
        raise ValueError(f"unknown activation {kind!r}; expected relu, relu6, silu or none")

    def conv_bn_act(
        self,
        x: str,
        cin: int,
        cout: int,
        k: int,
        stride: int = 1,
        group: int = 1,
        act: str = "relu",
        in_act: str = "relu",
        gamma_scale: float = 1.0,
        fold_bn: bool = False,
    ) -> str:
        """Conv (no bias) + BatchNormalization + activation.

        ``in_act`` is the activation that produced ``x`` and sets the He gain. With
        ``fold_bn`` the BatchNorm is folded into the conv's weights and bias instead of
        being a node (what an exporter that fuses first, e.g. ultralytics, writes).
        """
        gain = act_gain(in_act)
        if not fold_bn:
            with self.scope("conv"):
                y = self.conv(x, cin, cout, k, stride, group=group, bias=False, gain=gain)
            with self.scope("bn"):
                y = self.batchnorm(y, cout, gamma_scale)
        else:
            y = self._folded_conv(x, cin, cout, k, stride, group, gain, gamma_scale)
        with self.scope("act"):
            return self.activation(y, act)

    def _folded_conv(
        self, x: str, cin: int, cout: int, k: int, stride: int, group: int, gain: float, gs: float
    ) -> str:
        fan_in = cin // group * k * k
        w = self.normal(np.sqrt(gain / fan_in), (cout, cin // group, k, k))
        p = self.bn_params(cout, gs)
        s = p["scale"] / np.sqrt(p["var"] + 1e-5)
        w = (w * s[:, None, None, None]).astype(np.float32)
        b = (p["B"] - p["mean"] * s).astype(np.float32)
        with self.scope("conv"):
            names = [self.const("weight", w), self.const("bias", b)]
            return self.op1(
                "Conv",
                [x, *names],
                dilations=[1, 1],
                group=group,
                kernel_shape=[k, k],
                pads=[k // 2] * 4,
                strides=[stride, stride],
            )

    def gemm(self, x: str, cin: int, cout: int, gain: float = 1.0) -> str:
        """Fully connected layer ``x @ W.T + b`` as Gemm(transB=1)."""
        w = self.normal(np.sqrt(gain / cin), (cout, cin))
        b = self.rng.normal(0.0, 0.1, cout).astype(np.float32)
        return self.op1(
            "Gemm",
            [x, self.const("weight", w), self.const("bias", b)],
            alpha=1.0,
            beta=1.0,
            transB=1,
        )

    # -- model ----------------------------------------------------------------------------------

    def finish(
        self,
        graph_name: str,
        inputs: Sequence[tuple[str, Sequence[Dim]]],
        outputs: Sequence[tuple[str, str, Sequence[Dim]]],
        doc: str = "",
    ) -> onnx.ModelProto:
        """Wrap the nodes into a checked, shape-inferred model.

        ``outputs`` holds ``(graph output name, internal value, shape)``; the internal value
        is renamed so that the last node writes the graph output directly.
        """
        renames = {internal: public for public, internal, _ in outputs}
        for node in self.nodes:
            for i, name in enumerate(node.output):
                if name in renames:
                    node.output[i] = renames[name]
            for i, name in enumerate(node.input):
                if name in renames:
                    node.input[i] = renames[name]
        graph = helper.make_graph(
            self.nodes,
            graph_name,
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, _, s in outputs],
            initializer=self.initializers,
            doc_string=doc,
        )
        opsets = [helper.make_opsetid("", self.opset)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="edge_infer.zoo")
        model.ir_version = helper.find_min_ir_version_for(opsets)
        # Serialize once (ResNet-50 is ~100 MB); strict shape inference after the checker is
        # what check_model(full_check=True) does, and it gives us the inferred model too.
        data = model.SerializeToString()
        onnx.checker.check_model(data)
        return onnx.shape_inference.infer_shapes(data, check_type=True, strict_mode=True)
