"""Every engine buffer starts on a cache line: the arena and scratch arrays are placed on
program.ALIGN_BYTES whatever address numpy's allocator returns (16 or 32 bytes past 64 by
process and allocation), and the memory plan's offsets are multiples of memory.ALIGNMENT."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine import memory
from edge_infer.engine.backends.cpu import program
from edge_infer.engine.builder import BuildOptions, build
from tests.engine.conftest import small_model_expected


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.float16, np.float32])
@pytest.mark.parametrize("shape", [(1,), (63,), (3, 5, 7), (1 << 20,), (2, 3, 64, 65)])
def test_touched_is_aligned_zeroed_and_sized(shape: tuple[int, ...], dtype: type) -> None:
    # allocations of many sizes in a row land at varied offsets from numpy; each is placed
    for _ in range(8):
        array = program._touched(shape, np.dtype(dtype))
        assert array.ctypes.data % program.ALIGN_BYTES == 0
        assert array.shape == shape and array.dtype == dtype
        assert array.flags.c_contiguous and array.flags.writeable
        assert not np.any(array)
        array[...] = 1  # the whole extent is writable and owned by this array alone
        assert int(array.sum(dtype=np.int64)) == array.size


def test_engine_buffers_start_on_cache_lines(model_file) -> None:
    assert memory.ALIGNMENT % program.ALIGN_BYTES == 0
    engine = build(str(model_file), options=BuildOptions(tune=False))
    contexts = [engine.create_context() for _ in range(3)]
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    for context in contexts:
        out = context.execute({"x": x})
        np.testing.assert_allclose(out["y"], small_model_expected(x), rtol=1e-5, atol=1e-5)
        (state,) = context._states.values()
        assert state.arena.ctypes.data % program.ALIGN_BYTES == 0
        for name, view in state.arena_views.items():
            if view.size:
                assert view.ctypes.data % program.ALIGN_BYTES == 0, name
