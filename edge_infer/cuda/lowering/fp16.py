"""FP16 layers: an Fp16Layer runs its wrapped op's FP16 kernel."""

from __future__ import annotations

from edge_infer.cuda.library import KernelCall
from edge_infer.cuda.lowering import F16, LOWERINGS, Layer, lowering
from edge_infer.engine.ir import Node

# -- FP16 layers ---------------------------------------------------------------------------


@lowering("Fp16Layer")
def _fp16_layer(layer: Layer) -> list[KernelCall] | None:
    """The wrapped layer on FP16 storage, when every activation input and every output is
    float16 (the kernels then round once to FP16 as the wrapper does); otherwise (an input
    still float32, an output kept in float32) the host fallback."""
    a = layer.attrs
    op = str(a.get("op", ""))
    if any(
        x is not None and c is None and x.dtype != F16
        for x, c in zip(layer.ins, layer.consts, strict=True)
    ):
        return None
    if any(y.dtype != F16 for y in layer.outs) or op not in LOWERINGS or op == "Fp16Layer":
        return None
    inner = Node(op, layer.node.name, str(a.get("op_domain", "")), dict(a.get("op_attrs", {})))
    inner.meta = layer.node.meta
    sub = Layer(
        inner,
        layer.ins,
        layer.consts,
        layer.outs,
        int(a.get("opset", layer.opset)),
        layer.upload,
        layer.tactic,
        layer.extra_reads,
    )
    return LOWERINGS[op](sub)
