"""FP16 layers: an Fp16Layer runs its wrapped op's FP16 kernel."""

from __future__ import annotations

from edge_infer.cuda.library import KernelCall
from edge_infer.cuda.lowering import F16, F32, LOWERINGS, Layer, into_contiguous, lowering
from edge_infer.cuda.params.reformat import reformat
from edge_infer.engine.ir import Node

# -- FP16 layers ---------------------------------------------------------------------------


@lowering("Fp16Layer")
def _fp16_layer(layer: Layer) -> list[KernelCall] | None:
    """The wrapped layer's FP16 kernel (which rounds once to FP16, as the wrapper does). A
    float32 input the wrapper rounds (``round_inputs``: the network's input into its first
    layer) is reformatted to FP16 in scratch memory first; an output the engine keeps in
    float32 (FP16-rounded values: the network's outputs) is computed in FP16 scratch memory and
    reformatted to float32 after — both exact where the wrapper rounds. Else: host fallback."""
    a = layer.attrs
    op = str(a.get("op", ""))
    if op not in LOWERINGS or op == "Fp16Layer":
        return None
    outs, post = list(layer.outs), []
    for k, y in enumerate(layer.outs):
        if y.dtype == F16:
            continue
        if y.dtype != F32:
            return None
        outs[k] = layer.scratch(y.shape, F16)
        post += into_contiguous(layer, y, lambda dst, t=outs[k]: [reformat(t, dst)])  # type: ignore[arg-type]
    ins = list(layer.ins)
    pre: list[KernelCall] = []
    for k, (x, c) in enumerate(zip(layer.ins, layer.consts, strict=True)):
        if x is None or c is not None or x.dtype == F16:
            continue
        if x.dtype != F32 or k not in a.get("round_inputs", ()) or not x.contiguous:
            return None
        ins[k] = layer.scratch(x.shape, F16)
        pre.append(reformat(x, ins[k]))  # type: ignore[arg-type]
    inner = Node(op, layer.node.name, str(a.get("op_domain", "")), dict(a.get("op_attrs", {})))
    inner.meta = layer.node.meta
    sub = Layer(
        inner,
        ins,
        layer.consts,
        outs,
        int(a.get("opset", layer.opset)),
        layer.upload,
        layer.tactic,
        layer.extra_reads,
        layer.scratch_fn,
        layer.extra_writes,
    )
    calls = LOWERINGS[op](sub)
    return None if calls is None else [*pre, *calls, *post]
