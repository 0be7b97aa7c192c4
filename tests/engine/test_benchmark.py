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
