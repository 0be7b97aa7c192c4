"""Whole models from the zoo, built with edge_infer and compared with onnxruntime (issue 6).

GoogLeNet (inception v1), ResNet-50, MobileNetV2 and YOLOv8n (the ultralytics
``dynamic=True`` export, at 320×320 and 640×640) are built with the optimizer on and run at
several batch sizes of their profile. Each output must match onnxruntime within
``max |ours - ort| ≤ 1e-4 · max |ort|`` in FP32; YOLOv8n's ``output0`` is checked as two
tensors, boxes (rows 0–3, pixels) and class scores (rows 4+, 0–1), each against its own scale.

Engines are built once per module (``tune=False`` keeps builds fast); one YOLOv8n-320 case is
tuned, so the plan runs the tactics and the branch schedule the timing picked. The file takes
about 75 s of CPU time (2 cores; most of it the first run of each plan and the tuned build).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

import edge_infer
from edge_infer.engine import profiles
from edge_infer.engine.backends.cpu.program import CpuProgram
from edge_infer.zoo import build_model

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

#: FP32 tolerance: max abs error relative to the output's scale (max abs of the reference)
REL_TOL = 1e-4

#: ops that an optimized plan must not run on their own: BatchNorm folds into the conv,
#: activations and residual adds fuse into it, and shape subgraphs fold to constants.
ABSORBED_OPS = frozenset(
    {
        "BatchNormalization",
        "Relu",
        "Clip",
        "Dropout",
        "Identity",
        "Shape",
        "Gather",
        "Unsqueeze",
        "Cast",
        "Range",
        "Expand",
        "ConstantOfShape",
    }
)

#: ops that may survive as layers of their own: an optimized plan has at most one layer per
#: such node of the model (horizontal fusion and concat elimination only lower the count).
STRUCTURAL_OPS = frozenset(
    {
        "Conv",
        "Gemm",
        "MatMul",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "LRN",
        "Softmax",
        "Resize",
        "Concat",
        "Split",
        "Flatten",
        "Reshape",
        "Transpose",
    }
)


@dataclass(frozen=True)
class Case:
    """One whole-model build: zoo model, input size, profile and the batches run."""

    model: str
    size: int
    profile: tuple[int, int, int]  # min / opt / max batch
    batches: tuple[int, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    tune: bool = False
    #: lower the profile's specialization limit so some batch sizes run padded
    max_specializations: int | None = None

    @property
    def input_name(self) -> str:
        return "images" if self.model == "yolov8n" else "input"


CASES: dict[str, Case] = {
    "googlenet": Case("googlenet", 224, (1, 2, 2), (1, 2), {"batch": None}),
    "resnet50": Case("resnet50", 224, (1, 2, 2), (1, 2), {"batch": None}),
    # plans for 1, 2 and 4 only: batch 3 runs on the batch-4 plan, zero-padded
    "mobilenetv2": Case(
        "mobilenetv2", 224, (1, 2, 4), (1, 3, 4), {"batch": None}, max_specializations=2
    ),
    # ultralytics folds BatchNorm into the convs before exporting
    "yolov8n-320": Case(
        "yolov8n", 320, (1, 2, 4), (1, 3, 4), {"batch": None, "imgsz": 320, "fold_bn": True}
    ),
    "yolov8n-640": Case(
        "yolov8n", 640, (1, 1, 1), (1,), {"batch": None, "imgsz": 640, "fold_bn": True}
    ),
    # tuned: every candidate tactic is timed and the branch schedule is picked by timing;
    # BatchNorm left in the graph so the builder's own BN folding runs on a detector too
    "yolov8n-320-tuned": Case(
        "yolov8n", 320, (1, 1, 1), (1,), {"batch": None, "imgsz": 320, "fold_bn": False}, tune=True
    ),
}

#: cases also built with optimize=False (YOLOv8n-640 left out to keep the file fast)
UNOPTIMIZED = ["googlenet", "resnet50", "mobilenetv2", "yolov8n-320"]


class Built:
    """A case's model, engine and onnxruntime session, with memoized runs per batch size."""

    def __init__(self, name: str, case: Case, workdir: Path) -> None:
        self.name, self.case = name, case
        self.model = build_model(case.model, seed=0, **case.kwargs)
        self.timing_cache = str(workdir / "timing.cache") if case.tune else None
        self.path = workdir / f"{name}.engine"
        lo, opt, hi = case.profile
        with pytest.MonkeyPatch.context() as mp:
            if case.max_specializations is not None:
                mp.setattr(profiles, "MAX_SPECIALIZATIONS", case.max_specializations)
            self.engine = edge_infer.build(
                self.model,
                self.path,
                min_shapes={case.input_name: self.shape(lo)},
                opt_shapes={case.input_name: self.shape(opt)},
                max_shapes={case.input_name: self.shape(hi)},
                tune=case.tune,
                timing_cache=self.timing_cache,
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        opts.inter_op_num_threads = 1
        # the graph exactly as exported: onnxruntime's own fusions stay out of the oracle
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self.session = ort.InferenceSession(
            self.model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        self.context = self.engine.create_context()
        self._inputs: dict[int, np.ndarray] = {}
        self._expected: dict[int, dict[str, np.ndarray]] = {}
        self._actual: dict[int, dict[str, np.ndarray]] = {}

    def shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, 3, self.case.size, self.case.size)

    def inputs(self, batch: int) -> dict[str, np.ndarray]:
        if batch not in self._inputs:
            rng = np.random.default_rng(1000 + batch)
            if self.case.model == "yolov8n":  # pixels scaled to 0..1, as the detector expects
                x = rng.uniform(0.0, 1.0, self.shape(batch))
            else:
                x = rng.standard_normal(self.shape(batch))
            self._inputs[batch] = x.astype(np.float32)
        return {self.case.input_name: self._inputs[batch]}

    def expected(self, batch: int) -> dict[str, np.ndarray]:
        if batch not in self._expected:
            names = [o.name for o in self.session.get_outputs()]
            values = self.session.run(names, self.inputs(batch))
            self._expected[batch] = dict(zip(names, values, strict=True))
        return self._expected[batch]

    def actual(self, batch: int) -> dict[str, np.ndarray]:
        if batch not in self._actual:
            self._actual[batch] = self.context.execute(self.inputs(batch))
        return self._actual[batch]


@pytest.fixture(scope="module")
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The built case named by the (indirect) parameter; pytest groups tests per case."""
    name = request.param
    return Built(name, CASES[name], tmp_path_factory.mktemp(name))


def parts(model: str, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The tensors compared, each against its own scale: YOLO boxes and scores apart."""
    if model != "yolov8n":
        return outputs
    y = outputs["output0"]
    return {"boxes": y[:, :4], "scores": y[:, 4:]}


def assert_close(
    actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], where: str
) -> None:
    assert sorted(actual) == sorted(expected), where
    for name, want in expected.items():
        got = actual[name]
        assert got.shape == want.shape, f"{where} {name}: shape {got.shape} != {want.shape}"
        assert got.dtype == np.float32, f"{where} {name}: dtype {got.dtype}"
        assert np.isfinite(got).all(), f"{where} {name}: non-finite values"
        scale = float(np.abs(want).max())
        assert scale > 0.0, f"{where} {name}: the reference is all zeros"
        err = float(np.abs(got - want).max()) / scale
        assert err <= REL_TOL, (
            f"{where} {name}: max abs error {err:.3g} × scale {scale:.3g} exceeds {REL_TOL:g}"
        )


@pytest.mark.parametrize("built", list(CASES), indirect=True)
def test_matches_onnxruntime_at_each_batch(built: Built) -> None:
    case = built.case
    for batch in case.batches:
        actual, expected = built.actual(batch), built.expected(batch)
        if case.model == "yolov8n":
            anchors = sum((case.size // s) ** 2 for s in (8, 16, 32))
            assert expected["output0"].shape == (batch, 84, anchors)
        assert_close(
            parts(case.model, actual), parts(case.model, expected), f"{built.name} batch {batch}"
        )


@pytest.mark.parametrize("built", list(CASES), indirect=True)
def test_plan_is_much_smaller_than_the_model(built: Built) -> None:
    ops = Counter(node.op_type for node in built.model.graph.node)
    record = built.engine.build_record
    assert record["original_layers"] == sum(ops.values())
    for batch in built.engine.batch_sizes:
        plan = Counter(node.op_type for node in built.engine.graph(batch).nodes)
        final = sum(plan.values())
        left = sorted(op for op in plan if op in ABSORBED_OPS)
        assert not left, f"{built.name} plan for batch {batch} still runs {left}"
        assert plan["FusedConv"] > 0, f"{built.name}: no convolution was fused"
        bound = sum(n for op, n in ops.items() if op in STRUCTURAL_OPS)
        assert final <= bound, f"{built.name}: {final} layers, more than {bound} {plan}"
        assert final <= 0.6 * record["original_layers"], (
            f"{built.name}: {record['original_layers']} layers → {final}, expected ≤ 60%"
        )


@pytest.mark.parametrize("built", UNOPTIMIZED, indirect=True)
def test_unoptimized_build_gives_the_same_numbers(built: Built) -> None:
    shape = {built.case.input_name: built.shape(1)}
    plain = edge_infer.build(built.model, shapes=shape, optimize=False, tune=False)
    assert len(plain.graph(1).nodes) > len(built.engine.graph(1).nodes)
    outputs = plain.create_context().execute(built.inputs(1))
    model = built.case.model
    assert_close(
        parts(model, outputs),
        parts(model, built.expected(1)),
        f"{built.name} unoptimized vs onnxruntime",
    )
    assert_close(
        parts(model, outputs),
        parts(model, built.actual(1)),
        f"{built.name} unoptimized vs optimized",
    )


@pytest.mark.parametrize("built", ["mobilenetv2"], indirect=True)
def test_batch_between_plans_runs_padded(built: Built) -> None:
    engine = built.engine
    assert engine.batch_sizes == [1, 2, 4]
    assert engine.plan_batch_for(3) == 4
    y3 = built.actual(3)["output"]
    assert y3.shape == (3, 1000)
    # the zero rows padded in must not leak into the real ones: each image of the batch of 3
    # gives what it gives run alone at batch 1
    x = built.inputs(3)["input"]
    for i in range(3):
        one = built.context.execute({"input": x[i : i + 1]})["output"]
        assert float(np.abs(one[0] - y3[i]).max()) <= REL_TOL * float(np.abs(y3[i]).max())


@pytest.mark.parametrize("built", ["yolov8n-320-tuned"], indirect=True)
def test_tuned_plan_records_timed_tactics(built: Built) -> None:
    graph = built.engine.graph(1)
    convs = [n for n in graph.nodes if n.op_type == "FusedConv"]
    assert convs and all(n.meta.get("tactic") for n in convs)
    timed = [n for n in convs if len(n.meta.get("tactic_times_us", {})) >= 2]
    assert timed, "no layer timed two or more candidate tactics"
    for node in timed:
        times = node.meta["tactic_times_us"]
        assert node.meta["tactic"] == min(times, key=times.__getitem__), node.name
        assert node.meta["time_us"] == times[node.meta["tactic"]]
    assert graph.meta["schedule"] in ("sequential", "parallel")
    # YOLOv8n's head has independent box and class branches: the schedule was timed
    assert set(graph.meta.get("schedule_times_us", {})) == {"sequential", "parallel"}


@pytest.mark.parametrize("built", ["yolov8n-320-tuned"], indirect=True)
def test_tuned_plan_gives_the_same_numbers_under_both_schedules(built: Built) -> None:
    feeds, expected = built.inputs(1), parts("yolov8n", built.expected(1))
    for schedule in ("sequential", "parallel"):
        program = CpuProgram(built.engine.graph(1), schedule)
        state = program.new_state()
        try:
            outputs = program.run(state, feeds)
        finally:
            state.close()
        assert_close(parts("yolov8n", outputs), expected, f"tuned, {schedule} schedule")


@pytest.mark.parametrize("built", ["yolov8n-320-tuned"], indirect=True)
def test_rebuild_with_the_timing_cache_picks_the_same_tactics(
    built: Built, caplog: pytest.LogCaptureFixture
) -> None:
    assert built.timing_cache is not None and Path(built.timing_cache).is_file()
    with caplog.at_level(logging.INFO, logger="edge_infer.engine.builder"):
        again = edge_infer.build(
            built.model,
            shapes={"images": built.shape(1)},
            tune=True,
            timing_cache=built.timing_cache,
        )
    message = next(r.getMessage() for r in caplog.records if "timing cache" in r.getMessage())
    assert message.endswith(" 0 misses"), message
    first = {n.name: n.meta.get("tactic") for n in built.engine.graph(1).nodes}
    second = {n.name: n.meta.get("tactic") for n in again.graph(1).nodes}
    assert second == first


@pytest.mark.parametrize("built", ["yolov8n-320"], indirect=True)
def test_cli_infer_on_the_engine_file_in_a_fresh_process(built: Built, tmp_path: Path) -> None:
    # `edge-infer infer` loads the saved file in a new process: the round trip through the
    # engine file and the console script give the numbers of the engine that wrote it
    x = built.inputs(1)["images"]
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-m",
        "edge_infer",
        "infer",
        str(built.path),
        "--input",
        "images=x.npy",
        "--output-dir",
        "out",
    ]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    y = np.load(tmp_path / "out" / "output0.npy")
    assert_close(
        parts("yolov8n", {"output0": y}),
        parts("yolov8n", built.expected(1)),
        "edge-infer infer vs onnxruntime",
    )
    # same plan, same kernels: the fresh process agrees with the building one to rounding
    same = parts("yolov8n", built.actual(1))
    for name, got in parts("yolov8n", {"output0": y}).items():
        scale = float(np.abs(same[name]).max())
        assert float(np.abs(got - same[name]).max()) <= 1e-6 * scale, name
