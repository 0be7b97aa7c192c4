"""Native conv kernels of this tree against those of another git revision, in one process.

The host's speed drifts by up to 2x within minutes, so two kernel versions timed in separate
runs cannot be compared to a few percent. Here both libraries are loaded side by side (this
tree's, and one compiled from ``--against REV``'s ``kernels/`` sources), one layer is bound
once, and its recorded native calls are replayed with either library, alternating call by
call; the report is the median of the per-pair time ratios (and its quartiles) plus the
largest difference between the two outputs. One thread. Results:
``bench/results/kernels.md`` (newest first). Not run by the tests.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/kernels.py \\
        --against HEAD~1 c1x1_80:direct_native stem:direct_native w48_40:winograd_native
"""

from __future__ import annotations

import argparse
import ctypes
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
KERNELS = "edge_infer/engine/backends/cpu/kernels"

#: the demo detector's layer shapes at batch 8: (x shape, Cout, kernel, stride), SiLU
LAYERS = {
    "stem": ((8, 3, 320, 320), 16, 3, 2),
    "down1": ((8, 16, 160, 160), 24, 3, 2),
    "down2": ((8, 24, 80, 80), 48, 3, 2),
    "c1x1_80": ((8, 24, 80, 80), 24, 1, 1),
    "c1x1_40": ((8, 112, 40, 40), 48, 1, 1),
    "w12_80": ((8, 12, 80, 80), 12, 3, 1),
    "w24_40": ((8, 24, 40, 40), 24, 3, 1),
    "w48_40": ((8, 48, 40, 40), 96, 3, 1),
    "w96_10": ((8, 96, 10, 10), 96, 3, 1),
}


def other_library(rev: str, work: Path) -> Any:
    """The kernels of ``rev`` compiled with this tree's flags, loaded with its signatures."""
    from edge_infer.engine.backends.cpu import native

    names = subprocess.run(
        ["git", "ls-tree", "--name-only", f"{rev}:{KERNELS}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in names:
        data = subprocess.run(
            ["git", "show", f"{rev}:{KERNELS}/{name}"], cwd=ROOT, check=True, capture_output=True
        ).stdout
        (work / name).write_bytes(data)
    target = work / "other.so"
    subprocess.run(
        [
            native._compiler() or "cc",
            *native._flags(),
            "-o",
            str(target),
            *sorted(str(p) for p in work.glob("*.c")),
        ],
        check=True,
    )
    lib = ctypes.CDLL(str(target))
    try:
        native.declare(lib)
    except AttributeError:  # kernels older than the argument structs of kernels/args.h
        raise SystemExit(
            f"{rev} predates the kernels' argument structs (args.h): compare "
            "against a revision from c97de0e on"
        ) from None
    if native.layout_mismatches(lib):
        raise SystemExit(f"{rev}'s kernel arguments differ from this tree's (args.h)")
    return lib


def recorded_calls(layer: str, tactic: str) -> tuple[list[Any], np.ndarray]:
    """Bind ``tactic`` to the layer (random data) and return the native calls it made."""
    from edge_infer.engine.backends.cpu import native
    from edge_infer.engine.backends.cpu.program import ScratchPool
    from edge_infer.engine.backends.cpu.tactics import CPU_TACTICS
    from edge_infer.engine.tactics.base import ConvSpec

    xs, cout, k, s = LAYERS[layer]
    p = k // 2
    ho, wo = (xs[2] + 2 * p - k) // s + 1, (xs[3] + 2 * p - k) // s + 1
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype(np.float32)
    w = (rng.standard_normal((cout, xs[1], k, k)) / np.sqrt(xs[1] * k * k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    spec = ConvSpec(xs, (xs[0], cout, ho, wo), w, b, (s, s), (p, p, p, p), (1, 1), 1, "silu")
    cls = next((t for t in CPU_TACTICS["conv"] if t.name == tactic), None)
    if cls is None or not cls.applicable(spec):
        raise SystemExit(f"{tactic} does not apply to {layer}")
    calls: list[Any] = []
    init = native.NativeCall.__init__

    def record(self: Any, *args: Any, **kw: Any) -> None:
        init(self, *args, **kw)
        calls.append(self)

    native.NativeCall.__init__ = record  # type: ignore[method-assign]
    try:
        out = np.empty(spec.out_shape, np.float32)
        cls(spec).bind([x, w, b], [out], ScratchPool())
    finally:
        native.NativeCall.__init__ = init  # type: ignore[method-assign]
    return calls, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "layers",
        nargs="+",
        metavar="LAYER:TACTIC",
        help=f"layers: {', '.join(LAYERS)}; tactics: direct_native, ocvec_native, winograd_native",
    )
    p.add_argument("--against", required=True, metavar="REV", help="git revision to compare")
    p.add_argument("--pairs", type=int, default=25, help="alternating timed pairs per layer")
    args = p.parse_args()

    from edge_infer.engine.backends.cpu.threads import set_thread_budget

    set_thread_budget(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        other = other_library(args.against, Path(tmp))
        for item in args.layers:
            layer, _, tactic = item.partition(":")
            calls, out = recorded_calls(layer, tactic)
            ours = [(c._fn, (c.args,)) for c in calls]
            theirs = [(getattr(other, c.name), (c.args,)) for c in calls]

            def run(fns: list[tuple[Any, tuple[Any, ...]]]) -> float:
                t = time.perf_counter()
                for fn, a in fns:
                    fn(*a)
                return time.perf_counter() - t

            run(theirs)
            ref = out.copy()
            run(ours)
            diff = float(np.abs(out - ref).max() / max(1e-30, float(np.abs(ref).max())))
            t_ours, t_theirs = [], []
            for k in range(args.pairs):  # alternate which goes first
                first, second = (ours, theirs) if k % 2 == 0 else (theirs, ours)
                a, b = run(first), run(second)
                t_ours.append(a if k % 2 == 0 else b)
                t_theirs.append(b if k % 2 == 0 else a)
            ratio = np.array(t_ours) / np.array(t_theirs)
            rows.append(
                (
                    layer,
                    tactic,
                    np.median(t_ours) * 1e3,
                    np.median(t_theirs) * 1e3,
                    np.median(ratio),
                    np.quantile(ratio, 0.25),
                    np.quantile(ratio, 0.75),
                    diff,
                )
            )
            print(
                f"{layer:8s} {tactic:16s} this tree {rows[-1][2]:8.3f} ms  {args.against} "
                f"{rows[-1][3]:8.3f} ms  ratio {rows[-1][4]:.3f} "
                f"[{rows[-1][5]:.3f}, {rows[-1][6]:.3f}]  max diff {diff:.1e}",
                flush=True,
            )
    rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    lines = [
        f"Kernels: this tree ({rev}, plus uncommitted changes) vs {args.against}, "
        f"{time.strftime('%Y-%m-%dT%H:%M:%S')}, 1 thread, {args.pairs} alternating pairs",
        "",
        "| layer | tactic | this tree ms | other ms | ratio (median) | quartiles | "
        "max diff (rel.) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r[0]} | {r[1]} | {r[2]:.3f} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.3f}–{r[6]:.3f}"
        f" | {r[7]:.1e} |"
        for r in rows
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "kernels.md"  # newest run first, earlier ones kept below
    earlier = path.read_text() if path.is_file() else ""
    path.write_text("\n".join(lines) + "\n" + ("\n" + earlier if earlier else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
