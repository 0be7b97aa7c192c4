"""The ``edge-infer`` command line: one subcommand per module in ``edge_infer/commands``.

The list below is the whole registry of commands; each module defines
``register(subparsers)`` which adds its parser and sets ``func`` to a function taking the
parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from edge_infer._version import __version__
from edge_infer.errors import EdgeInferError

#: subcommand modules, in the order `edge-infer --help` lists them
COMMANDS: tuple[str, ...] = (
    "build",
    "infer",
    "inspect",
    "bench",
    "compare",
    "calibrate",
    "synth",
    "evaluate",
    "run",
    "subscribe",
    "demo",
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-infer",
        description="Build device-tuned inference engines from ONNX and run them.",
    )
    parser.add_argument("--version", action="version", version=f"edge-infer {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"edge_infer.commands.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except EdgeInferError as exc:
        print(f"edge-infer {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"edge-infer {args.command}: interrupted", file=sys.stderr)
        return 130
