"""The worker binds its batch buffer to the engine: a frame batch reaches engine memory once."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu.program import CpuProgram
from edge_infer.engine.runtime import Engine
from edge_infer.pipeline.config import PostprocessConfig
from edge_infer.pipeline.frames import Frame
from edge_infer.pipeline.workers import InferenceWorker, ModelSpec
from tests.pipeline.helpers import build_tiny_engine


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return Engine.load(build_tiny_engine(tmp_path_factory.mktemp("tiny")))


class _Copies:
    """Counts the engine's copies of an input batch: into the arena, and batch padding."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import edge_infer.engine.runtime as runtime

        self.arena = 0
        self.pads = 0
        copy_inputs, pad = CpuProgram._copy_inputs, runtime._pad_batch

        def counted_copy(program: CpuProgram, state: object, feeds: dict) -> None:
            self.arena += 1
            copy_inputs(program, state, feeds)

        def counted_pad(array: np.ndarray, batch: int) -> np.ndarray:
            self.pads += 1
            return pad(array, batch)

        monkeypatch.setattr(CpuProgram, "_copy_inputs", counted_copy)
        monkeypatch.setattr(runtime, "_pad_batch", counted_pad)


def _frames(count: int) -> list[Frame]:
    rng = np.random.default_rng(count)
    return [
        Frame(f"cam{k}", k + 1, rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), 0.0, 0.0)
        for k in range(count)
    ]


@pytest.mark.parametrize("count", [1, 3, 8])
def test_batch_reaches_engine_memory_once(
    engine: Engine, count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = ModelSpec.from_engine(engine)
    worker = InferenceWorker(
        0, engine, spec, PostprocessConfig(), "rgb", lambda r: None, lambda *a: None
    )
    copies = _Copies(monkeypatch)
    result = worker.run_batch(_frames(count))
    # preprocessing wrote the frames into the bound buffer; the engine neither copied nor
    # padded it: its input view is the worker's buffer
    assert (copies.arena, copies.pads) == (0, 0)
    plan_batch = engine.plan_batch_for(count)
    state = worker.context._states[plan_batch]
    assert np.shares_memory(state.views[spec.input_name], worker.buffer)
    assert len(result.frames) == count
    # the same numbers as the copying path
    reference = engine.create_context().execute(
        {spec.input_name: worker.buffer[:plan_batch].copy()}
    )[spec.output_name]
    np.testing.assert_array_equal(worker.output[:plan_batch], reference)
    assert (copies.arena, copies.pads) == (1, 0)  # the reference run: one copy, as designed
    worker.context.close()


def test_worker_binds_bgr_without_a_second_copy(engine: Engine) -> None:
    spec = ModelSpec.from_engine(engine)
    rgb = InferenceWorker(
        0, engine, spec, PostprocessConfig(), "rgb", lambda r: None, lambda *a: None
    )
    bgr = InferenceWorker(
        1, engine, spec, PostprocessConfig(), "bgr", lambda r: None, lambda *a: None
    )
    frames = _frames(2)
    rgb.run_batch(frames)
    bgr.run_batch(frames)
    np.testing.assert_array_equal(bgr.buffer[:2], rgb.buffer[:2, ::-1])
    rgb.context.close()
    bgr.context.close()
