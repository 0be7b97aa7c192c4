"""Heavy dependencies stay at their address: cv2 and zmq only under pipeline/ and synth/."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_edge_infer_pulls_in_neither_cv2_nor_zmq() -> None:
    code = (
        "import sys, edge_infer, edge_infer.cli, edge_infer.pipeline.config; "
        "edge_infer.cli.make_parser(); "
        "print(sorted(m for m in ('cv2', 'zmq') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_cv2_and_zmq_are_imported_only_in_pipeline_and_synth() -> None:
    pattern = re.compile(r"^\s*(import|from)\s+(cv2|zmq)\b", re.M)
    offenders = []
    for path in (ROOT / "edge_infer").rglob("*.py"):
        rel = path.relative_to(ROOT / "edge_infer").parts
        if rel[0] in ("pipeline", "synth"):
            continue
        if pattern.search(path.read_text()):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
