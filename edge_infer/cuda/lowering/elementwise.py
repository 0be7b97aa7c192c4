"""Elementwise layers: Sigmoid, Softmax/LogSoftmax, Pointwise chains, single ONNX ops."""

from __future__ import annotations

from edge_infer.cuda.library import KernelCall
from edge_infer.cuda.lowering import Layer, into_contiguous, lowering
from edge_infer.cuda.params.activation import activation
from edge_infer.cuda.params.pointwise import pointwise
from edge_infer.cuda.params.softmax import softmax

# -- elementwise -----------------------------------------------------------------------------


@lowering("Sigmoid")
def _sigmoid(layer: Layer) -> list[KernelCall] | None:
    x, y = layer.ins[0], layer.outs[0]
    if x is None:
        return None
    if not x.contiguous:  # a strided input (a split's slice): the Pointwise kernel's strides
        step = {"op": "Sigmoid", "args": [0], "attrs": {}}
        return into_contiguous(layer, y, lambda out: [pointwise([x], out, [step], layer.opset)])  # type: ignore[list-item]
    return into_contiguous(layer, y, lambda out: [activation(x, out, "sigmoid")])


@lowering("Softmax", "LogSoftmax")
def _softmax(layer: Layer) -> list[KernelCall] | None:
    x, y = layer.ins[0], layer.outs[0]
    if x is None or layer.opset < 13 or not (x.contiguous and y.contiguous):
        return None
    return [softmax(x, y, int(layer.attrs.get("axis", -1)), log=layer.node.op_type == "LogSoftmax")]


@lowering("Pointwise")
def _pointwise(layer: Layer) -> list[KernelCall] | None:
    ins = [a for a in layer.ins]
    if any(a is None for a in ins):
        return None
    steps, opset = layer.attrs["steps"], int(layer.attrs.get("opset", layer.opset))
    return into_contiguous(
        layer,
        layer.outs[0],
        lambda out: [pointwise(ins, out, steps, opset)],  # type: ignore[arg-type]
    )


_BINARY = ("Add", "Sub", "Mul", "Div", "Max", "Min", "Pow")
_UNARY = ("Neg", "Abs", "Exp", "Log", "Sqrt", "Tanh", "Reciprocal", "Floor", "Ceil", "Relu")


@lowering(*_BINARY, *_UNARY)
def _elementwise(layer: Layer) -> list[KernelCall] | None:
    """One ONNX elementwise op as a one-step Pointwise program; the input with the output's
    shape goes first (the kernel broadcasts the others)."""
    ins, out = layer.ins, layer.outs[0]
    if any(a is None for a in ins) or not 1 <= len(ins) <= 2:
        return None
    order = sorted(range(len(ins)), key=lambda k: ins[k].shape != out.shape)  # type: ignore[union-attr]
    if ins[order[0]].shape != out.shape:  # type: ignore[union-attr]
        return None
    position = {k: order.index(k) for k in range(len(ins))}
    step = {"op": layer.node.op_type, "args": [position[k] for k in range(len(ins))], "attrs": {}}
    operands = [ins[k] for k in order]
    return into_contiguous(
        layer,
        out,
        lambda y: [pointwise(operands, y, [step], layer.opset)],  # type: ignore[arg-type]
    )
