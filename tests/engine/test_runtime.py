"""Builder → engine file → runtime, and every run-time misuse gets a clear error."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import edge_infer
from edge_infer.engine.runtime import Engine
from edge_infer.engine.serialize import read_engine, write_engine
from edge_infer.errors import (
    BindingError,
    BuildError,
    EngineCompatibilityError,
    EngineFileError,
    UnsupportedOpError,
)
from tests.engine.conftest import assert_fp32_close, small_model, small_model_expected

RNG = np.random.default_rng(7)


def x_of(batch: int) -> np.ndarray:
    return RNG.standard_normal((batch, 3, 8, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def ranged_engine(tmp_path_factory) -> tuple[Engine, str]:
    path = str(tmp_path_factory.mktemp("eng") / "small.engine")
    engine = edge_infer.build(
        small_model(),
        path,
        min_shapes={"x": (1, 3, 8, 8)},
        opt_shapes={"x": (2, 3, 8, 8)},
        max_shapes={"x": (4, 3, 8, 8)},
    )
    return engine, path


def test_build_save_load_execute_matches_onnxruntime(ranged_engine) -> None:
    _, path = ranged_engine
    loaded = Engine.load(path)
    assert loaded.batch_sizes == [1, 2, 3, 4]
    assert [str(b) for b in loaded.inputs] == ["x: float32[Nx3x8x8]"]
    ctx = loaded.create_context()
    for batch in (1, 3, 4):
        x = x_of(batch)
        y = ctx.execute({"x": x})["y"]
        assert_fp32_close(y, small_model_expected(x))


def test_shape_subgraph_is_gone_from_the_plan(ranged_engine) -> None:
    engine, _ = ranged_engine
    ops = [n.op_type for n in engine.graph(2).nodes]
    assert "Shape" not in ops and "Gather" not in ops and "Concat" not in ops
    assert engine.build_record["original_layers"] == 7


def test_round_trip_in_a_fresh_process(ranged_engine, tmp_path) -> None:
    _, path = ranged_engine
    x = x_of(2)
    np.save(tmp_path / "x.npy", x)
    expected = Engine.load(path).create_context().execute({"x": x})["y"]
    code = (
        "import numpy as np, sys; from edge_infer.engine.runtime import Engine;"
        f"e = Engine.load({path!r}); x = np.load({str(tmp_path / 'x.npy')!r});"
        f"np.save({str(tmp_path / 'y.npy')!r}, e.create_context().execute({{'x': x}})['y'])"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)


def test_wrong_inputs_get_clear_errors(ranged_engine) -> None:
    engine, _ = ranged_engine
    ctx = engine.create_context()
    with pytest.raises(BindingError, match=r"unknown \['image'\], missing \['x'\]"):
        ctx.execute({"image": x_of(1)})
    with pytest.raises(BindingError, match="must be float32, got float64"):
        ctx.execute({"x": x_of(1).astype(np.float64)})
    with pytest.raises(BindingError, match=r"shape \['N', 3, 8, 8\], got \[1, 3, 9, 8\]"):
        ctx.execute({"x": np.zeros((1, 3, 9, 8), np.float32)})
    with pytest.raises(BindingError, match=r"batch 5 is outside .*\[1, 4\]"):
        ctx.execute({"x": x_of(5)})
    with pytest.raises(BindingError, match="numpy array"):
        ctx.execute({"x": [[1.0]]})  # type: ignore[dict-item]


def test_contexts_run_concurrently_and_async(ranged_engine) -> None:
    engine, _ = ranged_engine
    inputs = [x_of(2) for _ in range(4)]
    expected = [small_model_expected(x) for x in inputs]
    results: dict[int, np.ndarray] = {}

    def work(k: int) -> None:
        with engine.create_context() as ctx:
            for _ in range(3):
                results[k] = ctx.execute({"x": inputs[k]})["y"]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        assert_fp32_close(results[k], expected[k])
    with engine.create_context() as ctx:
        future = ctx.execute_async({"x": inputs[0]})
        assert_fp32_close(future.result(timeout=30)["y"], expected[0])


def _rewrite(path: str, dest: str, **build_changes) -> str:
    f = read_engine(path, mmap=False)
    header = json.loads(json.dumps(f.header))
    header["build"].update(build_changes)
    write_engine(dest, header, f.tensors, f.blobs)
    return dest


def test_engine_from_another_device_is_refused_with_rebuild_hint(ranged_engine, tmp_path) -> None:
    _, path = ranged_engine
    foreign = _rewrite(
        path,
        str(tmp_path / "foreign.engine"),
        device={"kind": "cpu", "arch": "aarch64", "model": "Jetson Orin", "isa": ["asimd"]},
    )
    with pytest.raises(EngineCompatibilityError, match="built for Jetson Orin.*edge-infer build"):
        Engine.load(foreign)
    Engine.load(foreign, check_device=False)  # inspect may still read it


def test_engine_from_another_version_is_refused(ranged_engine, tmp_path) -> None:
    _, path = ranged_engine
    old = _rewrite(path, str(tmp_path / "old.engine"), edge_infer_version="0.0.1")
    with pytest.raises(EngineCompatibilityError, match="edge_infer 0.0.1.*rebuild it here"):
        Engine.load(old)


def test_corrupt_engine_is_refused(ranged_engine, tmp_path) -> None:
    _, path = ranged_engine
    data = bytearray(Path(path).read_bytes())
    data[len(data) // 2] ^= 0x10
    bad = tmp_path / "flipped.engine"
    bad.write_bytes(bytes(data))
    with pytest.raises(EngineFileError, match="corrupt"):
        Engine.load(bad)
    cut = tmp_path / "cut.engine"
    cut.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(EngineFileError):
        Engine.load(cut)


def test_failed_build_leaves_no_file(tmp_path) -> None:
    model = small_model()
    model.graph.node[1].op_type = "NoSuchOp"
    out = tmp_path / "never.engine"
    with pytest.raises(UnsupportedOpError):
        edge_infer.build(model, out, shapes={"x": (1, 3, 8, 8)})
    assert not out.exists()
    with pytest.raises(BuildError, match="only the batch dimension"):
        edge_infer.build(
            small_model(),
            out,
            min_shapes={"x": (1, 3, 8, 8)},
            opt_shapes={"x": (1, 3, 8, 8)},
            max_shapes={"x": (2, 3, 9, 8)},
        )
    assert list(tmp_path.iterdir()) == []


def test_existing_engine_survives_a_failed_rebuild(ranged_engine, tmp_path) -> None:
    _, path = ranged_engine
    out = tmp_path / "keep.engine"
    out.write_bytes(Path(path).read_bytes())
    before = out.read_bytes()
    model = small_model()
    model.graph.node[0].op_type = "NoSuchOp"
    with pytest.raises(UnsupportedOpError):
        edge_infer.build(model, out)
    assert out.read_bytes() == before


def test_dynamic_batch_defaults_to_one_and_wide_ranges_pad(tmp_path) -> None:
    engine = edge_infer.build(small_model())
    assert engine.batch_sizes == [1]
    wide = edge_infer.build(
        small_model(),
        min_shapes={"x": (1, 3, 8, 8)},
        opt_shapes={"x": (8, 3, 8, 8)},
        max_shapes={"x": (40, 3, 8, 8)},
    )
    assert wide.batch_sizes == [1, 2, 4, 8, 16, 32, 40]
    x = x_of(5)  # served by the batch-8 plan, padded and sliced back
    y = wide.create_context().execute({"x": x})["y"]
    assert_fp32_close(y, small_model_expected(x))
