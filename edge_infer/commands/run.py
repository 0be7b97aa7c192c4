"""`edge-infer run --config FILE`: the camera daemon (what the systemd unit starts)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the camera daemon (cameras → batched inference → ZeroMQ)",
        description="Run the detection daemon described by a YAML config (see docs/daemon.md). "
        "Under systemd it reports READY/WATCHDOG/STATUS through NOTIFY_SOCKET.",
    )
    p.add_argument("--config", required=True, help="YAML config file")
    p.add_argument(
        "--check",
        action="store_true",
        help="validate the config and what it names (camera files, engine/ONNX/"
        "calibration files, CURVE keys, endpoints) and exit: 0 when all is well, "
        "1 with one line per problem",
    )
    p.add_argument(
        "--build-only",
        action="store_true",
        help="load the engine, building it from engine.onnx when missing, and exit "
        "(what edge-infer-build.service runs)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_infer.pipeline.config import load_config

    cfg = load_config(args.config)
    if args.check:
        from edge_infer.pipeline.checks import config_problems

        problems = config_problems(cfg)
        if problems:
            print(f"{args.config}: {len(problems)} problem(s):")
            for line in problems:
                print(f"  {line}")
            return 1
        print(f"{args.config}: valid ({len(cfg.cameras)} cameras, device {cfg.device_id})")
        return 0
    if args.build_only:
        from edge_infer.pipeline.engine_setup import engine_for

        _, engine = engine_for(cfg)
        print(
            f"{cfg.engine.path}: ready (batch {engine.profile.min_batch}.."
            f"{engine.profile.max_batch}, {engine.build_record.get('backend', '?')})"
        )
        return 0
    from edge_infer.pipeline.daemon import run_daemon

    return run_daemon(cfg)
