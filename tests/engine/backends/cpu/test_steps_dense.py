"""Float32 Gemm, MatMul and GlobalAveragePool steps (backends/cpu/dense.py) against the
reference ops, and engines that really run them.

Tolerance: the steps compute in float32 like the reference (numpy's BLAS), only the order
of the float32 additions differs, so |step - reference| <= TOL x max(1, max |reference|)
with TOL = 1e-5 for products (K up to 2048) and 1e-6 for plane means (up to 90 000 values
per plane); the build's self-check allows 1e-4 (engine/tactics/verify.py).
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import edge_infer
from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.steps import STEPS
from edge_infer.engine.builder import BuildOptions
from edge_infer.engine.ir import Graph, Node, TensorType
from edge_infer.engine.ops.linalg import gemm, matmul
from edge_infer.engine.ops.pool import global_average_pool
from edge_infer.engine.reference import execute_graph
from tests.engine.backends.cpu import isa_builds

PRODUCT_TOL = 1e-5
MEAN_TOL = 1e-6


def _close(got: np.ndarray, want: np.ndarray, tol: float) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max())
    assert err <= tol * scale, f"max |error| {err:.3g} > {tol:g} x scale {scale:.3g}"


def _node(op: str, ins: list[Any], const: set[int], attrs: dict[str, Any]) -> Node:
    """A one-node graph: inputs in ``const`` are constants, the others graph inputs."""
    graph = Graph()
    values = []
    for k, a in enumerate(ins):
        if a is None:
            values.append(None)
        elif k in const:
            values.append(graph.add_constant(f"c{k}", a))
        else:
            values.append(graph.add_input(f"x{k}", TensorType(a.shape, a.dtype)))
    return graph.add_node(op, values, 1, attrs, name=op.lower())


def _run_step(
    op: str, ins: list[Any], out: np.ndarray, const: set[int], attrs: dict, workers: int
) -> bool:
    """Run ``op``'s step into ``out`` (NaN / -1 filled first); False when the step declines."""
    out.fill(np.nan if out.dtype.kind == "f" else -1)
    node = _node(op, ins, const, attrs)
    pool = WorkPool(workers) if workers > 1 else None
    try:
        run = STEPS[op](node, [a for a in ins if a is not None] if op != "Gemm" else ins, [out],
                        ScratchPool(pool))  # fmt: skip
        if run is None:
            return False
        run()
        run()  # twice: a bound step must not depend on what its output held
    finally:
        if pool is not None:
            pool.close()
    return True


def _use_native(monkeypatch, on: bool) -> set[str]:
    """Native kernels on (recording which ones are bound) or off (the BLAS paths)."""
    if on and not native.available():
        pytest.skip("no C compiler on this machine")
    used: set[str] = set()
    lib = native.library() if on else None

    class Recorder:
        def __getattr__(self, name: str):
            used.add(name)
            return getattr(lib, name)

    monkeypatch.setattr(native, "library", lambda: Recorder() if on else None)
    return used


GEMMS = [  # (M, K, N)
    (1, 1280, 1000),  # MobileNetV2's classifier at batch 1
    (8, 2048, 1000),  # ResNet-50's at batch 8
    (1, 7, 5),
    (3, 17, 33),
    (8, 64, 40),
]
BIASES = ["none", "row", "row2d", "column", "full", "scalar"]
#: the native matrix-vector kernels (kernels/gemv.c)
GEMV = {"gemv_f32", "gemv_packed_f32"}


def _bias(kind: str, m: int, n: int, rng: np.random.Generator) -> np.ndarray | None:
    shape = {"row": (n,), "row2d": (1, n), "column": (m, 1), "full": (m, n), "scalar": ()}
    return None if kind == "none" else rng.standard_normal(shape[kind], dtype=np.float32)


@pytest.mark.parametrize("native_on", [True, False], ids=["native", "blas"])
@pytest.mark.parametrize("m,k,n", GEMMS)
@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_gemm_step_matches_reference(monkeypatch, native_on, m, k, n, trans_a, trans_b) -> None:
    used = _use_native(monkeypatch, native_on)
    rng = np.random.default_rng(m * 1000 + k + n + 10 * trans_a + trans_b)
    a = rng.standard_normal((k, m) if trans_a else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n), dtype=np.float32)
    cases = [  # (alpha, beta, bias kind, constant inputs, workers)
        (1.0, 1.0, "row", {1, 2}, 1),
        (1.0, 1.0, "row", {1, 2}, 2),
        (0.5, 2.0, "full", {1, 2}, 2),
        (1.5, 0.0, "row2d", {1}, 1),
        (1.0, 1.0, "none", set(), 2),
        (-2.0, 0.25, "column", {1}, 2),  # a C that changes, beta at run time
        (1.0, -1.0, "scalar", {2}, 1),
    ]
    for alpha, beta, kind, const, workers in cases:
        c = _bias(kind, m, n, rng)
        attrs = {"alpha": alpha, "beta": beta, "transA": trans_a, "transB": trans_b}
        want = gemm(a, b, c, **attrs)
        out = np.empty((m, n), np.float32)
        assert _run_step("Gemm", [a, b, c], out, const, attrs, workers)
        _close(out, want, PRODUCT_TOL)
    # few rows with A's rows contiguous run the native kernel (with a constant C at least);
    # a constant B packed (gemv_packed_f32), the changing one as rows (gemv_f32)
    gemv = bool(GEMV & used)
    assert gemv == (native_on and m <= 8 and (m == 1 or not trans_a)), used
    assert ("gemv_packed_f32" in used) == gemv, used


@pytest.mark.parametrize("native_on", [True, False], ids=["native", "blas"])
def test_gemm_step_writes_a_strided_output(monkeypatch, native_on) -> None:
    """An output that is a column slice of a bigger buffer (a concat's part)."""
    _use_native(monkeypatch, native_on)
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 96), dtype=np.float32)
    b = rng.standard_normal((80, 96), dtype=np.float32)
    c = rng.standard_normal(80, dtype=np.float32)
    big = np.full((4, 100), 7.0, np.float32)
    out = big[:, 10:90]
    assert _run_step("Gemm", [a, b, c], out, {1, 2}, {"transB": 1}, 2)
    _close(out, gemm(a, b, c, transB=1), PRODUCT_TOL)
    assert (big[:, :10] == 7).all() and (big[:, 90:] == 7).all()


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int32])
def test_steps_decline_other_dtypes(dtype: Any) -> None:
    """Exact reference semantics (float16 products rounded once, integers exact) are the
    reference kernel's: the steps return None."""
    a, b = np.ones((2, 3), dtype), np.ones((3, 4), dtype)
    assert not _run_step("Gemm", [a, b, None], np.empty((2, 4), dtype), {1}, {}, 1)
    assert not _run_step("MatMul", [a, b], np.empty((2, 4), dtype), {1}, {}, 1)
    x = np.ones((1, 3, 2, 2), dtype)
    assert not _run_step("GlobalAveragePool", [x], np.empty((1, 3, 1, 1), dtype), set(), {}, 1)


MATMULS = [  # (A shape, B shape, B constant)
    ((32, 1, 256), (256, 37), True),  # the CRNN's classifier
    ((2, 3, 4, 5), (5, 6), True),
    ((7, 5), (5, 300), False),
    ((1, 513), (513, 64), True),
    ((5,), (5, 3), True),
    ((4, 5), (5,), True),
    ((2, 3, 4), (2, 4, 5), False),
    ((3, 4), (2, 4, 5), False),
]


@pytest.mark.parametrize("native_on", [True, False], ids=["native", "blas"])
@pytest.mark.parametrize("a_shape,b_shape,b_const", MATMULS)
@pytest.mark.parametrize("workers", [1, 2])
def test_matmul_step_matches_reference(
    monkeypatch, native_on, a_shape, b_shape, b_const, workers
) -> None:
    _use_native(monkeypatch, native_on)
    rng = np.random.default_rng(len(a_shape) * 7 + len(b_shape) + workers)
    a = rng.standard_normal(a_shape, dtype=np.float32)
    b = rng.standard_normal(b_shape, dtype=np.float32)
    want = matmul(a, b)
    out = np.empty(want.shape, np.float32)
    assert _run_step("MatMul", [a, b], out, {1} if b_const else set(), {}, workers)
    _close(out, want, PRODUCT_TOL)


POOLS = [(1, 1280, 7, 7), (8, 2048, 7, 7), (2, 3, 300, 300), (3, 5, 11), (1, 2, 3, 4, 5)]


@pytest.mark.parametrize("native_on", [True, False], ids=["native", "blas"])
@pytest.mark.parametrize("shape", POOLS)
@pytest.mark.parametrize("workers", [1, 2])
def test_global_average_pool_step_matches_reference(shape, workers, native_on, monkeypatch) -> None:
    """The planes' sums by kernels/gemv.c where the library is (numpy's BLAS wakes its
    threads for every pool), by BLAS without it; the same means within the tolerance."""
    used = _use_native(monkeypatch, native_on)
    rng = np.random.default_rng(sum(shape) + workers)
    x = rng.standard_normal(shape, dtype=np.float32) + 0.3
    want = global_average_pool(x)
    out = np.empty(want.shape, np.float32)
    assert _run_step("GlobalAveragePool", [x], out, set(), {}, workers)
    _close(out, want, MEAN_TOL)
    assert ("gemv_f32" in used) == native_on, used


@pytest.mark.parametrize("channels", [(8, 32), (0, 40)], ids=["slice", "whole"])
def test_global_average_pool_step_reads_a_channel_slice(channels, monkeypatch) -> None:
    """The input is a channel slice of a concat's buffer: strided planes, no copy (each
    image's planes are rows of the native kernel); a plane stride wider than the plane (a
    slice along H) goes through BLAS."""
    used = _use_native(monkeypatch, True)
    rng = np.random.default_rng(5)
    big = rng.standard_normal((2, 40, 6, 9), dtype=np.float32)
    for x, native_kernel in ((big[:, channels[0] : channels[1]], True), (big[:, :, :3], False)):
        used.clear()
        want = global_average_pool(np.ascontiguousarray(x))
        out = np.empty(want.shape, np.float32)
        assert _run_step("GlobalAveragePool", [x], out, set(), {}, 2)
        _close(out, want, MEAN_TOL)
        assert ("gemv_f32" in used) == native_kernel, used


# -- engines ----------------------------------------------------------------------------------


def _classifier(batch: int, k: int = 256, classes: int = 100) -> bytes:
    """Conv -> GlobalAveragePool -> Flatten -> Gemm(transB) -> MatMul: the tails of
    MobileNetV2 / ResNet-50 (and a CRNN-like MatMul head)."""
    rng = np.random.default_rng(11)
    inits = [
        numpy_helper.from_array(rng.standard_normal((k, 8, 1, 1), dtype=np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((classes, k), dtype=np.float32) / 16, "fc"),
        numpy_helper.from_array(rng.standard_normal(classes, dtype=np.float32), "fc_b"),
        numpy_helper.from_array(rng.standard_normal((classes, 24), dtype=np.float32), "head"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("GlobalAveragePool", ["c"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fc_b"], ["y"], transB=1),
        helper.make_node("MatMul", ["y", "head"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tail",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 8, 7, 7])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _recording(monkeypatch) -> dict[str, list[str]]:
    """Wrap the three steps: which layers each one bound (returned a run for)."""
    bound: dict[str, list[str]] = {}
    for op in ("Gemm", "MatMul", "GlobalAveragePool"):
        inner = STEPS[op]

        def factory(node, ins, outs, scratch, inner=inner, op=op):
            run = inner(node, ins, outs, scratch)
            if run is not None:
                bound.setdefault(op, []).append(node.name)
            return run

        monkeypatch.setitem(STEPS, op, factory)
    return bound


@pytest.mark.parametrize("batch", [1, 8])
def test_fp32_engine_runs_the_steps_and_agrees(monkeypatch, batch: int) -> None:
    used = _use_native(monkeypatch, native.available())
    bound = _recording(monkeypatch)
    model = _classifier(batch)
    engine = edge_infer.build(model, tune=False)
    x = np.random.default_rng(batch).standard_normal((batch, 8, 7, 7), dtype=np.float32)
    got = engine.create_context().execute({"x": x})["z"]
    assert set(bound) == {"Gemm", "MatMul", "GlobalAveragePool"}, bound
    assert "gemv_packed_f32" in used or not native.available()
    want = execute_graph(engine.graph(batch), {"x": x})["z"]
    _close(got, want, PRODUCT_TOL)


def test_fp16_engine_can_run_the_gemm_step(monkeypatch) -> None:
    """FP16 layers reach the steps through cpu_fp16.Fp16Step (a candidate, self-checked
    and timed like the others): building binds the float32 Gemm step on widened views."""
    bound = _recording(monkeypatch)
    model = _classifier(1)
    engine = edge_infer.build(model, options=BuildOptions(precision="fp16"))
    x = np.random.default_rng(2).standard_normal((1, 8, 7, 7), dtype=np.float32)
    got = engine.create_context().execute({"x": x})["z"]
    assert "fp16/Gemm" in bound.get("Gemm", []), bound
    want = execute_graph(engine.graph(1), {"x": x})["z"]
    _close(got.astype(np.float32), want.astype(np.float32), 4e-3)


# -- every x86 vector path of gemv.c, from the same source -------------------------------------


@pytest.mark.parametrize("build", list(isa_builds.X86_BUILDS))
def test_gemv_every_x86_vector_path_matches(build: str, tmp_path: Path) -> None:
    if not native.available():
        pytest.skip("no C compiler on this machine")
    flags, needs = isa_builds.X86_BUILDS[build]
    isa_builds.need_features(needs)
    lib = isa_builds.build_kernels(tmp_path, ["gemv.c", "args.c"], flags)
    rng = np.random.default_rng(23)
    for m, k, n in [(1, 1280, 1000), (3, 37, 45), (8, 64, 21)]:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((n, k), dtype=np.float32)
        c = rng.standard_normal(n, dtype=np.float32)
        for const, kernel in (({1, 2}, "gemv_packed_f32"), ({2}, "gemv_f32")):
            out = np.full((m, n), np.nan, np.float32)
            run = STEPS["Gemm"](_node("Gemm", [a, b, c], const, {"transB": 1}), [a, b, c],
                                [out], ScratchPool())  # fmt: skip
            assert isinstance(run, native.NativeCall) and run.name == kernel
            fn = getattr(lib, kernel)
            fn.restype = None
            fn(ctypes.byref(run.args))  # the bound call, through this build's kernel
            _close(out, gemm(a, b, c, transB=1), PRODUCT_TOL)


def test_packed_weights_give_the_rows_bits() -> None:
    """gemv_packed sums in gemv's order: the same bits wherever gemv takes four rows at a
    time (its last partial group goes one row at a time: within the tolerance)."""
    if not native.available():
        pytest.skip("no C compiler on this machine")
    rng = np.random.default_rng(29)
    for m, k, n in [(1, 1280, 1000), (3, 37, 45), (8, 24, 9), (2, 7, 3)]:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((n, k), dtype=np.float32)
        outs = []
        for const in ({1}, set()):
            out = np.full((m, n), np.nan, np.float32)
            scratch = ScratchPool()
            scratch.workers = 2
            STEPS["Gemm"](_node("Gemm", [a, b], const, {"transB": 1}), [a, b], [out], scratch)()
            outs.append(out)
        q = n // 4 * 4
        assert outs[0][:, :q].tobytes() == outs[1][:, :q].tobytes()
        _close(outs[0], gemm(a, b, None, transB=1), PRODUCT_TOL)
