"""bench's comparison harness: its temporary folder is removed, a noisy run is flagged."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_infer.engine import benchmark


def _fake_runs(medians: dict[str, list[float]], seen: list[Path]):
    counters = {k: 0 for k in medians}

    def run(spec: dict[str, Any]) -> dict[str, Any]:
        kind = spec["kind"]
        seen.append(Path(spec["inputs"]).parent)
        m = medians[kind][counters[kind]]
        counters[kind] += 1
        np.savez(spec["outputs"], y=np.ones(3, np.float32))
        stats = {
            "median_ms": m,
            "p90_ms": m,
            "p99_ms": m,
            "mean_ms": m,
            "samples": 3,
            "batch": 1,
            "throughput": 1e3 / m,
        }
        return {"stats": stats, "env": {"libraries": []}}

    return run


@pytest.mark.parametrize(
    ("ours", "warned"), [([10.0, 10.5, 11.0], False), ([10.0, 14.0, 10.2], True)]
)
def test_compare_cleans_up_and_flags_spread(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ours: list[float], warned: bool
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen: list[Path] = []
    monkeypatch.setattr(
        benchmark,
        "run_in_subprocess",
        _fake_runs({"edge_infer": ours, "onnxruntime": [9.0, 9.1, 9.2]}, seen),
    )
    report = benchmark.compare(
        "e.engine",
        "m.onnx",
        {"x": np.zeros(2, np.float32)},
        batch=1,
        threads=1,
        iterations=3,
        warmup=1,
        processes=3,
    )
    assert seen and all(p.parent == tmp_path for p in seen)
    assert list(tmp_path.iterdir()) == []  # the work folder is gone
    warnings = report.get("warnings", [])
    assert bool(warnings) == warned
    if warned:
        assert "edge_infer: per-process medians spread 40%" in warnings[0]
    assert report["ratio"] == pytest.approx(report["edge_infer"]["median_ms"] / 9.1)


def test_compare_removes_its_folder_when_a_worker_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def boom(spec: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("benchmark worker failed")

    monkeypatch.setattr(benchmark, "run_in_subprocess", boom)
    with pytest.raises(RuntimeError):
        benchmark.compare(
            "e.engine",
            None,
            {"x": np.zeros(2, np.float32)},
            batch=1,
            threads=1,
            iterations=3,
            warmup=1,
            processes=1,
        )
    assert list(tmp_path.iterdir()) == []


def _small_pair(tmp_path: Path) -> tuple[str, str]:
    """A small model's ONNX file and its engine (batch 2), on disk."""
    import onnx

    import edge_infer
    from tests.engine.conftest import small_model

    model = tmp_path / "small.onnx"
    onnx.save(small_model(), model)
    engine = tmp_path / "small.engine"
    edge_infer.build(str(model), str(engine), shapes={"x": (2, 3, 8, 8)}, tune=False)
    return str(engine), str(model)


def test_compare_paired_takes_turns_in_resident_processes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Both sides time every round (the rounds' ratios are theirs), the outputs agree, and
    the work folder is gone afterwards; two engines of ours pair the same way."""
    engine, model = _small_pair(tmp_path)
    work = tmp_path / "tmp"
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(work))
    monkeypatch.setattr(benchmark, "PAIRED_PAUSE_S", 0.0)
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    report = benchmark.compare_paired(
        ("edge_infer", engine), ("onnxruntime", model), {"x": x},
        batch=2, threads=1, rounds=3, runs=4, warmup=1, pairs=2,
    )  # fmt: skip
    assert len(report["round_ratios"]) == 3 and len(report["pair_ratios"]) == 2
    medians = report["round_medians_ms"]
    assert [len(medians[r]) for r in ("first", "second")] == [3, 3]
    for k, ratio in enumerate(report["round_ratios"]):  # each round's ratio is its medians'
        assert ratio == pytest.approx(medians["first"][k] / medians["second"][k])
    quiet = benchmark.quiet_rounds(medians["first"], medians["second"])
    assert report["quiet_rounds"] == len(quiet) >= 1  # (the fastest turns are quiet)
    assert report["quiet_ratio"] == pytest.approx(
        float(np.median([report["round_ratios"][k] for k in quiet]))
    )
    assert report["ratio"] == pytest.approx(float(np.median(report["round_ratios"])))
    assert report["ratio_p10"] <= report["ratio"] <= report["ratio_p90"]
    for role, kind in (("first", "edge_infer"), ("second", "onnxruntime")):
        assert report[role]["kind"] == kind
        assert report[role]["iterations"] == 12 and report[role]["median_ms"] > 0
    assert report["max_rel_diff"]["y"] < 1e-5
    assert report["env"]["threads"] == 1
    assert list(work.iterdir()) == []
    same = benchmark.compare_paired(
        ("edge_infer", engine), ("edge_infer", engine), {"x": x},
        batch=2, threads=1, rounds=2, runs=2, warmup=0,
    )  # fmt: skip
    assert same["max_abs_diff"]["y"] == 0.0 and len(same["round_ratios"]) == 2
    assert list(work.iterdir()) == []


def test_compare_paired_names_a_failed_worker_and_ends_the_other(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A side that cannot load (onnxruntime on a broken model, after ours has started) fails
    the comparison with its worker's error; the work folder is removed and our resident
    process has ended."""
    engine, _ = _small_pair(tmp_path)
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    work = tmp_path / "tmp"
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(work))
    started: list[Any] = []
    real = benchmark._Resident

    class Spy(real):  # type: ignore[misc, valid-type]
        def __init__(self, spec: dict[str, Any], folder: Path) -> None:
            self.spec_kind = spec["kind"]
            started.append(self)
            super().__init__(spec, folder)

    monkeypatch.setattr(benchmark, "_Resident", Spy)
    x = np.zeros((2, 3, 8, 8), np.float32)
    with pytest.raises(RuntimeError, match="benchmark worker failed"):
        benchmark.compare_paired(
            ("edge_infer", engine), ("onnxruntime", str(bad)), {"x": x},
            batch=2, threads=1, rounds=1, runs=1, warmup=0,
        )  # fmt: skip
    assert list(work.iterdir()) == []
    assert [s.spec_kind for s in started] == ["edge_infer", "onnxruntime"]
    assert all(s.proc.poll() is not None for s in started)


@pytest.mark.parametrize(("rounds", "runs"), [(0, 3), (2, 0)])
def test_compare_paired_refuses_no_rounds_or_runs_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, rounds: int, runs: int
) -> None:
    def never(*args: Any) -> None:
        raise AssertionError("a worker was started")

    monkeypatch.setattr(benchmark, "_Resident", never)
    with pytest.raises(ValueError, match="rounds and runs must be at least 1"):
        benchmark.compare_paired(
            ("edge_infer", "e.engine"), ("onnxruntime", "m.onnx"), {"x": np.zeros(2)},
            batch=1, threads=1, rounds=rounds, runs=runs, warmup=0,
        )  # fmt: skip


def test_quiet_rounds_leave_out_the_rounds_a_side_was_slowed_in() -> None:
    """A round is quiet where neither side's turn exceeds QUIET_TURN times its own 10th
    percentile: a host phase that doubles one side's turns (and slows the other's 1.5x) takes
    those rounds out, a side's own steady pace does not."""
    first = [1.0, 1.02, 2.0, 2.1, 0.99, 1.01, 1.0, 2.05, 1.0, 1.03]
    second = [3.0, 3.1, 4.5, 4.6, 3.0, 3.05, 3.1, 4.4, 2.98, 3.0]
    assert benchmark.quiet_rounds(first, second) == [0, 1, 4, 5, 6, 8, 9]
    assert benchmark.quiet_rounds([1.0] * 4, [5.0] * 4) == [0, 1, 2, 3]
    slowed_second_only = [3.0, 3.0, 4.0, 3.0]
    assert benchmark.quiet_rounds([1.0] * 4, slowed_second_only) == [0, 1, 3]
