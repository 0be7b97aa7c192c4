"""`edge-infer infer ENGINE [--input NAME=FILE.npy ...] [--output-dir DIR] [--batch N]`."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edge_infer.commands.device_option import add_device_argument, apply_device
from edge_infer.errors import BindingError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "infer",
        help="run an engine on .npy inputs (random when none are given)",
        description="Run an engine once and write one .npy file per output, named after it.",
    )
    p.add_argument("engine", help="engine file")
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=FILE.npy",
        help="an input tensor (repeat for several inputs)",
    )
    p.add_argument("--output-dir", default=".", help="where to write OUTPUT_NAME.npy files")
    p.add_argument("--batch", type=int, help="batch size for random inputs (default: profile opt)")
    p.add_argument("--seed", type=int, default=0, help="seed for random inputs")
    add_device_argument(p)
    p.set_defaults(func=run)


def _load_inputs(specs: list[str]) -> dict[str, np.ndarray]:
    feeds = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise BindingError(f"--input '{spec}': expected NAME=FILE.npy")
        path = Path(file)
        if not path.is_file():
            raise BindingError(f"--input '{spec}': no such file {file}")
        try:
            feeds[name] = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            # never unpickle: object arrays and non-.npy files are refused alike
            raise BindingError(
                f"--input '{spec}': {file} is not a .npy file holding a plain numeric array"
            ) from exc
    return feeds


def random_inputs(engine, batch: int | None, seed: int) -> dict[str, np.ndarray]:
    """Random inputs matching the engine's bindings (batch = profile opt by default)."""
    return engine.random_feeds(batch, seed)


def run(args: argparse.Namespace) -> int:
    from edge_infer.engine import Engine

    apply_device(args)
    engine = Engine.load(args.engine)
    feeds = _load_inputs(args.input) if args.input else random_inputs(engine, args.batch, args.seed)
    outputs = engine.create_context().execute(feeds)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, array in outputs.items():
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
        np.save(out_dir / f"{safe}.npy", array, allow_pickle=False)
        print(f"{name}: {array.dtype.name}{list(array.shape)} -> {out_dir / (safe + '.npy')}")
    return 0
