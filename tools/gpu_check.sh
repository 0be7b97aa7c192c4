#!/usr/bin/env bash
# The GPU check (issue 14): run on a machine with an NVIDIA GPU, no network needed.
#
#   tools/gpu_check.sh [--python PY] [--out DIR] [options of python -m tools.gpucheck]
#
# Environment report, pycuda built offline from vendor/pycuda, the gpu-marked tests, engine
# benchmarks (demo detector, YOLOv8n-640; FP32/FP16/INT8; batch 1 and 8) against PyTorch,
# a short daemon run. Results: DIR/gpu_check.json and DIR/gpu_check.md (DIR: $OUT when set,
# else build/gpu-check). Exit 0 all passed, 1 a step failed, 2 usage, 3 steps skipped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY=""
OUT_DIR="${OUT:-$ROOT/build/gpu-check}"
# the driver's own budget (its default: 460 s) and a hard stop 20 s above it: 8 minutes
BUDGET_S=460
ARGS=()

usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  echo
  echo "Options of the driver (python -m tools.gpucheck --help):"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --python)
      [ $# -ge 2 ] || { echo "gpu_check.sh: --python needs a value" >&2; exit 2; }
      PY="$2"; shift 2 ;;
    --out)
      [ $# -ge 2 ] || { echo "gpu_check.sh: --out needs a value" >&2; exit 2; }
      OUT_DIR="$2"; shift 2 ;;
    --budget)
      [ $# -ge 2 ] || { echo "gpu_check.sh: --budget needs a value" >&2; exit 2; }
      BUDGET_S="$2"; ARGS+=("$1" "$2"); shift 2 ;;
    -h|--help)
      usage
      HELP=1; shift ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

if [ -z "$PY" ]; then
  # the project's venv when there is one (a developer machine, /opt/edge-infer on a Jetson),
  # else the machine's python3 (a bare GPU image whose python3 holds torch)
  for candidate in "$ROOT/.venv/bin/python" /opt/edge-infer/venv/bin/python python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PY="$candidate"; break; fi
  done
fi
if [ -z "$PY" ] || ! command -v "$PY" >/dev/null 2>&1; then
  echo "gpu_check.sh: no python found (tried .venv, /opt/edge-infer/venv, python3;" \
    "use --python)" >&2
  exit 2
fi

cd "$ROOT"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [ "${HELP:-0}" -eq 1 ]; then
  exec "$PY" -m tools.gpucheck --help
fi
case "${BUDGET_S%.*}" in
  ''|*[!0-9]*) echo "gpu_check.sh: --budget takes seconds, got $BUDGET_S" >&2; exit 2 ;;
esac
LIMIT_S=$(( ${BUDGET_S%.*} + 20 ))
mkdir -p "$OUT_DIR"
echo "gpu_check.sh: $PY, results in $OUT_DIR, stopped after ${LIMIT_S} s at the latest"
# the driver stops itself inside its budget; timeout is the guard against a hang in the driver
# itself (SIGTERM, then SIGKILL 10 s later)
set +e
timeout --kill-after=10 "$LIMIT_S" "$PY" -m tools.gpucheck --out "$OUT_DIR" "${ARGS[@]}"
status=$?
set -e
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "gpu_check.sh: stopped at the ${LIMIT_S} s limit; partial results in $OUT_DIR" >&2
  exit 1
fi
exit "$status"
