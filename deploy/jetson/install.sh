#!/usr/bin/env bash
# Install edge-infer as a systemd service on a Jetson (JetPack 5/6, Ubuntu 20.04/22.04) or any
# Debian/Ubuntu machine. Run from a checkout as root:
#
#   sudo deploy/jetson/install.sh [--config FILE] [--model FILE.onnx] [--cuda]
#                                 [--system-opencv] [--no-start]
#
# --system-opencv: the daemon uses the system's OpenCV (JetPack's, built with GStreamer: what
# `decode: hardware` cameras need) instead of PyPI's wheel. Idempotent: re-running upgrades
# the package and keeps /etc/edge-infer/config.yaml.
set -euo pipefail

PREFIX=/opt/edge-infer
ETC=/etc/edge-infer
STATE=/var/lib/edge-infer
CACHE=/var/cache/edge-infer
USER_NAME=edge-infer
CONFIG=""
MODEL=""
WITH_CUDA=0
SYSTEM_OPENCV=0
START=1

usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --config) CONFIG="$2"; shift 2 ;;
    --model) MODEL="$2"; shift 2 ;;
    --cuda) WITH_CUDA=1; shift ;;
    --system-opencv) SYSTEM_OPENCV=1; shift ;;
    --no-start) START=0; shift ;;
    -h|--help) usage 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage 2 ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (sudo)" >&2
  exit 1
fi

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

echo "== system packages"
bash "$SRC/tools/install_system_deps.sh"
apt-get install -y -qq --no-install-recommends python3-venv python3-dev gcc >/dev/null

echo "== user and folders"
if ! id "$USER_NAME" >/dev/null 2>&1; then
  useradd --system --home-dir "$STATE" --shell /usr/sbin/nologin "$USER_NAME"
fi
for group in video render; do
  if getent group "$group" >/dev/null; then
    usermod -a -G "$group" "$USER_NAME"
  fi
done
install -d -o root -g root -m 0755 "$PREFIX"
install -d -o root -g "$USER_NAME" -m 0750 "$ETC"
install -d -o "$USER_NAME" -g "$USER_NAME" -m 0750 "$STATE" "$CACHE"

echo "== python environment in $PREFIX/venv"
if [ ! -x "$PREFIX/venv/bin/python" ]; then
  python3 -m venv "$PREFIX/venv"
fi
"$PREFIX/venv/bin/pip" install --quiet --upgrade pip
NUMPY="numpy"
PINS=()
if [ "$SYSTEM_OPENCV" -eq 1 ]; then
  # the system's site-packages visible in the venv (JetPack's cv2, with GStreamer); numpy kept
  # at 1.x, which the system cv2 is compiled against
  sed -i 's/^include-system-site-packages = false/include-system-site-packages = true/' \
    "$PREFIX/venv/pyvenv.cfg"
  NUMPY="numpy>=1.26,<2"
  PINS=("$NUMPY")
fi
"$PREFIX/venv/bin/pip" install --quiet "${SRC}[pipeline]" "${PINS[@]}"
if [ "$WITH_CUDA" -eq 1 ]; then
  # pycuda must be compiled against this device's CUDA (JetPack ships it in /usr/local/cuda):
  # built from the source distribution kept in vendor/pycuda (checked against its manifest,
  # installed with pip --no-index), so it needs no PyPI and matches the GPU check's build
  export CUDA_ROOT="${CUDA_ROOT:-/usr/local/cuda}"
  if [ ! -f "$CUDA_ROOT/include/cuda.h" ]; then
    echo "install.sh: --cuda needs the CUDA toolkit headers in $CUDA_ROOT/include" \
      "(JetPack: sudo apt-get install nvidia-jetpack, or set CUDA_ROOT)" >&2
    exit 1
  fi
  export PATH="$CUDA_ROOT/bin:$PATH"
  # libnvrtc (kernels compiled for this GPU's SM at engine build time) is in the toolkit
  export LD_LIBRARY_PATH="$CUDA_ROOT/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  apt-get install -y -qq --no-install-recommends g++ >/dev/null
  "$PREFIX/venv/bin/pip" install --quiet setuptools wheel "$NUMPY"
  (cd "$SRC" && PYTHONPATH="$SRC" "$PREFIX/venv/bin/python" -m tools.gpucheck.pycuda_install \
    --install "$CACHE/pycuda-build")
  "$PREFIX/venv/bin/pip" install --quiet "${SRC}[pipeline,cuda]" "${PINS[@]}"
  "$PREFIX/venv/bin/python" -c 'import pycuda.driver as d; d.init();
print("   pycuda:", d.Device(0).name(), "CUDA", d.get_version())'
fi
if [ "$SYSTEM_OPENCV" -eq 1 ]; then
  # PyPI's OpenCV wheel (no GStreamer) removed so it cannot shadow the system's
  "$PREFIX/venv/bin/pip" uninstall --quiet --yes opencv-python-headless opencv-python \
    >/dev/null 2>&1 || true
  if ! "$PREFIX/venv/bin/python" -c 'import cv2, sys
line = [x for x in cv2.getBuildInformation().splitlines() if x.strip().startswith("GStreamer:")]
print("   OpenCV", cv2.__version__, "from", cv2.__file__, "|", (line or ["GStreamer: NO"])[0].strip())
sys.exit(0 if line and "YES" in line[0] else 1)'; then
    echo "install.sh: --system-opencv: the system OpenCV is missing or has no GStreamer;" \
      "install JetPack's (part of nvidia-jetpack) or python3-opencv, see" \
      "docs/hardware-decoding.md" >&2
    exit 1
  fi
fi
install -d -m 0755 "$PREFIX/docs"
install -m 0644 "$SRC/docs/daemon.md" "$PREFIX/docs/daemon.md"

echo "== configuration"
if [ -n "$MODEL" ]; then
  install -o root -g "$USER_NAME" -m 0640 "$MODEL" "$ETC/model.onnx"
fi
if [ -n "$CONFIG" ]; then
  install -o root -g "$USER_NAME" -m 0640 "$CONFIG" "$ETC/config.yaml"
elif [ ! -f "$ETC/config.yaml" ]; then
  install -o root -g "$USER_NAME" -m 0640 "$SRC/configs/minimal.yaml" "$ETC/config.yaml"
  echo "   installed configs/minimal.yaml as $ETC/config.yaml: edit the cameras"
fi
"$PREFIX/venv/bin/edge-infer" run --config "$ETC/config.yaml" --check

echo "== systemd units"
install -m 0644 "$SRC/deploy/systemd/edge-infer.service" /etc/systemd/system/
install -m 0644 "$SRC/deploy/systemd/edge-infer-build.service" /etc/systemd/system/
systemctl daemon-reload
systemctl enable edge-infer-build.service edge-infer.service

if [ -x /usr/sbin/nvpmodel ] || command -v nvpmodel >/dev/null 2>&1; then
  echo "   power mode: $(nvpmodel -q 2>/dev/null | head -n 1) (see deploy/jetson/README.md)"
fi

if [ "$START" -eq 1 ]; then
  echo "== building the engine (first time: minutes) and starting the daemon"
  systemctl restart edge-infer-build.service
  systemctl restart edge-infer.service
  systemctl --no-pager --lines=5 status edge-infer.service || true
fi
echo "done: journalctl -u edge-infer -f    edge-infer subscribe --endpoint tcp://127.0.0.1:5556"
