"""``--device emu|N``: which CUDA device a command builds for or runs on."""

from __future__ import annotations

import argparse


def add_device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        metavar="emu|N",
        help="CUDA device for --backend cuda engines: 'emu' (the emulator, no GPU "
        "needed) or a GPU index (default 0)",
    )


def apply_device(args: argparse.Namespace) -> None:
    """Select ``--device`` for the CUDA backend of this process (before engines load)."""
    if getattr(args, "device", None) is not None:
        from edge_infer.engine import select_device

        select_device("cuda", args.device)
