"""FP16 engines on the CPU: the float16 conversion kernel on every path (bit for bit against
numpy's ``astype``), the FP16 tactics against the Fp16Layer reference, whole FP16 engines
against the FP16 reference evaluator."""

from __future__ import annotations

import ctypes
import platform
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_infer.engine.backends.cpu import half, native, native_args
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import CpuProgram, ScratchPool
from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS
from edge_infer.engine.builder import BuildOptions, build
from edge_infer.engine.reference import execute_graph
from edge_infer.engine.tactics import candidates
from edge_infer.engine.tactics.verify import layer_inputs, reference_outputs
from tests.sysdeps import need

KERNEL = native.KERNELS / "convert_f16.c"
HERE = Path(__file__).parent
F16, F32 = np.dtype(np.float16), np.dtype(np.float32)

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler: no native kernels")


# -- the conversion kernel -----------------------------------------------------------------


def _values(seed: int = 0) -> np.ndarray:
    """float32 values covering every float16 case: random bit patterns (normals, subnormals,
    infinities, quiet NaNs), exact float16 ties, float16 subnormals, overflow to infinity."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**32, 60000, dtype=np.uint64).astype(np.uint32)
    halves = rng.integers(0, 2**16, 20000).astype(np.uint16).view(np.float16)
    ties = (halves.astype(np.float32).view(np.uint32) + (1 << 12)).view(np.float32)
    edges = [0.0, np.inf, np.nan, 65504, 65519.996, 65520, 65536, 1e30, 2**-14, 2**-24]
    ties_low = [2**-25, 2**-25 * 1.0000001, 3 * 2**-25, 2**-26, 1 + 2**-11, 1 + 3 * 2**-11]
    special = np.array([*edges, *ties_low, 2**-14 - 2**-25], np.float32)
    sub = (rng.standard_normal(20000) * 2**-16).astype(np.float32)
    x = np.concatenate([special, -special, bits.view(np.float32), ties, sub])
    # signalling NaNs are left out: numpy keeps them signalling, the hardware quiets them
    return x[~np.isnan(x) | ((x.view(np.uint32) & 0x400000) != 0)]


def _check_paths(call: object) -> None:
    """``call(mode, src, dst)`` converts; every mode bit for bit against numpy, odd lengths."""
    x = _values()
    with np.errstate(over="ignore"):
        want = x.astype(np.float16)
    for n in (x.size, 1, 7, 15, 17, 33):
        got = np.empty(n, F16)
        call(1, x[:n], got)
        np.testing.assert_array_equal(got.view(np.uint16), want[:n].view(np.uint16))
        rounded = np.empty(n, F32)
        call(2, x[:n], rounded)
        np.testing.assert_array_equal(rounded.view(np.uint32), want[:n].astype(F32).view(np.uint32))
    every = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    every = every[~np.isnan(every) | ((every.view(np.uint16) & 0x200) != 0)]
    wide = np.empty(every.size, F32)
    call(0, every, wide)
    np.testing.assert_array_equal(wide.view(np.uint32), every.astype(F32).view(np.uint32))


def _ctypes_call(lib: ctypes.CDLL) -> object:
    fn = lib.convert_half_f32
    fn.argtypes = [ctypes.POINTER(native_args.ConvertHalfArgs)]

    def call(mode: int, src: np.ndarray, dst: np.ndarray) -> None:
        src = np.ascontiguousarray(src)
        n = src.size
        fn(native_args.ConvertHalfArgs(x=src.ctypes.data, y=dst.ctypes.data, rows=1, n=n, xrs=n,
                                  yrs=n, mode=mode))  # fmt: skip

    return call


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {f for line in text.splitlines() if line.startswith("flags") for f in line.split()}


X86_PATHS = {  # path → (compiler flags, vector width it must report, CPU flag it needs)
    "portable": (["-O2"], 1, None),
    "f16c": (["-O2", "-mavx", "-mf16c"], 8, "f16c"),
    "avx512": (["-O2", "-mavx512f", "-mf16c"], 16, "avx512f"),
}


@pytest.mark.parametrize("path", sorted(X86_PATHS))
def test_conversion_paths_x86(path: str, tmp_path: Path) -> None:
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("x86-64 paths")
    need("cc")
    flags, lanes, cpu = X86_PATHS[path]
    if cpu is not None and cpu not in _cpu_flags():
        pytest.skip(f"this CPU has no {cpu}")
    so = tmp_path / f"convert-{path}.so"
    cmd = ["cc", *flags, "-std=c11", "-Wall", "-Werror", "-fPIC", "-shared"]
    subprocess.run([*cmd, f"-I{native.KERNELS}", "-o", str(so), str(KERNEL)], check=True)
    lib = ctypes.CDLL(str(so))
    assert lib.convert_half_lanes() == lanes  # the path under test is the one compiled
    _check_paths(_ctypes_call(lib))


def test_conversion_engine_library() -> None:
    lib = native.library()
    _check_paths(_ctypes_call(lib))


@pytest.mark.parametrize("build_flag", ["-march=armv8-a", "-mcpu=cortex-a78ae"])
def test_conversion_aarch64(build_flag: str, tmp_path: Path) -> None:
    cross, qemu = "aarch64-linux-gnu-gcc", "qemu-aarch64"
    need(cross, qemu)
    exe = tmp_path / "convert"
    flags = ["-O2", build_flag, "-std=c11", "-Wall", "-Werror", f"-I{native.KERNELS}"]
    sources = [str(KERNEL), str(HERE / "fp16_driver.c")]
    subprocess.run([cross, *flags, "-o", str(exe), *sources], check=True)

    def call(mode: int, src: np.ndarray, dst: np.ndarray) -> None:
        src_file, dst_file = tmp_path / "in.bin", tmp_path / "out.bin"
        np.ascontiguousarray(src).tofile(src_file)
        run = [qemu, "-L", "/usr/aarch64-linux-gnu", str(exe), str(mode), str(src.size)]
        proc = subprocess.run(
            [*run, str(src_file), str(dst_file)], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0 and proc.stdout.strip() == "8", proc.stderr
        dst[...] = np.fromfile(dst_file, dst.dtype)

    _check_paths(call)


def test_convert_views_threads_and_in_place() -> None:
    """Channel slices (a concat's pieces), chunks on the pool, rounding in place."""
    rng = np.random.default_rng(1)
    whole = (rng.standard_normal((2, 12, 40, 40)) * 300).astype(F16)
    piece = whole[:, 3:9]  # rows of contiguous planes at the image stride
    wide = np.empty(piece.shape, F32)
    pool = WorkPool(2)
    try:
        half.convert(piece, wide, half.WIDEN, pool)()
        np.testing.assert_array_equal(wide, piece.astype(F32))
        big = (rng.standard_normal(300_001) * 1e4).astype(F32)
        narrow = np.empty(big.shape, F16)
        half.convert(big, narrow, half.NARROW, pool)()
        with np.errstate(over="ignore"):
            np.testing.assert_array_equal(narrow.view(np.uint16), big.astype(F16).view(np.uint16))
            want = big.astype(F16).astype(F32)
        half.convert(big, big, half.ROUND, pool)()
        np.testing.assert_array_equal(big, want)
    finally:
        pool.close()
    odd = np.empty((3, 5, 4), F32)[:, ::2]  # not rows at one stride: numpy's astype
    src = rng.standard_normal(odd.shape).astype(F16)
    half.convert(src, odd, half.WIDEN)()
    np.testing.assert_array_equal(odd, src.astype(F32))


# -- FP16 tactics and engines ---------------------------------------------------------------


def _net(size: int = 24) -> onnx.ModelProto:
    """x → 3x3 conv → SiLU → depthwise 3x3 → 1x1 (+ residual) → SPPF-style MaxPool → Concat
    → 3x3 s2 conv → Resize x2 → Softmax over channels and Sigmoid → y."""
    rng = np.random.default_rng(3)

    def w(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        data = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
        return numpy_helper.from_array(data.astype(np.float32), name)

    inits = [
        w("w1", (16, 3, 3, 3)),
        w("b1", (16,)),
        w("wd", (16, 1, 3, 3)),
        w("bd", (16,)),
        w("wp", (16, 16, 1, 1)),
        w("bp", (16,)),
        w("w3", (8, 32, 3, 3)),
        w("b3", (8,)),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
    ]
    node = helper.make_node
    nodes = [
        node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        node("Sigmoid", ["c1"], ["s1"]),
        node("Mul", ["c1", "s1"], ["a1"]),
        node("Conv", ["a1", "wd", "bd"], ["d1"], pads=[1, 1, 1, 1], group=16),
        node("Relu", ["d1"], ["r1"]),
        node("Conv", ["r1", "wp", "bp"], ["p1"]),
        node("Add", ["p1", "a1"], ["res"]),
        node("MaxPool", ["res"], ["m1"], kernel_shape=[5, 5], pads=[2, 2, 2, 2]),
        node("Concat", ["res", "m1"], ["cat"], axis=1),
        node("Conv", ["cat", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1], strides=[2, 2]),
        node("Resize", ["c3", "", "scales"], ["up"], mode="nearest"),
        node("Softmax", ["up"], ["sm"], axis=1),
        node("Sigmoid", ["sm"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fp16_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, size, size])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def engines() -> dict[str, object]:
    shapes = {"x": (1, 3, 24, 24)}
    return {
        tune: build(_net(), options=BuildOptions(shapes=shapes, precision="fp16", tune=tune))
        for tune in (False, True)
    }


def _fp16_layers(graph: object) -> list[object]:
    return [n for n in graph.nodes if n.op_type == "Fp16Layer"]  # type: ignore[attr-defined]


def _within_fp16(got: np.ndarray, want: np.ndarray) -> None:
    """The same rounding points, another summation order: at most one float16 step apart
    (2^-10 of the value) beyond float32's own differences."""
    got, want = got.astype(np.float64), want.astype(np.float64)
    scale = max(1.0, float(np.abs(want).max()))
    limit = 2.0**-10 * np.abs(want) + 1e-4 * scale
    worst = float((np.abs(got - want) - limit).max())
    assert worst <= 0, f"off by {worst:.3g} beyond one float16 step"


def test_every_fp16_tactic_matches_the_reference(engines: dict[str, object]) -> None:
    graph = engines[False].graph(1)  # type: ignore[attr-defined]
    layers = _fp16_layers(graph)
    assert {n.attrs["op"] for n in layers} >= {"FusedConv", "Conv", "Softmax", "Sigmoid"}
    seen = set()
    for pool in (None, WorkPool(2)):
        for node in layers:
            tactics, spec = candidates(node, CPU_TACTICS)
            assert tactics and spec.signature().startswith("fp16 ")
            ins = layer_inputs(node, seed=5)
            want = reference_outputs(node, ins)
            for tactic in tactics:
                outs = [np.full(v.shape, np.nan, v.dtype) for v in node.outputs]
                tactic(spec).bind(ins, outs, ScratchPool(pool))()
                assert outs[0].dtype == want[0].dtype
                if tactic.name == "fp16_kernel":  # the reference's numbers, bit for bit
                    np.testing.assert_array_equal(outs[0], want[0])
                else:
                    _within_fp16(outs[0], want[0])
                seen.add(tactic.name)
        if pool is not None:
            pool.close()
    natives = {"fp16_direct_native", "fp16_ocvec_native", "fp16_depthwise_native"}
    assert natives <= seen and "fp16_step" in seen and "fp16_gemm_1x1" in seen


def test_fp16_engine_matches_the_fp16_reference(engines: dict[str, object]) -> None:
    x = np.random.default_rng(7).standard_normal((1, 3, 24, 24)).astype(np.float32)
    for tune, engine in engines.items():
        graph = engine.graph(1)  # type: ignore[attr-defined]
        chosen = {n.meta.get("tactic") for n in _fp16_layers(graph)}
        assert all(str(t).startswith("fp16_") for t in chosen), chosen
        if not tune:  # untuned: the first candidate, a fast one, for every layer
            assert "fp16_kernel" not in chosen
        got = engine.create_context().execute({"x": x})["y"]  # type: ignore[attr-defined]
        want = execute_graph(graph, {"x": x})["y"]
        assert got.dtype == want.dtype == np.float32
        _within_fp16(got, want)
        # the float16 storage layers (MaxPool, Resize, Concat) run natively, exactly
        plain = {n.op_type for n in graph.nodes if n.op_type in ("MaxPool", "Resize")}
        assert plain == {"MaxPool", "Resize"}


def test_fp16_engine_with_exact_kernels_is_the_reference_bit_for_bit(
    engines: dict[str, object],
) -> None:
    graph = engines[False].graph(1)  # type: ignore[attr-defined]
    for node in _fp16_layers(graph):
        node.meta["tactic"] = "fp16_kernel"
    program = CpuProgram(graph)
    state = program.new_state()
    x = np.random.default_rng(8).standard_normal((1, 3, 24, 24)).astype(np.float32)
    try:
        got = program.run(state, {"x": x})["y"]
    finally:
        state.close()
    np.testing.assert_array_equal(got, execute_graph(graph, {"x": x})["y"])
