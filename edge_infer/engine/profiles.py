"""Optimization profiles: the range of input shapes an engine accepts (min / opt / max).

As in TensorRT, a profile gives every input a min, opt and max shape. edge_infer lets only
the batch dimension (axis 0) vary inside a profile; the builder specializes the graph for
each batch size it will run (all of them for small ranges) and tunes tactics per batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge_infer.engine.ir import Graph
from edge_infer.errors import BuildError


def shape_example(declared: Sequence[Any]) -> str:
    """A ``--shapes`` value for a declared shape, for the user to fill in: its fixed dims, 1
    for a dynamic batch (the first dim), ``H``/``W`` for dims named so (``height``,
    ``width``), ``D<k>`` for the others (``[N, 3, height, width]`` → ``1x3xHxW``)."""
    letters = {"h": "H", "height": "H", "w": "W", "width": "W"}
    parts = []
    for k, d in enumerate(declared):
        if isinstance(d, int) and d > 0:
            parts.append(str(d))
        elif k == 0:
            parts.append("1")
        else:
            parts.append(letters.get(str(d).lower(), f"D{k}") if isinstance(d, str) else f"D{k}")
    return "x".join(parts)


#: a profile range longer than this is specialized at a subset of batch sizes (inputs padded)
MAX_SPECIALIZATIONS = 16

ShapeMap = Mapping[str, Sequence[int]]


@dataclass(frozen=True)
class Profile:
    min_batch: int
    opt_batch: int
    max_batch: int
    #: input name → shape at batch 1 (the batch dim replaced per specialization)
    base_shapes: dict[str, tuple[int, ...]]
    #: inputs whose axis 0 is the batch
    batched: tuple[str, ...]

    def shapes_for(self, batch: int) -> dict[str, tuple[int, ...]]:
        return {
            name: (batch, *shape[1:]) if name in self.batched else shape
            for name, shape in self.base_shapes.items()
        }

    def specializations(self) -> list[int]:
        """The batch sizes the builder compiles a plan for."""
        lo, hi = self.min_batch, self.max_batch
        if hi - lo + 1 <= MAX_SPECIALIZATIONS:
            return list(range(lo, hi + 1))
        sizes = {lo, self.opt_batch, hi}
        power = 1
        while power < hi:
            if power > lo:
                sizes.add(power)
            power *= 2
        return sorted(sizes)

    def to_json(self) -> dict[str, Any]:
        return {
            "min_batch": self.min_batch,
            "opt_batch": self.opt_batch,
            "max_batch": self.max_batch,
            "base_shapes": {k: list(v) for k, v in self.base_shapes.items()},
            "batched": list(self.batched),
            "specializations": self.specializations(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Profile:
        return cls(
            int(data["min_batch"]),
            int(data["opt_batch"]),
            int(data["max_batch"]),
            {k: tuple(v) for k, v in data["base_shapes"].items()},
            tuple(data["batched"]),
        )


def parse_shapes(text: str | None) -> dict[str, tuple[int, ...]]:
    """Parse trtexec-style ``name:1x3x224x224,other:1x10`` (names may contain ':')."""
    result: dict[str, tuple[int, ...]] = {}
    if not text:
        return result
    items = [item.strip() for item in text.split(",")]
    for i, item in enumerate(items):
        name, sep, dims = item.rpartition(":")
        if not sep and item.isdigit() and i > 0 and ":" in items[i - 1]:
            # "images:1,3,640,640": commas are the separators of inputs, not of dims
            start = next(j for j in range(i - 1, -1, -1) if ":" in items[j])
            run = [items[start]] + [d for d in items[start + 1 :] if d.isdigit()]
            head, _, first = run[0].rpartition(":")
            raise BuildError(
                f"bad shape '{','.join(run)}': dims are separated by 'x' (commas "
                f"separate inputs): write {head}:{'x'.join([first, *run[1:]])}"
            )
        if not sep or not name:
            raise BuildError(f"bad shape '{item}': expected NAME:DxDxD, e.g. images:1x3x640x640")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            raise BuildError(
                f"bad shape '{item}': dims must be integers separated by 'x'"
            ) from None
        if any(d <= 0 for d in shape):
            raise BuildError(f"bad shape '{item}': every dim must be ≥ 1")
        result[name] = shape
    return result


def _check_names(graph: Graph, *maps: ShapeMap | None) -> None:
    """A shape given for a name that is not an input is a typo, not something to ignore."""
    inputs = {v.name: v.shape for v in graph.inputs}
    flags = (
        "shapes (--shapes)",
        "min_shapes (--min-shapes)",
        "opt_shapes (--opt-shapes)",
        "max_shapes (--max-shapes)",
    )
    unknown = [
        (flag, name) for flag, m in zip(flags, maps) for name in (m or {}) if name not in inputs
    ]
    if unknown:
        listed = ", ".join(f"{n} {list(s)}" for n, s in inputs.items())
        given = ", ".join(f"{flag} {name!r}" for flag, name in unknown)
        raise BuildError(f"{given}: not an input of the model; its inputs: {listed}")


def make_profile(
    graph: Graph,
    shapes: ShapeMap | None = None,
    min_shapes: ShapeMap | None = None,
    opt_shapes: ShapeMap | None = None,
    max_shapes: ShapeMap | None = None,
) -> Profile:
    """The profile for ``graph`` from trtexec-style options (see the module docstring)."""
    _check_names(graph, shapes, min_shapes, opt_shapes, max_shapes)
    ranged = [m for m in (min_shapes, opt_shapes, max_shapes) if m]
    if ranged and len(ranged) != 3:
        raise BuildError("give --min-shapes, --opt-shapes and --max-shapes together")
    if ranged and shapes:
        raise BuildError("give either --shapes or --min/--opt/--max-shapes, not both")
    lo: dict[str, tuple[int, ...]] = {}
    opt: dict[str, tuple[int, ...]] = {}
    hi: dict[str, tuple[int, ...]] = {}
    for value in graph.inputs:
        declared = value.shape
        if ranged:
            picks = [m.get(value.name) for m in (min_shapes, opt_shapes, max_shapes)]  # type: ignore[union-attr]
            if any(p is None for p in picks) and not all(p is None for p in picks):
                raise BuildError(f"input '{value.name}' must appear in all of min/opt/max shapes")
        else:
            given = (shapes or {}).get(value.name)
            picks = [given, given, given]
        if picks[0] is None:
            if all(isinstance(d, int) for d in declared):
                picks = [tuple(declared)] * 3  # type: ignore[list-item]
            elif all(isinstance(d, int) for d in declared[1:]):
                one = (1, *declared[1:])
                picks = [one, one, one]  # default: the symbolic batch bound to 1
            else:
                raise BuildError(
                    f"input '{value.name}' has dynamic dims {list(declared)}; fix them with "
                    f"--shapes {value.name}:{shape_example(declared)}"
                )
        a, b, c = (tuple(int(d) for d in p) for p in picks)  # type: ignore[union-attr]
        if not (len(a) == len(b) == len(c) == len(declared)):
            raise BuildError(
                f"input '{value.name}': rank of given shapes does not match the "
                f"model's {list(declared)}"
            )
        if a[1:] != c[1:] or b[1:] != c[1:]:
            raise BuildError(
                f"input '{value.name}': only the batch dimension (axis 0) may differ between "
                f"min {list(a)}, opt {list(b)} and max {list(c)}"
            )
        if a and not a[0] <= b[0] <= c[0]:
            raise BuildError(
                f"input '{value.name}': need min ≤ opt ≤ max batch, got {a[0]}, {b[0]}, {c[0]}"
            )
        lo[value.name], opt[value.name], hi[value.name] = a, b, c
    batched = tuple(
        v.name
        for v in graph.inputs
        if v.shape and (isinstance(v.shape[0], str) or lo[v.name][0] != hi[v.name][0])
    )
    batches = {(lo[n][0], opt[n][0], hi[n][0]) for n in batched}
    if len(batches) > 1:
        raise BuildError(f"batched inputs disagree on the batch range: {sorted(batches)}")
    if batches:
        min_b, opt_b, max_b = batches.pop()
    else:  # nothing varies: the "batch" of the engine is the first input's leading dim
        lead = next((s[0] for s in lo.values() if len(s) >= 1), 1)
        min_b = opt_b = max_b = lead
    base = {n: (1, *s[1:]) if n in batched else s for n, s in lo.items()}
    return Profile(min_b, opt_b, max_b, base, batched)
