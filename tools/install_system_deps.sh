#!/usr/bin/env bash
# System packages edge_infer's tools and tests use but pip cannot install:
#   ffmpeg (with libx264) -- H.264 encoding for `edge-infer synth videos` (OpenCV's wheels
#   cannot encode H.264; MJPEG needs nothing extra).
#   gcc -- the CPU backend compiles its native kernels on the device (optional: without a
#   compiler those tactics are skipped and the engine uses its numpy/BLAS tactics).
#   rtsp-server-perl -- the loopback RTSP server of the demo, the RTSP tests and benchmarks.
#   the deploy tests' linters: shellcheck for the scripts, systemd-analyze for the units.
#   gcc-aarch64-linux-gnu, qemu-user -- the native kernels cross-compiled for the Jetson's
#   Arm cores and run under emulation (tests/engine/backends/cpu/aarch64/).
#   g++ (with its libasan/libtsan runtimes) -- the CUDA kernels built for the CPU emulator,
#   plainly and with AddressSanitizer/ThreadSanitizer (edge_infer/cuda/emulator.py).
#   GStreamer (tools, base/good/bad plugins, libav) and Debian's python3-opencv, whose cv2 is
#   built with GStreamer (PyPI's wheels are not) -- `decode: hardware` cameras tested with the
#   software element set under /usr/bin/python3 (tests/pipeline/test_hw_decode.py); python3-gi
#   and the Gst typelib let it check elements through PyGObject. About 190 packages, 23 s.
# Idempotent: does nothing when everything is already there. Needs root (or sudo).
set -euo pipefail

missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v rtsp-server-perl >/dev/null 2>&1 || missing+=(rtsp-server-perl)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 \
    || missing+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null 2>&1 || missing+=(qemu-user)
for pkg in gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
    gstreamer1.0-plugins-bad gstreamer1.0-libav python3-opencv python3-gi gir1.2-gstreamer-1.0; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "system dependencies already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"
echo "installed: ${missing[*]}"
