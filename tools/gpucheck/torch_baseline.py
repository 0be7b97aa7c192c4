"""The PyTorch baseline: the same ONNX graphs run by PyTorch on the same GPU — cuDNN
(``benchmark`` mode), FP16, channels-last — eager and replayed as a CUDA graph.

The ONNX graph is interpreted, not re-written by hand, so PyTorch runs exactly the network
our engine runs (same convolutions, same head). The shape subgraphs a dynamic-batch export
carries (Shape → Gather → Concat → Reshape) are folded to constants once, at the benchmark's
batch size, with ONNX's reference evaluator; ``x * sigmoid(x)`` becomes ``F.silu`` (what
ultralytics' own module calls), so PyTorch is not charged for a pattern no PyTorch user
writes. Everything left is one PyTorch call per node.

    python -m tools.gpucheck.torch_baseline --model NAME=FILE.onnx --batch 1 8 --iterations 200

prints one JSON line per (model, batch). Only :func:`plan` runs without torch (and is tested
on any machine); the rest needs torch with CUDA.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

#: the ops the interpreter runs (anything else: the baseline is refused, naming the op)
SUPPORTED = frozenset(
    {
        "Conv",
        "Sigmoid",
        "Mul",
        "Add",
        "Sub",
        "Div",
        "Concat",
        "Split",
        "Slice",
        "MaxPool",
        "Resize",
        "Reshape",
        "Transpose",
        "Softmax",
        "SiLU",
    }
)


class UnsupportedGraph(Exception):
    """The graph has an op the PyTorch interpreter does not run."""


@dataclass
class Step:
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    steps: list[Step]
    consts: dict[str, np.ndarray]
    input: str
    outputs: list[str]


def _fix_batch(
    model: onnx.ModelProto, batch: int, hw: tuple[int, int] | None = None
) -> onnx.ModelProto:
    """The model with its inputs' batch fixed at ``batch`` and, given ``hw``, the first
    input's dynamic height and width at ``(height, width)``."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for k, value in enumerate(fixed.graph.input):
        dims = value.type.tensor_type.shape.dim
        sizes = {0: batch}
        if k == 0 and hw is not None:
            sizes.update({2: hw[0], 3: hw[1]})
        for i, n in sizes.items():
            if i == 0 or not dims[i].HasField("dim_value"):
                dims[i].ClearField("dim_param")
                dims[i].dim_value = n
    # an exporter's value_info keeps its symbolic dims ("unk__0"): they are inferred afresh
    del fixed.graph.value_info[:]
    return fixed


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    shapes = {}
    for v in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = v.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[v.name] = [d.dim_value for d in dims]
    return shapes


def plan(model: onnx.ModelProto, batch: int, hw: tuple[int, int] | None = None) -> Plan:
    """Fold every node computable from constants and static shapes at ``batch`` (and input
    ``(height, width)`` ``hw``, for a model with dynamic ones: anchor grids fold too); fuse
    ``Mul(x, Sigmoid(x))`` into ``SiLU``; what is left must be in :data:`SUPPORTED`.

    Folding and shape inference alternate until nothing more folds: ONNX's inference cannot
    see through a Slice whose bounds are computed from a Shape, but once those bounds are
    constants it can, and the next Shape folds."""
    fixed = _fix_batch(model, batch, hw)
    consts = {t.name: numpy_helper.to_array(t) for t in fixed.graph.initializer}
    nodes = list(fixed.graph.node)
    while True:
        shapes = _static_shapes(_with_consts(fixed, nodes, consts))
        left = [n for n in nodes if not _fold(n, consts, shapes)]
        if len(left) == len(nodes):
            break
        nodes = left
    steps = _fuse_silu(
        [
            Step(
                n.op_type,
                list(n.input),
                list(n.output),
                {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute},
            )
            for n in nodes
        ]
    )
    unsupported = sorted({s.op for s in steps} - SUPPORTED)
    if unsupported:
        raise UnsupportedGraph(f"the PyTorch baseline cannot run op(s) {', '.join(unsupported)}")
    return Plan(steps, consts, fixed.graph.input[0].name, [o.name for o in fixed.graph.output])


def _with_consts(
    model: onnx.ModelProto, nodes: list[onnx.NodeProto], consts: dict[str, np.ndarray]
) -> onnx.ModelProto:
    """The graph of the nodes left, the folded values as initializers, shapes inferred."""
    graph = onnx.helper.make_graph(
        nodes,
        model.graph.name,
        list(model.graph.input),
        list(model.graph.output),
        [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()],
    )
    draft = onnx.helper.make_model(
        graph, opset_imports=list(model.opset_import), ir_version=model.ir_version
    )
    return onnx.shape_inference.infer_shapes(draft)


def _fold(
    node: onnx.NodeProto, consts: dict[str, np.ndarray], shapes: dict[str, list[int]]
) -> bool:
    """Evaluate ``node`` into ``consts`` if its inputs are known; True when it was."""
    from onnx.reference import ReferenceEvaluator

    if node.op_type == "Constant":
        attr = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        consts[node.output[0]] = numpy_helper.to_array(attr["value"])
        return True
    if node.op_type == "Shape" and node.input[0] in shapes and not node.attribute:
        consts[node.output[0]] = np.array(shapes[node.input[0]], np.int64)
        return True
    if not all(not i or i in consts for i in node.input):
        return False
    feeds = {i: consts[i] for i in node.input if i}
    for name, value in zip(node.output, ReferenceEvaluator(node).run(None, feeds), strict=True):
        consts[name] = np.asarray(value)
    return True


def _fuse_silu(steps: list[Step]) -> list[Step]:
    uses: dict[str, int] = {}
    for s in steps:
        for i in s.inputs:
            uses[i] = uses.get(i, 0) + 1
    sigmoid_of = {s.outputs[0]: s.inputs[0] for s in steps if s.op == "Sigmoid"}
    fused: set[str] = set()
    out: list[Step] = []
    for s in steps:
        if s.op == "Mul" and len(s.inputs) == 2:
            a, b = s.inputs
            for x, sig in ((a, b), (b, a)):
                if sigmoid_of.get(sig) == x and uses.get(sig) == 1:
                    fused.add(sig)
                    s = Step("SiLU", [x], s.outputs)
                    break
        out.append(s)
    return [s for s in out if not (s.op == "Sigmoid" and s.outputs[0] in fused)]


def _run(plan_: Plan, x: Any, consts: dict[str, Any]) -> list[Any]:  # pragma: no cover (GPU)
    import torch
    import torch.nn.functional as F

    env: dict[str, Any] = {plan_.input: x, **consts}
    for s in plan_.steps:
        a = s.attrs
        ins = [env[i] if i else None for i in s.inputs]
        if s.op == "Conv":
            pads = list(a.get("pads", [0, 0, 0, 0]))
            inp = ins[0]
            if pads[:2] != pads[2:]:
                inp = F.pad(inp, (pads[1], pads[3], pads[0], pads[2]))
                pads = [0, 0, 0, 0]
            y = F.conv2d(
                inp,
                ins[1],
                ins[2] if len(ins) > 2 else None,
                stride=tuple(a.get("strides", [1, 1])),
                padding=tuple(pads[:2]),
                dilation=tuple(a.get("dilations", [1, 1])),
                groups=a.get("group", 1),
            )
            outs = [y]
        elif s.op == "SiLU":
            outs = [F.silu(ins[0])]
        elif s.op == "Sigmoid":
            outs = [torch.sigmoid(ins[0])]
        elif s.op in ("Mul", "Add", "Sub", "Div"):
            fn = {"Mul": torch.mul, "Add": torch.add, "Sub": torch.sub, "Div": torch.div}[s.op]
            outs = [fn(ins[0], ins[1])]
        elif s.op == "Concat":
            outs = [torch.cat(ins, dim=a["axis"])]
        elif s.op == "Split":
            axis = a.get("axis", 0)
            if len(ins) > 1 and ins[1] is not None:
                sizes = [int(v) for v in ins[1]]
            elif "split" in a:
                sizes = list(a["split"])
            else:
                n = len(s.outputs)
                sizes = [ins[0].shape[axis] // n] * n
            outs = list(torch.split(ins[0], sizes, dim=axis))
        elif s.op == "Slice":
            starts, ends = [int(v) for v in ins[1]], [int(v) for v in ins[2]]
            axes = (
                [int(v) for v in ins[3]]
                if len(ins) > 3 and ins[3] is not None
                else list(range(len(starts)))
            )
            steps_ = (
                [int(v) for v in ins[4]]
                if len(ins) > 4 and ins[4] is not None
                else [1] * len(starts)
            )
            index = [slice(None)] * ins[0].dim()
            for ax, b, e, st in zip(axes, starts, ends, steps_, strict=True):
                index[ax] = slice(b, min(e, ins[0].shape[ax]), st)
            outs = [ins[0][tuple(index)]]
        elif s.op == "MaxPool":
            pads = list(a.get("pads", [0, 0, 0, 0]))
            outs = [
                F.max_pool2d(
                    ins[0],
                    tuple(a["kernel_shape"]),
                    tuple(a.get("strides", [1, 1])),
                    tuple(pads[:2]),
                )
            ]
        elif s.op == "Resize":
            scales = ins[2] if len(ins) > 2 and ins[2] is not None and len(ins[2]) else None
            if scales is not None:
                outs = [
                    F.interpolate(
                        ins[0], scale_factor=tuple(float(v) for v in scales[2:]), mode="nearest"
                    )
                ]
            else:
                outs = [
                    F.interpolate(ins[0], size=tuple(int(v) for v in ins[3][2:]), mode="nearest")
                ]
        elif s.op == "Reshape":
            shape = [int(v) for v in ins[1]]
            shape = [ins[0].shape[i] if v == 0 else v for i, v in enumerate(shape)]
            outs = [ins[0].reshape(shape)]
        elif s.op == "Transpose":
            outs = [ins[0].permute(*a["perm"])]
        elif s.op == "Softmax":
            outs = [torch.softmax(ins[0], dim=a.get("axis", -1))]
        else:  # plan() refused it already
            raise UnsupportedGraph(s.op)
        env.update(zip(s.outputs, outs, strict=True))
    return [env[o] for o in plan_.outputs]


def _device_consts(plan_: Plan, dtype: Any) -> dict[str, Any]:  # pragma: no cover (GPU)
    import torch

    out: dict[str, Any] = {}
    conv_weights = {s.inputs[1] for s in plan_.steps if s.op == "Conv"}
    for name, value in plan_.consts.items():
        if value.dtype.kind == "f":
            t = torch.from_numpy(np.ascontiguousarray(value)).to("cuda", dtype)
            if name in conv_weights and t.dim() == 4:
                t = t.contiguous(memory_format=torch.channels_last)
            out[name] = t
        else:  # shapes, axes, sizes: host values the interpreter reads
            out[name] = value
    return out


def time_model(
    path: Path, batch: int, iterations: int, warmup: int, hw: tuple[int, int] | None = None
) -> dict[str, Any]:
    """Eager and CUDA-graph latency of one model at one batch (CUDA events; ms), at input
    ``(height, width)`` ``hw`` for a model with dynamic ones."""
    import torch  # pragma: no cover (GPU)

    torch.backends.cudnn.benchmark = True
    model = onnx.load(str(path))
    p = plan(model, batch, hw)
    consts = _device_consts(p, torch.float16)
    size = _fix_batch(model, batch, hw).graph.input[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value for d in size)
    x = torch.rand(shape, device="cuda", dtype=torch.float16).contiguous(
        memory_format=torch.channels_last
    )
    result: dict[str, Any] = {"batch": batch, "nodes": len(p.steps)}
    with torch.inference_mode():
        if batch == 1:  # the interpreter computes the network: FP16 vs onnxruntime's FP32
            result["max_rel_diff_vs_onnxruntime"] = _check(path, p, x, consts)
        result["eager"] = _timed(lambda: _run(p, x, consts), iterations, warmup)
        try:
            for _ in range(3):  # warm cuDNN's choices before capture
                _run(p, x, consts)
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                _run(p, x, consts)
            result["cuda_graph"] = _timed(graph.replay, iterations, warmup)
        except Exception as exc:  # capture is best-effort: eager is the stated baseline
            result["cuda_graph"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return result


def _check(path: Path, plan_: Plan, x: Any, consts: dict[str, Any]) -> float | str:
    try:  # pragma: no cover (GPU)
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime not importable"
    ours = _run(plan_, x, consts)[0].float().cpu().numpy()  # pragma: no cover (GPU)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = session.run(None, {plan_.input: np.ascontiguousarray(x.float().cpu().numpy())})[0]
    return float(np.abs(ours - ref).max() / max(float(np.abs(ref).max()), 1e-12))


def _timed(fn: Any, iterations: int, warmup: int) -> dict[str, float]:  # pragma: no cover
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    gpu, wall = [], []
    for _ in range(iterations):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0 = time.perf_counter()
        start.record()
        fn()
        end.record()
        end.synchronize()
        wall.append((time.perf_counter() - t0) * 1e3)
        gpu.append(start.elapsed_time(end))
    gpu.sort()
    return {
        "gpu_median_ms": statistics.median(gpu),
        "gpu_p99_ms": gpu[int(0.99 * (len(gpu) - 1))],
        "wall_median_ms": statistics.median(wall),
    }


def main(argv: list[str] | None = None) -> int:  # pragma: no cover (GPU)
    p = argparse.ArgumentParser(description="PyTorch FP16 channels-last baseline (cuDNN)")
    p.add_argument("--model", action="append", required=True, metavar="NAME=FILE.onnx")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument(
        "--input-size",
        action="append",
        default=[],
        metavar="NAME=WxH",
        help="input of model NAME if its height/width are dynamic",
    )
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(json.dumps({"error": f"torch {torch.__version__} sees no CUDA device"}))
        return 3
    env = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "gpu": torch.cuda.get_device_name(0),
    }
    print(json.dumps({"env": env}), flush=True)
    sizes = {}
    for item in args.input_size:
        name, _, wh = item.partition("=")
        w, h = (int(v) for v in wh.lower().split("x"))
        sizes[name] = (h, w)
    for item in args.model:
        name, _, path = item.partition("=")
        for batch in args.batch:
            try:
                row = time_model(Path(path), batch, args.iterations, args.warmup, sizes.get(name))
            except Exception as exc:
                row = {"batch": batch, "error": f"{type(exc).__name__}: {exc}"[:500]}
            print(json.dumps({"model": name, **row}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
