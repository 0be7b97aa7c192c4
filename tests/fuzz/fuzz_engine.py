"""Fuzz an engine's header and plan JSON: load, create_context and execute may raise only
edge_infer's own errors (issue 17, item 1).

Each input edits a valid engine: 1-4 edits, each replacing, deleting or duplicating one value
anywhere in the header or in a plan with something a fuzzer likes (extreme ints, floats,
dtype and op strings, deep nesting, wrong types). The file is then written with a valid
checksum, so every edit reaches the checks after it. Anything but an EdgeInferError is a
finding: atheris stops and prints the input. Run::

    .venv/bin/python tests/fuzz/fuzz_engine.py -runs=2000 -seed=1

``tests/fuzz/test_fuzz_engine.py`` runs it for a bounded number of inputs in CI.
"""

from __future__ import annotations

import copy
import json
import sys
import zlib
from typing import Any

import atheris

with atheris.instrument_imports(include=["edge_infer"]):
    import numpy as np

    from edge_infer.engine.builder import PLANS_BLOB, build
    from edge_infer.engine.network import Network
    from edge_infer.engine.runtime import Engine
    from edge_infer.engine.serialize import dumps_engine, loads_engine
    from edge_infer.errors import EdgeInferError

#: values an edit may put anywhere: the ones that broke loaders before, and near misses
STRINGS = ["O", "V99999999999", "(i4,", "float32", "float16", "int8", "bool", "<U0", "f8]]",
           "Conv", "FusedConv", "Pointwise", "Reformat", "NoSuchOp", "edge_infer", "", "x",
           "y", "relu", "swoosh", "winograd_native", "im2col_gemm", "parallel", "plans.json.zlib",
           "1", "-1", "nan", "1e999"]  # fmt: skip
INTS = [0, 1, 2, 3, -1, -(2**31), 2**31, 2**63, 2**64, 10**30, 65, 4096]


def seed_engine() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, bytes]]:
    """Header, plans, tensors and blobs of a small engine: Conv+Relu, Conv (2 groups), a
    pointwise chain, batch 1..2."""
    net = Network("fuzz")
    x = net.add_input("x", ("N", 4, 6, 6))
    h = net.add_activation(net.add_convolution(x, 4, 3, padding=1, name="c1"), "relu")
    h = net.add_convolution(h, 4, 1, groups=2, name="c2")
    h = net.add_elementwise(h, net.add_activation(h, "sigmoid"), "prod")
    net.mark_output(h, "y")
    small, large = {"x": (1, 4, 6, 6)}, {"x": (2, 4, 6, 6)}
    engine = build(net, min_shapes=small, opt_shapes=small, max_shapes=large)
    plans = json.loads(zlib.decompress(engine.blobs[PLANS_BLOB]))
    return engine.header, plans, dict(engine.tensors), engine.blobs


HEADER, PLANS, TENSORS, BLOBS = seed_engine()
FEEDS = {"x": np.ones((1, 4, 6, 6), np.float32)}


def slots(doc: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) in ``doc``, in a fixed order."""
    found: list[tuple[Any, Any]] = []
    stack = [doc]
    while stack:
        item = stack.pop()
        keys = list(item) if isinstance(item, dict) else range(len(item))
        for key in keys:
            found.append((item, key))
            if isinstance(item[key], dict | list):
                stack.append(item[key])
    return found


def fuzzed_value(fdp: atheris.FuzzedDataProvider, doc: Any) -> Any:
    kind = fdp.ConsumeIntInRange(0, 9)
    if kind == 0:
        return fdp.PickValueInList(INTS)
    if kind == 1:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 9))
    if kind == 2:
        return fdp.ConsumeFloat()
    if kind == 3:
        return fdp.PickValueInList(STRINGS)
    if kind == 4:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 12))
    if kind == 5:
        return fdp.PickValueInList([None, True, False, [], {}, [[]], {"": None}])
    if kind == 6:
        depth = fdp.ConsumeIntInRange(1, 3000)
        return json.loads("[" * depth + "]" * depth) if depth < 900 else [0] * depth
    if kind == 7:  # another part of the document
        pool = slots(doc)
        holder, key = pool[fdp.ConsumeIntInRange(0, len(pool) - 1)]
        return copy.deepcopy(holder[key])
    if kind == 8:
        return [fdp.PickValueInList(INTS) for _ in range(fdp.ConsumeIntInRange(0, 5))]
    return {"__tensor__": fdp.PickValueInList(STRINGS + list(TENSORS))}


def edit(doc: dict[str, Any], fdp: atheris.FuzzedDataProvider) -> None:
    pool = slots(doc)
    holder, key = pool[fdp.ConsumeIntInRange(0, len(pool) - 1)]
    if holder is doc:
        return  # the two halves themselves stay (their contents do not)
    if fdp.ConsumeIntInRange(0, 7) == 0:
        del holder[key]
    else:
        holder[key] = fuzzed_value(fdp, doc)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    doc = {"header": copy.deepcopy(HEADER), "plans": copy.deepcopy(PLANS)}
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        edit(doc, fdp)
    try:
        plans = json.dumps(doc["plans"]).encode()
    except (ValueError, RecursionError):
        return  # not JSON: no writer could have stored it
    blobs = {**BLOBS, PLANS_BLOB: zlib.compress(plans)}
    try:
        raw = dumps_engine(doc["header"], TENSORS, blobs)
        f = loads_engine(raw)
        engine = Engine(f.header, f.tensors, f.blobs)
        engine.check_compatible()
        engine.validate()
        with engine.create_context() as ctx:
            ctx.execute(FEEDS)
    except EdgeInferError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
