"""``ocvec_native`` on MobileNetV2's 1×1 layers: the kernel (kernels/conv_ocvec.c) and tactic
of a git revision ("old") against the working tree's ("new"), in one process, round by round
(a loaded machine slows both alike); medians and the median per-round ratio new/old.

"old" is conv_ocvec.c at ``--base`` compiled alone (with this tree's args.c: the argument
struct must not have changed) and swapped into the bound calls; ``--old-whole-tiles`` binds
it as the tactic did before the last tile of left-over positions (a plain projection read
in place only where its positions fill whole tiles); ``--old-tail-max-cin`` /
``--old-min-positions`` with the in-place limits of an earlier tactic. ``--evict-mb`` writes
a buffer before each timed call, so that weights and input come from memory or L3 as they
do between a model's layers.

Run (BLAS unthrottled):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.ocvec_ab \\
        --layers f15e f15p --batches 1 8 --threads 1 2 --base HEAD
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.alternating import median_ratio
from bench.pointwise_ab import bound, old_library
from bench.pw_tactics import LAYERS, spec_and_inputs

KERNEL = "edge_infer/engine/backends/cpu/kernels/conv_ocvec.c"


def whole_tiles() -> type:
    """ocvec_native reading a plain projection in place only when its positions fill whole
    tiles (as before the tile of left-over positions)."""
    from edge_infer.engine.backends.cpu.tactics.cpu_ocvec import OcVecNative

    class WholeTiles(OcVecNative):
        def _plain_rows(
            self, x: np.ndarray, positions: int, pb: int, per_image: bool = False
        ) -> np.ndarray | None:
            if positions % pb:
                return None
            return super()._plain_rows(x, positions, pb, per_image)

    return WholeTiles


def tail_cin_limit(limit: int | None, min_positions: int | None) -> type:
    """ocvec_native reading a plain projection whose positions leave a short last tile in
    place only up to ``limit`` input channels (as before the kernel blocked its terms:
    384), and none of fewer than ``min_positions`` positions."""
    from edge_infer.engine.backends.cpu.tactics.cpu_ocvec import OcVecNative

    class TailLimit(OcVecNative):
        def _plain_rows(
            self, x: np.ndarray, positions: int, pb: int, per_image: bool = False
        ) -> np.ndarray | None:
            if limit is not None and positions % pb and self.spec.cin > limit:
                return None
            if min_positions is not None and positions < min_positions:
                return None
            return super()._plain_rows(x, positions, pb, per_image)

    return TailLimit


def layer(
    name: str, b: int, rounds: int, pool: Any, old: Any, old_cls: Any, evict: np.ndarray | None
) -> dict:
    from edge_infer.engine.backends.cpu.tactics.cpu_ocvec import OcVecNative

    spec, ins, _, _ = spec_and_inputs(name, b)
    outs = {k: np.empty(spec.out_shape, np.float32) for k in ("old", "new")}
    runs = {
        "old": bound(spec, ins, outs["old"], pool, old, old_cls),
        "new": bound(spec, ins, outs["new"], pool, None, OcVecNative),
    }
    for r in runs.values():
        r()
    np.testing.assert_array_equal(outs["new"], outs["old"], err_msg=f"{name} b{b}")
    for _ in range(3):
        for r in runs.values():
            r()
    times: dict[str, list[float]] = {"old": [], "new": []}
    for i in range(rounds):
        for k in ("old", "new") if i % 2 else ("new", "old"):
            if evict is not None:  # other layers' data through the caches, as in a model
                evict += 1.0
            t0 = time.perf_counter()
            runs[k]()
            times[k].append(time.perf_counter() - t0)
    return {
        "us": {k: round(float(np.median(v)) * 1e6) for k, v in times.items()},
        "new/old": median_ratio(times["new"], times["old"]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", nargs="+", choices=LAYERS, default=list(LAYERS))
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--threads", nargs="+", type=int, default=[2])
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--base", default="HEAD", help="git revision of the old kernel")
    p.add_argument("--base-file", help="the old kernel's source file instead of --base's")
    p.add_argument(
        "--evict-mb",
        type=float,
        default=0.0,
        help="write this many MB before each timed call (weights and input leave the caches "
        "as between a model's layers; 0: every call finds them where the last one left them)",
    )
    p.add_argument("--old-whole-tiles", action="store_true")
    p.add_argument(
        "--old-tail-max-cin",
        type=int,
        help="bind old reading in place only up to this many input channels where the "
        "positions leave a short last tile (384 before the kernel blocked its terms)",
    )
    p.add_argument(
        "--old-min-positions",
        type=int,
        help="bind old reading no plain projection of fewer positions in place",
    )
    args = p.parse_args(argv)
    from edge_infer.engine.backends.cpu.parallel import WorkPool
    from edge_infer.engine.backends.cpu.tactics.cpu_ocvec import OcVecNative

    old_cls = whole_tiles() if args.old_whole_tiles else OcVecNative
    if args.old_tail_max_cin is not None or args.old_min_positions is not None:
        old_cls = tail_cin_limit(args.old_tail_max_cin, args.old_min_positions)
    with tempfile.TemporaryDirectory() as t:
        kernel = KERNEL
        if args.base_file:  # the file's text as of "HEAD", from a scratch copy
            kernel = str(Path(t) / "base_kernel.c")
            Path(kernel).write_text(Path(args.base_file).read_text())
        old = old_library(args.base, Path(t), kernel)
        size = int(args.evict_mb * (1 << 20)) // 4
        evict = np.zeros(size, np.float32) if size else None
        for threads in args.threads:
            pool = WorkPool(threads) if threads > 1 else None
            try:
                for b in args.batches:
                    for name in args.layers:
                        r = layer(name, b, args.rounds, pool, old, old_cls, evict)
                        print(
                            f"{name} b{b} t{threads}: old {r['us']['old']} new {r['us']['new']}"
                            f" us, new/old {r['new/old']}",
                            flush=True,
                        )
            finally:
                if pool is not None:
                    pool.close()
    print(f"load average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
