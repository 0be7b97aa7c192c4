"""An engine's header and plans are checked at load: a crafted or buggy plan is refused with
EngineFileError before anything compiles or runs it (issue 17, item 1)."""

from __future__ import annotations

import copy
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edge_infer
from edge_infer.engine.builder import PLANS_BLOB
from edge_infer.engine.network import Network
from edge_infer.engine.runtime import Engine
from edge_infer.engine.serialize import read_engine, write_engine
from edge_infer.errors import EngineFileError

Edit = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def engine_path(tmp_path_factory) -> Path:
    """x[N,4,8,8] -> Conv 3x3 + Relu (one FusedConv with a tactic) -> y, batch 1..2."""
    net = Network("t")
    x = net.add_input("x", ("N", 4, 8, 8))
    y = net.add_activation(net.add_convolution(x, 4, 3, padding=1, name="conv"), "relu")
    net.mark_output(y, "y")
    path = tmp_path_factory.mktemp("plan") / "t.engine"
    shapes = {"x": (1, 4, 8, 8)}, {"x": (2, 4, 8, 8)}
    edge_infer.build(net, path, min_shapes=shapes[0], opt_shapes=shapes[0], max_shapes=shapes[1])
    return path


def rewrite(
    src: Path, dest: Path, header_edit: Edit | None = None, plan_edit: Edit | None = None
) -> Path:
    """Copy the engine with its header and/or every plan edited (a valid checksum)."""
    f = read_engine(src, mmap=False)
    header = copy.deepcopy(f.header)
    blobs = dict(f.blobs)
    if plan_edit is not None:
        plans = json.loads(zlib.decompress(blobs[PLANS_BLOB]))
        for plan in plans.values():
            plan_edit(plan)
        blobs[PLANS_BLOB] = zlib.compress(json.dumps(plans).encode())
    if header_edit is not None:
        header_edit(header)
    write_engine(dest, header, f.tensors, blobs)
    return dest


def node(plan: dict[str, Any], op: str = "FusedConv") -> dict[str, Any]:
    return next(n for n in plan["nodes"] if n["op"] == op)


PLAN_EDITS: dict[str, tuple[Edit, str]] = {
    "group": (lambda p: node(p)["attrs"].update(group=3), "group"),
    "tactic": (lambda p: node(p)["meta"].update(tactic="fastest_ever"), "unknown tactic"),
    "activation": (lambda p: node(p)["attrs"].update(activation="swoosh"), "swoosh"),
    "dtype": (lambda p: p["values"]["x"].update(dtype="float32]]"), "dtype"),
    "object dtype": (lambda p: p["values"]["relu_out"].update(dtype="O"), "dtype"),
    "shape": (lambda p: p["values"]["relu_out"]["shape"].__setitem__(1, 5), "stored as"),
    "input shape": (lambda p: p["values"]["x"]["shape"].__setitem__(3, 9), "binding is"),
    "weights": (lambda p: p["values"]["conv_W"]["shape"].__setitem__(0, 8), "constant"),
    "op": (lambda p: node(p).update(op="NoSuchOp"), "NoSuchOp"),
    "input": (lambda p: node(p)["inputs"].__setitem__(0, "nowhere"), "name values"),
    "schedule": (lambda p: p["meta"].update(schedule="sideways"), "schedule"),
    "workers": (lambda p: p["meta"].update(branch_workers="two"), "branch_workers"),
    "chains": (lambda p: p["meta"].update(chains="all"), "chains must be a list"),
    "chain members": (
        lambda p: p["meta"].update(chains=[{"members": ["conv", "ghost"], "tactic": "x"}]),
        "must name 2 or 3 layers",
    ),
    "nested": (
        lambda p: node(p)["attrs"].update(deep=json.loads("[" * 900 + "]" * 900)),
        "engine plan",
    ),
}


@pytest.mark.parametrize("case", sorted(PLAN_EDITS))
def test_a_bad_plan_is_refused_at_load(engine_path, tmp_path, case) -> None:
    edit, message = PLAN_EDITS[case]
    bad = rewrite(engine_path, tmp_path / "bad.engine", plan_edit=edit)
    with pytest.raises(EngineFileError, match=message):
        Engine.load(bad)


def test_an_output_shape_its_inputs_do_not_give_is_refused(engine_path, tmp_path) -> None:
    def header(h: dict[str, Any]) -> None:
        h["bindings"]["outputs"][0]["shape"][1] = 5

    def plan(p: dict[str, Any]) -> None:
        p["values"]["relu_out"]["shape"][1] = 5

    bad = rewrite(engine_path, tmp_path / "bad.engine", header, plan)
    with pytest.raises(EngineFileError, match=r"stored as float32\[1x5x8x8\] but its inputs"):
        Engine.load(bad)


def test_the_good_plan_loads_and_runs(engine_path) -> None:
    engine = Engine.load(engine_path)
    with engine.create_context() as ctx:
        out = ctx.execute({"x": np.ones((2, 4, 8, 8), np.float32)})["y"]
    assert out.shape == (2, 4, 8, 8) and np.all(out >= 0)


def _bindings(h: dict[str, Any]) -> dict[str, Any]:
    return h["bindings"]["inputs"][0]


HEADER_EDITS: dict[str, Edit] = {
    "negative batch": lambda h: h["profile"].update(min_batch=-3),
    "min above max": lambda h: h["profile"].update(min_batch=5),
    "float batch": lambda h: h["profile"].update(max_batch=2.0),
    "huge batch": lambda h: h["profile"].update(max_batch=10**30),
    "object binding": lambda h: _bindings(h).update(dtype="O"),
    "void binding": lambda h: _bindings(h).update(dtype="V16"),
    "huge void binding": lambda h: _bindings(h).update(dtype="V99999999999"),
    "dtype syntax": lambda h: _bindings(h).update(dtype="(i4,"),
    "binding shape": lambda h: _bindings(h).update(shape=[-1, 4, 8, 9]),
    "binding shape text": lambda h: _bindings(h).update(shape="1x4"),
    "binding name": lambda h: _bindings(h).update(name=["x"]),
    "batched text": lambda h: _bindings(h).update(batched="yes"),
    "no outputs": lambda h: h["bindings"].update(outputs=[]),
    "bindings list": lambda h: h.update(bindings=[1]),
    "backend list": lambda h: h["build"].update(backend=["cpu"]),
    "base shapes": lambda h: h["profile"].update(base_shapes={"x": [1, -4]}),
    "batched unknown": lambda h: h["profile"].update(batched=["z"]),
    "plans list": lambda h: h.update(plans=[]),
    "plan blob name": lambda h: h["plans"].update(blob=["x"]),
    "plans missing": lambda h: h["plans"].update(blob="elsewhere"),
    "max batch unplanned": lambda h: h["profile"].update(max_batch=3),
}


@pytest.mark.parametrize("case", sorted(HEADER_EDITS))
def test_a_bad_header_is_refused_at_load(engine_path, tmp_path, case) -> None:
    bad = rewrite(engine_path, tmp_path / "bad.engine", header_edit=HEADER_EDITS[case])
    with pytest.raises(EngineFileError):
        Engine.load(bad)


def test_plans_that_are_not_an_object_are_refused(engine_path, tmp_path) -> None:
    def edit(h: dict[str, Any]) -> None:
        h["plans"] = {"1": [], "2": "plan"}

    bad = rewrite(engine_path, tmp_path / "bad.engine", header_edit=edit)
    with pytest.raises(EngineFileError):
        Engine.load(bad)


def test_an_engine_made_in_memory_is_checked_before_its_first_context(engine_path) -> None:
    f = read_engine(engine_path, mmap=False)
    plans = json.loads(zlib.decompress(f.blobs[PLANS_BLOB]))
    node(plans["1"])["attrs"]["group"] = 3
    blobs = {**f.blobs, PLANS_BLOB: zlib.compress(json.dumps(plans).encode())}
    engine = Engine(f.header, f.tensors, blobs)
    with pytest.raises(EngineFileError, match="group"):
        engine.create_context()
