"""Native (C, compiled on this machine) conv kernels: numerics, chunking, fallbacks, cache."""

from __future__ import annotations

import ctypes
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics.cpu_depthwise import DepthwiseNative
from edge_infer.engine.backends.cpu.tactics.cpu_direct import MR, DirectNative, pack_weights
from edge_infer.engine.backends.cpu.tactics.cpu_ocvec import OcVecNative
from edge_infer.engine.backends.cpu.tactics.cpu_winograd import WinogradNative, transform_weights
from edge_infer.engine.ops import get_registry
from edge_infer.engine.tactics.base import ConvSpec
from tests.engine.backends.cpu.tactics.test_cpu_conv import expected

CONV = get_registry().resolve("", "Conv", 17).kernel
HAVE_CC = shutil.which("cc") is not None

needs_cc = pytest.mark.skipif(not HAVE_CC, reason="no C compiler on this machine")

# x shape, Cout, kernel, strides, pads (t, l, b, r), dilations, group — sizes large enough
# for several chunks per image and partial register tiles (Cout % 6, positions % 16)
CASES = [
    ((1, 3, 64, 64), 16, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),
    ((2, 20, 24, 24), 23, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((1, 32, 40, 40), 64, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((2, 17, 33, 31), 7, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((1, 16, 30, 30), 12, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1),
    ((1, 8, 25, 27), 10, (5, 5), (3, 3), (2, 1, 0, 2), (1, 1), 1),
    ((1, 8, 21, 21), 9, (3, 3), (2, 2), (2, 2, 2, 2), (2, 2), 1),
    ((1, 6, 19, 23), 6, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((4, 8, 12, 12), 13, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),  # batch: chunk per image
    ((5, 16, 9, 9), 8, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((3, 12, 15, 15), 10, (3, 3), (2, 2), (0, 0, 0, 0), (1, 1), 1),  # read in place
    ((2, 48, 28, 28), 48, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 48),
    ((1, 40, 29, 29), 40, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 40),
    ((1, 24, 14, 14), 24, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 24),
    # Winograd: tiles past the output's edges, asymmetric pads, tiles spanning images
    ((3, 13, 10, 18), 17, (3, 3), (1, 1), (1, 2, 0, 1), (1, 1), 1),
    ((2, 48, 40, 40), 50, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
]
ACTS = [
    ("", ()),
    ("silu", ()),
    ("relu", ()),
    ("leaky_relu", (0.2,)),
    ("clip", (0.0, 6.0)),
    ("hard_swish", ()),
    ("hard_sigmoid", (0.3, 0.4)),
    ("sigmoid", ()),
    ("tanh", ()),
    ("mish", ()),
]


def _data(case, seed=0):
    xs, cout, k, strides, pads, dil, group = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(np.float32)
    w = (
        rng.standard_normal((cout, xs[1] // group, *k)) / np.sqrt(xs[1] // group * k[0] * k[1])
    ).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    conv = CONV(x, w, b, strides=list(strides), pads=list(pads), dilations=list(dil), group=group)
    return x, w, b, conv


NATIVE = (DirectNative, OcVecNative, DepthwiseNative, WinogradNative)


def _natives(spec):
    found = [t for t in NATIVE if t.applicable(spec)]
    assert found, "every case has a native tactic"
    return found


@needs_cc
def test_the_library_compiles_here() -> None:
    """With a compiler present the native tactics must be candidates (not silently off)."""
    assert native.available()
    assert DirectNative.applicable(
        ConvSpec(
            (1, 4, 8, 8),
            (1, 4, 8, 8),
            np.zeros((4, 4, 3, 3), np.float32),
            None,
            (1, 1),
            (1, 1, 1, 1),
            (1, 1),
            1,
        )
    )


@needs_cc
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"x{c[0]}o{c[1]}k{c[2]}s{c[3]}g{c[6]}")
@pytest.mark.parametrize("act", ACTS, ids=lambda a: a[0] or "none")
@pytest.mark.parametrize("residual", ["none", "pre", "post"])
def test_native_matches_reference(case, act, residual) -> None:
    x, w, b, conv = _data(case)
    xs, _cout, _k, strides, pads, dil, group = case
    z = np.random.default_rng(1).standard_normal(conv.shape).astype(np.float32)
    spec = ConvSpec(xs, conv.shape, w, b, strides, pads, dil, group, act[0], act[1], residual)
    want = expected(conv, z, act[0], act[1], residual)
    scale = max(float(np.abs(want).max()), 1.0)
    pool = WorkPool(2)
    try:
        for tactic in _natives(spec):
            out = np.full(conv.shape, np.nan, np.float32)
            run = tactic(spec).bind(
                [x, w, b] + ([z] if residual != "none" else []), [out], ScratchPool(pool)
            )
            run()
            run()  # scratch reuse (zero borders of the prepared input) must hold
            np.testing.assert_allclose(out, want, rtol=1e-4, atol=2e-5 * scale, err_msg=tactic.name)
    finally:
        pool.close()


def test_every_native_tactic_is_exercised() -> None:
    names = set()
    for case in CASES:
        xs, cout, k, strides, pads, dil, group = case
        conv_shape = _data(case)[3].shape
        spec = ConvSpec(
            xs,
            conv_shape,
            np.zeros((cout, xs[1] // group, *k), np.float32),
            None,
            strides,
            pads,
            dil,
            group,
        )
        names |= {t.name for t in NATIVE if t.applicable(spec)}
    assert names == {t.name for t in NATIVE} or not native.available()


@needs_cc
@pytest.mark.parametrize("case", [CASES[1], CASES[2], CASES[10]], ids=["3x3", "1x1", "dw"])
def test_strided_output_and_residual_views(case) -> None:
    """Concat elimination hands convs channel slices of bigger buffers, for out and z."""
    x, w, b, conv = _data(case, seed=3)
    xs, cout, _k, strides, pads, dil, group = case
    n, _, ho, wo = conv.shape
    zbig = np.random.default_rng(2).standard_normal((n, cout + 5, ho, wo)).astype(np.float32)
    z = zbig[:, 3 : 3 + cout]
    spec = ConvSpec(xs, conv.shape, w, b, strides, pads, dil, group, "silu", (), "post")
    want = expected(conv, np.ascontiguousarray(z), "silu", (), "post")
    for tactic in _natives(spec):
        big = np.full((n, cout + 4, ho, wo), -7.0, np.float32)
        view = big[:, 1 : 1 + cout]
        tactic(spec).bind([x, w, b, z], [view], ScratchPool())()
        np.testing.assert_allclose(view, want, rtol=1e-4, atol=1e-4, err_msg=tactic.name)
        assert (big[:, :1] == -7).all() and (big[:, 1 + cout :] == -7).all(), tactic.name


def test_winograd_transforms_are_exact_in_float64() -> None:
    """A^T [(G g G^T) ⊙ (B^T d B)] A is the 4x4 correlation of a 6x6 patch with a 3x3
    filter — the identity the kernel relies on — and U is packed [36][Cout/6][Cin][6]."""
    from edge_infer.engine.backends.cpu.tactics.cpu_winograd import AT, BT, G

    rng = np.random.default_rng(5)
    d, g = rng.standard_normal((6, 6)), rng.standard_normal((3, 3))
    y = AT @ ((G @ g @ G.T) * (BT @ d @ BT.T)) @ AT.T
    want = np.array([[(d[i : i + 3, j : j + 3] * g).sum() for j in range(4)] for i in range(4)])
    np.testing.assert_allclose(y, want, rtol=0, atol=1e-12)
    w = rng.standard_normal((7, 2, 3, 3)).astype(np.float32)
    u = transform_weights(w)
    assert u.shape == (36, 2, 2, 6)
    full = np.einsum("ai,ocij,bj->aboc", G, w.astype(np.float64), G)
    np.testing.assert_allclose(u[4 * 6 + 1, 1, 1, 0], full[4, 1, 6, 1], rtol=1e-6)
    assert (u[:, 1, :, 1:] == 0).all()  # channels past Cout are zero


def test_pack_weights_layout() -> None:
    w = np.arange(7 * 2 * 3 * 3, dtype=np.float32).reshape(7, 2, 3, 3)
    p = pack_weights(w)
    assert p.shape == (2, 18, MR)
    assert p[1, 5, 0] == w[MR, 0, 1, 2]  # block 1, term 5 = (ic 0, tap 5), channel 6
    assert (p[1, :, 1:] == 0).all()  # channels past Cout are zero


def test_disabled_by_environment(monkeypatch) -> None:
    monkeypatch.setenv("EDGE_INFER_NATIVE", "0")
    native.library.cache_clear()
    try:
        assert native.library() is None
        spec = ConvSpec(
            (1, 4, 8, 8),
            (1, 4, 8, 8),
            np.zeros((4, 4, 3, 3), np.float32),
            None,
            (1, 1),
            (1, 1, 1, 1),
            (1, 1),
            1,
        )
        assert not DirectNative.applicable(spec)
    finally:
        native.library.cache_clear()


def test_a_failing_compiler_warns_and_disables(monkeypatch, tmp_path, caplog) -> None:
    monkeypatch.setenv("EDGE_INFER_CACHE", str(tmp_path))
    monkeypatch.setenv("EDGE_INFER_CC", shutil.which("false") or "false")
    native.library.cache_clear()
    try:
        with caplog.at_level(logging.WARNING):
            assert native.library() is None
        assert "native CPU kernels not compiled" in caplog.text
        assert not list(tmp_path.rglob("*.so")) and not list(tmp_path.rglob("*.tmp"))
    finally:
        native.library.cache_clear()


@needs_cc
def test_compiled_once_into_the_cache(monkeypatch, tmp_path) -> None:
    """One object per source (compiled side by side), one link; then the cached library.
    Built at -O0 (the cache key and every compile take the patched flags): what is checked is
    the build's plumbing, and -O3 objects of every source are the session's own library
    (conv_pointwise.c alone takes 25-90 s at -O3 on a 2-core CI host, a few at -O0)."""
    monkeypatch.setenv("EDGE_INFER_CACHE", str(tmp_path))
    real_flags = native._flags()
    fast = [f for f in real_flags if not f.startswith("-O")] + ["-O0"]
    monkeypatch.setattr(native, "_flags", lambda: fast)
    native.library.cache_clear()
    calls: list[list[str]] = []
    real_popen = native.subprocess.Popen

    def popen(args, **kw):  # type: ignore[no-untyped-def]
        calls.append(list(args))
        return real_popen(args, **kw)

    monkeypatch.setattr(native.subprocess, "Popen", popen)
    try:
        assert native.library() is not None
        sources = sorted(native.KERNELS.glob("*.c"))
        compiled = sorted(Path(c[-1]).name for c in calls if "-c" in c)
        assert compiled == [s.name for s in sources]
        assert all("-O0" in c and "-O3" not in c for c in calls if "-o" in c)
        links = [c for c in calls if "-shared" in c]
        assert len(links) == 1 and sum(a.endswith(".o") for a in links[0]) == len(sources)
        (so,) = tmp_path.rglob("*.so")
        stamp = so.stat().st_mtime_ns
        native.library.cache_clear()
        assert native.library() is not None
        assert so.stat().st_mtime_ns == stamp  # reused, not rebuilt
        assert not list(tmp_path.rglob("*.tmp"))
    finally:
        native.library.cache_clear()


@needs_cc
def test_a_library_is_built_from_the_bytes_its_key_hashes_and_calls_keep_it(
    monkeypatch, tmp_path
) -> None:
    """A kernel file saved while the library compiles (a tree someone works in) is not in
    that library: the sources are read once, hashed for its key and compiled from copies.
    Reading them again at compile time stored the edited code under the old sources' key,
    and a later run with those sources loaded it. -O0, as test_compiled_once_into_the_cache."""
    folder = tmp_path / "kernels"
    shutil.copytree(native.KERNELS, folder)
    monkeypatch.setenv("EDGE_INFER_CACHE", str(tmp_path / "cache"))
    fast = [f for f in native._flags() if not f.startswith("-O")] + ["-O0"]
    monkeypatch.setattr(native, "_flags", lambda: fast)
    marker = b"long ei_saved_meanwhile(void) { return 1; }"
    real_popen = native.subprocess.Popen

    def popen(args, **kw):  # type: ignore[no-untyped-def]
        if "-c" in args and marker not in (folder / "pool.c").read_bytes():  # compiling
            with open(folder / "pool.c", "ab") as f:
                f.write(b"\n" + marker + b"\n")
        return real_popen(args, **kw)

    monkeypatch.setattr(native.subprocess, "Popen", popen)
    with native.kernels_from(folder) as lib:
        assert lib is not None
        assert not hasattr(lib, "ei_saved_meanwhile")
        key = native._library_key(native._compiler())
        assert marker not in dict(native._sources(folder))["pool.c"]
        fields = {"x": None, "y": None, "n": 0, "kind": 0, "half": 0}
        call = native.NativeCall("unary_f32", fields, ())  # bound on this library
        side = ctypes.cast(lib.unary_task, ctypes.c_void_p).value
    assert marker in (folder / "pool.c").read_bytes()  # the edit happened, during the build
    assert [p.name for p in (tmp_path / "cache").rglob("*.so")] == [f"kernels-{key}.so"]
    monkeypatch.undo()  # this tree's library again (its flags, the session's cache)
    native._library_key.cache_clear()
    native.library.cache_clear()
    assert native.library() is not None
    # the call's pool task, first asked for now (a program fuses at its first run), is still
    # the library's it was bound with, not the one loaded now
    here = ctypes.cast(native.library().unary_task, ctypes.c_void_p).value
    assert side != here and call.task[0] == side


@needs_cc
def test_a_compile_past_its_time_limit_disables_native_kernels(monkeypatch, tmp_path, caplog):
    """A compile killed at its limit (the whole process group: cc1 too) leaves no library
    and no temp file; the build goes on without native kernels and says why."""
    monkeypatch.setenv("EDGE_INFER_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "COMPILE_TIMEOUT_S", 0.05)
    native.library.cache_clear()
    try:
        with caplog.at_level(logging.WARNING):
            assert native.library() is None
        assert "native CPU kernels not compiled" in caplog.text and "timed out" in caplog.text
        assert not list(tmp_path.rglob("*.so")) and not list(tmp_path.rglob("*.tmp"))
    finally:
        native.library.cache_clear()


@needs_cc
@pytest.mark.parametrize("group", [1, 8])
def test_input_views_with_gaps(group) -> None:
    """An input that is a strided view (rows not unit-stride, channels a slice) still works."""
    rng = np.random.default_rng(7)
    big = rng.standard_normal((2, 12, 9, 22)).astype(np.float32)
    x = big[:, 2:10, :, ::2]
    w = rng.standard_normal((8, 8 // group, 3, 3)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    conv = CONV(np.ascontiguousarray(x), w, b, strides=[2, 2], pads=[1, 1, 1, 1], group=group)
    spec = ConvSpec(x.shape, conv.shape, w, b, (2, 2), (1, 1, 1, 1), (1, 1), group, "relu")
    for tactic in _natives(spec):
        out = np.empty(conv.shape, np.float32)
        tactic(spec).bind([x, w, b], [out], ScratchPool())()
        np.testing.assert_allclose(
            out, np.maximum(conv, 0), rtol=1e-4, atol=1e-4, err_msg=tactic.name
        )


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("EDGE_INFER_CACHE", raising=False)
    monkeypatch.setenv("CACHE_DIRECTORY", f"{tmp_path}/unit:{tmp_path}/other")  # systemd
    assert native.cache_dir() == tmp_path / "unit" / "kernels"
    monkeypatch.setenv("EDGE_INFER_CACHE", str(tmp_path / "mine"))
    assert native.cache_dir() == tmp_path / "mine" / "kernels"


def test_a_native_choice_falls_back_where_native_kernels_are_missing(monkeypatch, caplog) -> None:
    """An engine whose layers chose native tactics still runs on a machine where they cannot
    be compiled: each such layer binds its default tactic, with a warning naming both."""
    import edge_infer
    from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS
    from edge_infer.engine.tactics import select_tactic
    from edge_infer.zoo import build_model

    model = build_model("yolov8n", imgsz=64, nc=3, batch=1, fold_bn=True).SerializeToString()
    graph = edge_infer.build(model, tune=False).graph(1)
    node = next(n for n in graph.nodes if n.op_type == "FusedConv")
    monkeypatch.setattr(native, "library", lambda: None)
    with caplog.at_level(logging.WARNING):
        tactic = select_tactic(node, CPU_TACTICS, "direct_native")
    assert tactic is not None and not tactic.name.endswith("_native")
    assert f"tactic direct_native is not available here; running {tactic.name}" in caplog.text


@needs_cc
@pytest.mark.parametrize("act", ["sigmoid", "silu", "tanh"])
def test_activations_at_extreme_inputs(act) -> None:
    """Sigmoid, SiLU and tanh in the kernels' registers (a clamped float32 exp, a division):
    within 1e-6 relative of float64 from -1e4 to 1e4, no NaN/inf, tiny results where the true
    value underflows (an approximate reciprocal without a Newton step fails this)."""
    values = np.array(
        [
            -1e4,
            -200,
            -88.5,
            -87,
            -50,
            -20,
            -3,
            -1e-3,
            -1e-30,
            0.0,
            1e-30,
            1e-3,
            0.5,
            3,
            20,
            50,
            87,
            88.5,
            200,
            1e4,
        ],
        np.float64,
    )
    c = 32  # positions: 2 strips of 16 per channel, every value in every channel
    x = np.resize(values, (1, c, 1, 2 * len(values))).astype(np.float32)
    w = np.eye(c, dtype=np.float32).reshape(c, c, 1, 1)  # out = x
    spec = ConvSpec(x.shape, x.shape, w, None, (1, 1), (0, 0, 0, 0), (1, 1), 1, act)
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore"):  # exp(1e4) = inf: the float64 reference is still right
        e = np.exp(-x64)
    want = {"sigmoid": 1 / (1 + e), "silu": x64 / (1 + e), "tanh": np.tanh(x64)}[act]
    for tactic in _natives(spec):
        out = np.full(x.shape, np.nan, np.float32)
        tactic(spec).bind([x, w], [out], ScratchPool())()
        assert np.isfinite(out).all(), tactic.name
        np.testing.assert_allclose(
            out, want, rtol=1e-6, atol=1e-30 if act != "tanh" else 1e-7, err_msg=tactic.name
        )


#: dense convs whose input direct_native lays out (padding or strides)
LAID_OUT = [c for c in CASES if c[6] == 1 and (c[2] != (1, 1) or c[3] != (1, 1) or any(c[4]))]


@needs_cc
@pytest.mark.parametrize(
    "case", LAID_OUT, ids=lambda c: f"x{c[0]}o{c[1]}k{c[2]}s{c[3]}p{c[4]}d{c[5]}"
)
@pytest.mark.parametrize("rows", [1, 2, 5])
@pytest.mark.parametrize("workers", [1, 2])
def test_direct_native_in_bands(monkeypatch, case, rows, workers) -> None:
    """direct_native lays out big inputs a band of rows at a time: bands of 1, 2 and 5 output
    rows (last band partial), stride phases, dilations, asymmetric pads, a residual, run twice
    (the reused band buffer's zero borders), one thread or two (per image or row ranges)."""
    from edge_infer.engine.backends.cpu.tactics import cpu_direct

    x, w, b, conv = _data(case, seed=5)
    xs, _cout, _k, strides, pads, dil, group = case
    z = np.random.default_rng(6).standard_normal(conv.shape).astype(np.float32)
    spec = ConvSpec(xs, conv.shape, w, b, strides, pads, dil, group, "silu", (), "post")
    row_bytes, _, ext = cpu_direct.band_geometry(spec)
    monkeypatch.setattr(cpu_direct, "BAND_BYTES", row_bytes * (ext + rows))
    monkeypatch.setattr(cpu_direct, "MIN_BAND_ROWS", 1)
    monkeypatch.setattr(cpu_direct, "WHOLE_MAX_BYTES", 0)
    tactic = DirectNative(spec)
    assert tactic._banding() == (min(rows, conv.shape[2]), ext)
    made = []
    init = native.NativeCall.__init__

    def record(self, name, *args):
        made.append(name)
        init(self, name, *args)

    monkeypatch.setattr(native.NativeCall, "__init__", record)
    want = expected(conv, z, "silu", (), "post")
    pool = WorkPool(workers) if workers > 1 else None
    try:
        out = np.full(conv.shape, np.nan, np.float32)
        run = tactic.bind([x, w, b, z], [out], ScratchPool(pool))
        assert set(made) == {"conv_banded_f32"}
        run()
        run()
    finally:
        if pool is not None:
            pool.close()
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=2e-5 * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize(
    "parts,workers,want", [(3, 2, 4), (2, 2, 2), (1, 2, 1), (5, 4, 8), (3, 1, 3)]
)
def test_ocvec_chunks_whole_rounds(parts: int, workers: int, want: int) -> None:
    """ocvec_native splits a layer in whole rounds of its workers (3 chunks on 2 threads
    left one thread 2/3 of the work)."""
    scratch = type("S", (), {"workers": workers})()
    assert OcVecNative._whole_rounds(parts, scratch) == want
