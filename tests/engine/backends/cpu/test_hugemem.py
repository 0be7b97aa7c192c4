"""hugemem: a program state's arrays on huge-page slabs, numpy's elsewhere."""

from __future__ import annotations

import gc
import itertools
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from edge_infer.engine.backends.cpu import hugemem, program
from edge_infer.engine.builder import BuildOptions, build


def _vm_flags(address: int) -> list[str]:
    """The VmFlags of the mapping holding ``address`` (/proc/self/smaps)."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            lo, hi = (int(v, 16) for v in head.split("-"))
            inside = lo <= address < hi
        elif inside and head == "VmFlags:":
            return line.split()[1:]
    raise AssertionError(f"no mapping holds 0x{address:x}")


def _base(array: np.ndarray) -> object:
    while isinstance(array, np.ndarray) and array.base is not None:
        array = array.base  # type: ignore[assignment]
    return array


CASES = [((5, 7), np.int8), ((300, 100), np.float32), ((3, 64, 1000), np.int32),
         ((9_000_000,), np.uint8)]  # fmt: skip


@pytest.mark.parametrize("shape,dtype", CASES)
def test_arrays_are_aligned_zeroed_and_disjoint(shape, dtype) -> None:
    with hugemem.region():
        arrays = [hugemem.zeros(shape, dtype) for _ in range(3)]
    spans = []
    for a in arrays:
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
        assert a.ctypes.data % hugemem.ALIGN == 0
        assert not a.any()
        spans.append((a.ctypes.data, a.ctypes.data + a.nbytes))
    for k, a in enumerate(arrays):
        a[...] = k + 1  # each its own memory
    assert [int(a.ravel()[-1]) for a in arrays] == [1, 2, 3]
    spans.sort()
    assert all(hi <= lo for (_, hi), (lo, _) in itertools.pairwise(spans))


def test_copy_keeps_values_and_dtype() -> None:
    src = np.arange(24 * 1024, dtype=np.int32).reshape(24, 1024)[:, ::2]
    with hugemem.region():
        got = hugemem.copy(src)
        as_float = hugemem.copy(src, np.float32)
    np.testing.assert_array_equal(got, src)
    assert got.flags.c_contiguous and as_float.dtype == np.float32
    np.testing.assert_array_equal(as_float, src.astype(np.float32))


def test_outside_a_region_arrays_are_numpys() -> None:
    a = hugemem.zeros((256, 1024), np.float32)
    assert isinstance(_base(a), np.ndarray)  # numpy's own buffer, no mapping
    assert a.ctypes.data % hugemem.ALIGN == 0 and not a.any()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise: Linux only")
def test_region_slabs_are_advised_huge_pages() -> None:
    """Within a region the arrays share slabs advised MADV_HUGEPAGE ('hg' in VmFlags), and a
    big one has a mapping of its own; small ones stay numpy's."""
    with hugemem.region():
        a = hugemem.zeros((64, 1024), np.float32)
        b = hugemem.zeros((32, 1024), np.int32)
        big = hugemem.zeros((hugemem.SLAB // 2,), np.uint8)
        small = hugemem.zeros((16,), np.float32)
    assert _base(a) is _base(b)  # one slab
    assert _base(big) is not _base(a)
    assert isinstance(_base(small), np.ndarray)
    for x in (a, big):
        assert "hg" in _vm_flags(x.ctypes.data)


def _mapped(address: int) -> bool:
    """Whether some mapping of this process holds ``address`` (/proc/self/maps)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
        if lo <= address < hi:
            return True
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc: Linux only")
def test_state_buffers_do_not_share_slabs_with_constants() -> None:
    """A state's buffers (arena, scratch) and the constants prepared in its binding come from
    different slabs: when the state is gone its memory is unmapped, the constants stay."""
    with hugemem.region():
        const = hugemem.zeros((64, 1024), np.float32)
        buf = hugemem.zeros((64, 1024), np.float32, state=True)
    assert _base(const) is not _base(buf)
    address = buf.ctypes.data
    assert _mapped(address)
    del buf
    gc.collect()
    assert not _mapped(address)  # the state's slab went with its last array
    assert _mapped(const.ctypes.data) and not const.any()


def test_a_program_state_binds_on_region_memory(tmp_path) -> None:
    """CpuProgram.new_state's arena comes from a region's mapping, and the engine on it
    computes what the ONNX reference evaluator does."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((64, 32, 3, 3)).astype(np.float32) * 0.1
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 40, 40])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 40, 40])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "conv.onnx"
    onnx.save(model, path)
    engine = build(str(path), options=BuildOptions(tune=False))
    context = engine.create_context()
    x = rng.standard_normal((1, 32, 40, 40)).astype(np.float32)
    got = context.execute({"x": x})["y"]
    (state,) = context._states.values()
    assert not isinstance(_base(state.arena), np.ndarray)  # a mapping's, not numpy's
    assert state.arena.ctypes.data % program.ALIGN_BYTES == 0
    (want,) = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
