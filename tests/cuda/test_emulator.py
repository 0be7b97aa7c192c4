"""The emulated CUDA subset (kernels/emu): warp intrinsics, barriers, shared memory, atomics,
half, __dp4a and wmma, each probed by a test-only kernel and compared with numpy."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from edge_infer.cuda.emulator import EmuLibrary
from edge_infer.errors import KernelLaunchError
from tests.cuda import emu_kernels as ek
from tests.cuda.conftest import emu_variant


@pytest.fixture(scope="module")
def lib() -> EmuLibrary:
    return ek.load(emu_variant())


def _addr(a: np.ndarray | None) -> int | None:
    return None if a is None else int(a.ctypes.data)


def _probe(
    lib: EmuLibrary,
    entry: str,
    grid,
    block,
    *,
    shared: int = 0,
    mode: int = 0,
    n: int = 0,
    **arrays: np.ndarray,
) -> None:
    params = ek.ProbeParams(**{k: _addr(v) for k, v in arrays.items()}, n=n, mode=mode)
    lib.launch(entry, grid, block, params, shared_bytes=shared)


def test_warp_intrinsics(lib) -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 3, 64).astype(np.float32)
    out = np.zeros((64, 4), np.float32)
    iout = np.zeros((64, 3), np.int32)
    _probe(lib, "ei_probe_warp", 1, 64, x=x, out=out, iout=iout)
    for w in range(2):
        v = x[32 * w : 32 * w + 32]
        lanes = np.arange(32)
        o = out[32 * w : 32 * w + 32]
        np.testing.assert_array_equal(o[:, 0], v[(lanes * 7 + 3) % 32])
        down = np.where(lanes + 5 < 32, v[np.minimum(lanes + 5, 31)], v)
        np.testing.assert_array_equal(o[:, 1], down)
        np.testing.assert_array_equal(o[:, 2], np.where(lanes >= 3, v[np.maximum(lanes - 3, 0)], v))
        np.testing.assert_array_equal(o[:, 3], v[lanes ^ 9])
        ballot = int(sum(1 << i for i in range(32) if v[i] > 0))
        io = iout[32 * w : 32 * w + 32]
        assert (io[:, 0].view(np.uint32) == ballot).all()
        assert (io[:, 1] == int((v > 2.5).any())).all()
        assert (io[:, 2] == int((v > -2.5).all())).all()


@pytest.mark.parametrize(("n", "block"), [(1000, 256), (64, 64), (77, 1024)])
def test_block_reduction_with_shared_memory_and_barriers(lib, n, block) -> None:
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    blocks = -(-n // block)
    out = np.zeros(blocks, np.float32)
    _probe(lib, "ei_probe_block_sum", blocks, block, x=x, out=out, n=n)
    padded = np.zeros(blocks * block, np.float64)
    padded[:n] = x
    np.testing.assert_allclose(out, padded.reshape(blocks, block).sum(1), rtol=1e-5, atol=1e-5)


def test_dynamic_shared_memory(lib) -> None:
    x = np.arange(3 * 96, dtype=np.float32)
    out = np.zeros_like(x)
    _probe(lib, "ei_probe_reverse", 3, 96, shared=96 * 4, x=x, out=out)
    np.testing.assert_array_equal(out, x.reshape(3, 96)[:, ::-1].reshape(-1))


def test_exited_threads_do_not_hold_the_barrier(lib) -> None:
    x = np.arange(128, dtype=np.float32) + 1
    out = np.full(128, -1.0, np.float32)
    _probe(lib, "ei_probe_early_exit", 1, 128, x=x, out=out, n=50)
    np.testing.assert_array_equal(out[:50], x[:50] + x[0])
    assert (out[50:] == -1).all()


def test_atomics(lib) -> None:
    n = 700
    x = np.full(n, 0.5, np.float32)
    out = np.zeros(1, np.float32)
    iout = np.array([0, -1, 1, 0, 0, 0], np.int32)
    _probe(lib, "ei_probe_atomics", 3, 256, x=x, out=out, iout=iout, n=n)
    assert iout[0] == n and iout[1] == n - 1 and iout[2] == -(n - 1)
    assert out[0] == pytest.approx(0.5 * n)
    assert 1 <= iout[3] <= n and iout[4] == 7 and iout[5] == -1


def test_half_matches_numpy_float16(lib) -> None:
    rng = np.random.default_rng(3)
    specials = np.array(
        [
            0.0,
            -0.0,
            65504.0,
            65520.0,
            65519.99,
            1e-8,
            2.0**-25,
            2.0**-24 * 1.5,
            5.96e-8,
            -6.1e-5,
            np.inf,
            -np.inf,
            1.0 + 2.0**-11,
            1.0 + 3 * 2.0**-11,
            3.0e-5,
            1e5,
            0.1,
            1 / 3,
            # a*b + a just off a half tie that float rounding would land on
            36.21875,
            -0.0047454833984375,
            0.04241943359375,
            -0.00971221923828125,
            255.5,
            0.0007338523864746094,
        ],
        np.float32,
    )
    x = np.concatenate(
        [
            specials,
            rng.standard_normal(400).astype(np.float32) * 100,
            rng.standard_normal(200).astype(np.float32) * 1e-5,
        ]
    )
    x = x[: len(x) // 2 * 2]
    n = len(x) // 2
    out = np.zeros((n, 6), np.float32)
    d = np.zeros(n, np.float16)
    _probe(lib, "ei_probe_half", -(-n // 128), 128, x=x, out=out, d=d, n=n)
    with np.errstate(over="ignore"):
        a, b = x[0::2].astype(np.float16), x[1::2].astype(np.float16)
    np.testing.assert_array_equal(d.view(np.uint16), a.view(np.uint16))  # bit-exact
    with np.errstate(over="ignore", invalid="ignore"):
        expect = [
            a.astype(np.float32),
            (a + b),
            (a * b),
            (a.astype(np.float64) * b + a).astype(np.float16),
            np.fmax(a, b),
        ]
        pair = (x[0::2].astype(np.float16) * np.float16(2)).astype(np.float32) + (
            x[1::2].astype(np.float16) * np.float16(0.5)
        ).astype(np.float32)
    for k, e in enumerate(expect):
        np.testing.assert_array_equal(out[:, k], np.asarray(e).astype(np.float32), err_msg=f"{k}")
    np.testing.assert_array_equal(out[:, 5], pair)


def test_dp4a_is_exact(lib) -> None:
    rng = np.random.default_rng(4)
    n = 300
    a8 = rng.integers(-128, 128, (n, 4), dtype=np.int8)
    b8 = rng.integers(-128, 128, (n, 4), dtype=np.int8)
    iout = np.zeros(n, np.int32)
    _probe(
        lib,
        "ei_probe_dp4a",
        2,
        256,
        a=np.ascontiguousarray(a8),
        b=np.ascontiguousarray(b8),
        iout=iout,
        n=n,
    )
    expected = (a8.astype(np.int64) * b8).sum(1) + np.arange(n)
    np.testing.assert_array_equal(iout, expected)


def _aligned(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` at a 32-byte aligned address (wmma's requirement)."""
    raw = np.zeros(a.nbytes + 32, np.uint8)
    off = (-raw.ctypes.data) % 32
    out = raw[off : off + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
@pytest.mark.parametrize("kind", ["f16_f32", "f16_f16", "s8"])
def test_wmma_mma_sync(lib, kind, mode) -> None:
    rng = np.random.default_rng(mode)
    if kind == "s8":
        A = rng.integers(-128, 128, (16, 16)).astype(np.int8)
        B = rng.integers(-128, 128, (16, 16)).astype(np.int8)
        C = rng.integers(-1000, 1000, (16, 16)).astype(np.int32)
    else:
        A = rng.standard_normal((16, 16)).astype(np.float16)
        B = rng.standard_normal((16, 16)).astype(np.float16)
        C = rng.standard_normal((16, 16)).astype(np.float32 if kind == "f16_f32" else np.float16)
    # mode bit 0: A stored column-major, bit 1: B stored column-major
    a_mem = A.T.copy() if mode & 1 else A
    b_mem = B.T.copy() if mode & 2 else B
    d = _aligned(np.zeros((16, 16), C.dtype))
    _probe(
        lib,
        f"ei_probe_wmma_{kind}",
        1,
        32,
        mode=mode,
        a=_aligned(a_mem),
        b=_aligned(b_mem),
        c=_aligned(C),
        d=d,
    )
    exact = A.astype(np.float64) @ B.astype(np.float64) + C.astype(np.float64)
    got = d.T.astype(np.float64) / 2  # stored column-major, doubled element by element
    if kind == "s8":
        np.testing.assert_array_equal(got, exact)
    elif kind == "f16_f32":
        np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5)
    else:  # half accumulator: one rounding to half of the float sum
        np.testing.assert_allclose(got, exact, rtol=2e-3, atol=2e-3)


def test_wmma_needs_aligned_pointers(lib) -> None:
    raw = np.zeros(16 * 16 * 2 + 64, np.uint8)
    off = (-raw.ctypes.data) % 32 + 2  # 2 bytes past an aligned address
    bad = raw[off : off + 512].view(np.float16)
    ok = _aligned(np.zeros((16, 16), np.float32))
    with pytest.raises(KernelLaunchError, match="32-byte aligned"):
        _probe(lib, "ei_probe_wmma_f16_f32", 1, 32, a=bad, b=bad, c=ok, d=ok)


def test_partial_warp_mask_fails_the_launch(lib) -> None:
    x = np.zeros(32, np.float32)
    with pytest.raises(KernelLaunchError, match="mask must name every running lane"):
        _probe(lib, "ei_probe_partial_mask", 1, 32, x=x, out=np.zeros(32, np.float32))
    # the library still works after a failed launch
    out = np.zeros(64, np.float32)
    _probe(lib, "ei_probe_reverse", 1, 64, shared=256, x=np.arange(64, dtype=np.float32), out=out)
    assert out[0] == 63


def test_math_functions(lib) -> None:
    x = np.array(
        [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999997, -3.7, 3.7, 0.0, 1e9, -1e9], np.float32
    )
    out = np.zeros((len(x), 8), np.float32)
    _probe(lib, "ei_probe_math", 1, 32, x=x, out=out, n=len(x))
    from scipy.special import erf

    np.testing.assert_array_equal(out[:, 0], np.rint(x))
    x64 = x.astype(np.float64)  # half away from zero, exactly (0.49999997 rounds to 0)
    np.testing.assert_array_equal(out[:, 1], np.sign(x64) * np.floor(np.abs(x64) + 0.5))
    np.testing.assert_array_equal(out[:, 2], np.floor(x))
    np.testing.assert_array_equal(
        out[:, 3], np.rint(x).astype(np.float64).clip(-(2**31), 2**31 - 1).astype(np.float32)
    )
    np.testing.assert_array_equal(out[:, 4], np.fmin(x, 0.25) + np.fmax(x, -0.25))
    xi = np.trunc(x).clip(-(2**31), 2**31 - 1).astype(np.int64)
    np.testing.assert_array_equal(
        out[:, 5], (np.minimum(xi, 1) + np.maximum(xi, -1)).astype(np.float32)
    )
    np.testing.assert_allclose(out[:, 6], np.tanh(x.astype(np.float64)), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out[:, 7], erf(x.astype(np.float64)), rtol=1e-6, atol=1e-7)


def test_launch_checks() -> None:
    lib = ek.load(emu_variant())
    x = np.zeros(4, np.float32)
    with pytest.raises(KernelLaunchError, match="1 to 1024 threads"):
        _probe(lib, "ei_probe_reverse", 1, 2048, x=x, out=x)
    with pytest.raises(KernelLaunchError, match="dynamic shared memory"):
        _probe(lib, "ei_probe_reverse", 1, 32, shared=1 << 20, x=x, out=x)
    with pytest.raises(KernelLaunchError, match="takes ProbeParams"):
        lib.launch("ei_probe_reverse", 1, 32, ek.BugParams())
    with pytest.raises(KernelLaunchError, match="no kernel named"):
        lib.launch("ei_nope", 1, 32, ek.ProbeParams())

    class Short(ctypes.Structure):
        _fields_ = [("x", ctypes.c_void_p)]

    from edge_infer.cuda.library import KernelSpec

    lib.kernels["ei_probe_math"] = KernelSpec("ei_probe_math", "emu_probe.cu", Short)
    lib._checked.discard("ei_probe_math")
    try:
        with pytest.raises(KernelLaunchError, match="ctypes mirror Short is 8 bytes"):
            lib.launch("ei_probe_math", 1, 32, Short())
    finally:
        lib.kernels["ei_probe_math"] = next(s for s in ek.PROBES if s.entry == "ei_probe_math")
        lib._checked.discard("ei_probe_math")


def test_registered_library_builds_and_knows_every_entry(emu: EmuLibrary) -> None:
    from edge_infer.cuda import library

    for entry, spec in library.specs().items():
        assert emu.params_size(entry) == ctypes.sizeof(spec.params), entry


def test_warp_intrinsics_in_a_partial_last_warp(lib) -> None:
    """A block of 48 threads: the second warp has 16 lanes; votes see only those, shuffles
    from existing lanes move values as in a full warp."""
    x = np.random.default_rng(7).uniform(-3, 3, 48).astype(np.float32)
    out = np.zeros((48, 4), np.float32)
    iout = np.zeros((48, 3), np.int32)
    _probe(lib, "ei_probe_warp", 1, 48, x=x, out=out, iout=iout)
    v, o, io = x[32:], out[32:], iout[32:]
    lanes = np.arange(16)
    ballot = int(sum(1 << i for i in range(16) if v[i] > 0))
    assert (io[:, 0].view(np.uint32) == ballot).all()
    assert (io[:, 1] == int((v > 2.5).any())).all()
    assert (io[:, 2] == int((v > -2.5).all())).all()
    down = lanes + 5 < 16  # sources that exist
    np.testing.assert_array_equal(o[down, 1], v[lanes[down] + 5])
    np.testing.assert_array_equal(o[lanes >= 3, 2], v[lanes[lanes >= 3] - 3])
    xor = (lanes ^ 9) < 16
    np.testing.assert_array_equal(o[xor, 3], v[(lanes ^ 9)[xor]])


_HANG_SCRIPT = """
import sys
import numpy as np
from edge_infer.errors import KernelLaunchError
from tests.cuda import emu_kernels as ek
lib = ek.load(sys.argv[1])
print(lib.scheduler)
lib.set_hang_timeout(2)
out = np.zeros(32, np.float32)
for _ in range(2):
    try:
        lib.launch("ei_probe_deadlock", 1, 32, ek.ProbeParams(out=out.ctypes.data))
    except KernelLaunchError as exc:
        print("refused:", exc)
x = np.arange(64, dtype=np.float32)
try:
    params = ek.ProbeParams(x=x.ctypes.data, out=out.ctypes.data, n=64)
    lib.launch("ei_probe_block_sum", 1, 64, params)
    print("sum", out[0])
except KernelLaunchError as exc:
    print("refused:", exc)
"""

#: every build runs fibers unless EI_EMU_THREADS=1 asks for OS threads
SCHEDULERS = ["fibers", "threads"]


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_a_deadlocked_kernel_is_reported_not_hung(scheduler: str) -> None:
    """Fibers see the deadlock at once (no thread can run) and the library stays usable; OS
    threads are reported after the hang timeout and the library then refuses launches (their
    threads stay blocked)."""
    import os
    import subprocess
    import sys

    from edge_infer.cuda.emulator import sanitizer_env
    from tests.cuda.conftest import REPO

    variant = emu_variant()
    ek.load(variant)  # built here: the subprocess only loads it
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("EI_EMU_THREADS", None)
    if scheduler == "threads":
        env["EI_EMU_THREADS"] = "1"
    if variant != "plain":
        env.update(sanitizer_env(variant))
    proc = subprocess.run(
        [sys.executable, "-c", _HANG_SCRIPT, variant],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == scheduler, proc.stdout
    if scheduler == "fibers":
        assert all("kernel deadlocked" in line for line in lines[1:3]), proc.stdout
        assert lines[3] == f"sum {float(np.arange(64).sum())}", proc.stdout
    else:
        assert "made no progress for 2 s" in lines[1], proc.stdout
        assert "an earlier launch hung" in lines[2], proc.stdout
        assert "an earlier launch hung" in lines[3], proc.stdout


def test_registry_refuses_duplicates_and_missing_sources(monkeypatch) -> None:
    import sys
    import types

    from edge_infer.cuda import library
    from edge_infer.cuda.params.copy import CopyParams
    from edge_infer.errors import BackendError

    def fake(name: str, *specs: library.KernelSpec) -> str:
        module = types.ModuleType(name)
        module.SPECS = specs  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, name, module)
        return name

    dup = fake("ei_fake_dup", library.KernelSpec("ei_copy_b1", "copy.cu", CopyParams))
    monkeypatch.setattr(library, "CONCEPT_MODULES", ("edge_infer.cuda.params.copy", dup))
    library.specs.cache_clear()
    try:
        with pytest.raises(BackendError, match="registered twice"):
            library.specs()
        gone = fake("ei_fake_gone", library.KernelSpec("ei_gone", "gone.cu", CopyParams))
        monkeypatch.setattr(library, "CONCEPT_MODULES", (gone,))
        library.specs.cache_clear()
        with pytest.raises(BackendError, match="gone.cu does not exist"):
            library.specs()
    finally:
        monkeypatch.undo()
        library.specs.cache_clear()
    assert "ei_copy_b1" in library.specs()
    with pytest.raises(BackendError, match="no kernel named 'ei_nope'"):
        library.get("ei_nope")
