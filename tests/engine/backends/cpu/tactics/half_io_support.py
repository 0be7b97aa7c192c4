"""What the float16-storage (``half_io``) tests share: a case's bits against the conversion
route (inputs widened into float32, the same kernel on float32, the output narrowed to
nearest even float16, numpy's astype), special values, recordings of a case's native calls
and their replay under qemu-user on aarch64. Each case is a dict: ``tactic`` (the class),
``spec``, ``ins``, ``out`` and ``name``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics import cpu_fp16
from tests.engine.backends.cpu.aarch64 import emulated, replay

F16, F32 = np.dtype(np.float16), np.dtype(np.float32)
ACTS = [
    ("", ()),
    ("relu", ()),
    ("leaky_relu", (0.2,)),
    ("clip", (-0.5, 6.0)),
    ("sigmoid", ()),
    ("silu", ()),
    ("hard_swish", ()),
    ("hard_sigmoid", (0.3, 0.4)),
    ("tanh", ()),
]
#: build → the float16 path its kernels must report (half.h EI_H8_PATH)
HALF_PATH = {"avx512": 1, "avx2": 1, "x86-64": 0}


def special_values(
    rng: np.random.Generator, shape: tuple[int, ...], scale: float, picks: int = 40
) -> np.ndarray:
    """Random float32 values with float16's special cases sprinkled in (``picks`` of them):
    infinities, NaN, values that round to float16 subnormals, to infinity (>= 65520), exact
    ties."""
    x = (rng.standard_normal(shape) * scale).astype(F32)
    flat = x.reshape(-1)
    pick = rng.choice(flat.size, min(flat.size, picks), replace=False)
    halves = rng.integers(0, 0x7C00, pick.size).astype(np.uint16).view(F16).astype(F32)
    ties = (halves.view(np.uint32) + (1 << 12)).view(F32)  # halfway between two float16s
    values = [np.inf, -np.inf, np.nan, 65520.0, -70000.0, 3e-6, -(2**-25), 2**-24 * 1.5]
    flat[pick] = np.resize(np.concatenate([values, ties]), pick.size)
    return x


def random_values(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    scale: float,
    special: bool,
    picks: int = 40,
) -> np.ndarray:
    """Normal float32 values times ``scale``; with ``special`` float16's special cases
    sprinkled in (special_values)."""
    if special:
        return special_values(rng, shape, scale, picks)
    return (rng.standard_normal(shape) * scale).astype(F32)


def wide(a: Any) -> Any:
    """A float16 array widened to float32; anything else as it is."""
    return a.astype(F32) if isinstance(a, np.ndarray) and a.dtype == F16 else a


def narrowed(f32: np.ndarray, like: np.ndarray) -> np.ndarray:
    """float32 values narrowed to ``like``'s storage (nearest even, overflow to infinity)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return f32.astype(like.dtype)


def float32_route(c: dict[str, Any], pool: WorkPool | None = None) -> np.ndarray:
    """The conversion route's bits: inputs widened, the kernel on float32, the output
    narrowed to the layer's storage."""
    out32 = np.full(c["out"].shape, np.nan, F32)
    c["tactic"](c["spec"]).bind([wide(a) for a in c["ins"]], [out32], ScratchPool(pool))()
    return narrowed(out32, c["out"])


def assert_bits(got: np.ndarray, want: np.ndarray, what: str) -> None:
    u = np.uint16 if got.dtype == F16 else np.uint32
    same = got.view(u) == want.view(u)
    assert same.all(), f"{what}: {int((~same).sum())} of {same.size} values differ in bits"


def float16_kinds(want: np.ndarray) -> set[str]:
    """Which of infinity, NaN and subnormal ``want`` holds."""
    kinds = {"inf"} if np.isinf(want).any() else set()
    kinds |= {"nan"} if np.isnan(want).any() else set()
    kinds |= {"subnormal"} if ((want != 0) & (np.abs(want) < 2**-14)).any() else set()
    return kinds


@contextmanager
def work_pool(threads: int) -> Iterator[WorkPool | None]:
    """A pool of ``threads`` (none for one), closed afterwards."""
    pool = WorkPool(threads) if threads > 1 else None
    try:
        yield pool
    finally:
        if pool is not None:
            pool.close()


def assert_half_storage_bit_for_bit(cases: Iterable[dict[str, Any]], threads: int) -> None:
    """Each case's tactic takes float16 storage and writes the conversion route's bits."""
    with work_pool(threads) as pool:
        for c in cases:
            t = c["tactic"](c["spec"])
            assert cpu_fp16.takes_half(t)
            t.bind(c["ins"], [c["out"]], ScratchPool(pool))()
            assert_bits(c["out"], float32_route(c, pool), c["name"])


def recorded(c: dict[str, Any], half: bool) -> replay.Recording:
    """The case's native calls, float16 storage (``half``) or the float32 route's, bound and
    run on the host and recorded; the output NaN again."""
    ins = c["ins"] if half else [wide(a) for a in c["ins"]]
    out = c["out"] if half else np.full(c["out"].shape, np.nan, F32)
    keep = [a for a in ins if isinstance(a, np.ndarray)]
    with replay.recording(c["name"] + (" half" if half else " f32"), keep, out) as rec:
        c["tactic"](c["spec"]).bind(ins, [out], ScratchPool())()
    out.fill(np.nan)
    return rec


def assert_aarch64_is_the_conversion_route(
    exe: Path, tmp_path: Path, cases: list[dict[str, Any]], recs: list[replay.Recording]
) -> None:
    """``recs`` (each case's float16 recording, then its float32 route's) replayed by the
    aarch64 driver ``exe`` (emulated.driver) under qemu-user: the float16 outputs are the
    float32 route's, narrowed, bit for bit."""
    outs = emulated.replayed(exe, tmp_path, recs)
    for k, c in enumerate(cases):
        got, f32 = outs[2 * k], outs[2 * k + 1]
        assert not np.isnan(f32).all(), c["name"]  # the replay wrote the output
        assert_bits(got, narrowed(f32, got), f"aarch64 {c['name']}")
