"""``decode: hardware``: GStreamer pipelines per element set, the refusal where OpenCV has no
GStreamer, and real cameras read through the software element set.

The venv's OpenCV is PyPI's wheel, without GStreamer: the tests that really decode run
``tests/pipeline/hw_reader.py`` under the system Python, whose Debian OpenCV has GStreamer
(``tools/install_system_deps.sh`` installs it), and compare its frames with the venv's
FFmpeg decode of the same file, pixel by pixel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_infer.pipeline import hw_decode, rtsp_loopback
from edge_infer.pipeline.camera_config import BackoffConfig, RtspCamera
from edge_infer.pipeline.frames import FrameHub
from edge_infer.pipeline.hw_decode import (
    ELEMENT_SETS,
    ElementSet,
    HardwareDecodeError,
    HardwareDecodeUnavailable,
)
from edge_infer.pipeline.sources import CameraSource
from tests.pipeline.test_sources import Harness, img
from tests.sysdeps import INSTALLER, need

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
PYPI_CV2_HAS_GSTREAMER = bool(hw_decode.opencv_gstreamer())


def hw_rtsp(**kw) -> RtspCamera:
    return RtspCamera(
        **{"type": "rtsp", "id": "hw", "url": "rtsp://127.0.0.1:1/x", "decode": "hardware", **kw}
    )


# -- pipelines ----------------------------------------------------------------------------------
def test_jetson_rtsp_pipeline_is_nvidias_chain() -> None:
    p = hw_decode.rtsp_pipeline(
        "rtsp://cam/live", "h264", ELEMENT_SETS["jetson"], latency_ms=200, transport="tcp"
    )
    assert p == (
        'rtspsrc location="rtsp://cam/live" latency=200 protocols=tcp ! rtph264depay ! '
        "h264parse ! nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! "
        "video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
    )
    h265 = hw_decode.rtsp_pipeline(
        "rtsp://cam/live", "h265", ELEMENT_SETS["software"], latency_ms=0, transport="udp"
    )
    assert "protocols=udp ! rtph265depay ! h265parse ! avdec_h265 output-corrupt=false ! " in h265


def test_file_pipelines_demux_by_container_and_apply_back_pressure() -> None:
    sw = ELEMENT_SETS["software"]
    mp4 = hw_decode.file_pipeline("/v/a b.mp4", "h264", sw)
    assert mp4.startswith('filesrc location="/v/a b.mp4" ! qtdemux name=demux demux.video_0 !')
    assert mp4.endswith("appsink drop=false max-buffers=2 sync=false")  # a file drops nothing
    assert "matroskademux" in hw_decode.file_pipeline("x.mkv", "h265", sw)
    assert hw_decode.file_pipeline("x.h264", "h264", sw).startswith(
        'filesrc location="x.h264" ! h264parse'
    )
    with pytest.raises(HardwareDecodeError, match=r"\.avi"):
        hw_decode.file_pipeline("x.avi", "h264", sw)
    with pytest.raises(HardwareDecodeError, match="codec"):
        hw_decode.file_pipeline("x.mp4", "vp9", sw)


def test_locations_are_quoted_for_gst_launch() -> None:
    p = hw_decode.rtsp_pipeline(
        'rtsp://u:p"!x@h/a', "h264", ELEMENT_SETS["software"], latency_ms=1, transport="tcp"
    )
    assert p.startswith(r'rtspsrc location="rtsp://u:p\"!x@h/a" latency=1')


def test_element_set_registry() -> None:
    with pytest.raises(HardwareDecodeError, match="already registered"):
        hw_decode.register(ElementSet("jetson", {}, "", (), ""))
    with pytest.raises(HardwareDecodeError, match="decoder_elements 'vaapi'"):
        hw_decode.candidates("vaapi")


def test_auto_picks_the_first_installed_element_set() -> None:
    everything = lambda name: True  # noqa: E731
    no_jetson = lambda name: not name.startswith("nv")  # noqa: E731
    unknown = lambda name: None  # noqa: E731
    assert [s.name for s in hw_decode.candidates("auto", everything)] == ["jetson", "software"]
    assert [s.name for s in hw_decode.candidates("auto", no_jetson)] == ["software"]
    # nothing can tell (no PyGObject, no gst-inspect-1.0): each is tried in turn at open
    assert [s.name for s in hw_decode.candidates("auto", unknown)] == ["jetson", "software"]
    assert [s.name for s in hw_decode.candidates("jetson", no_jetson)] == ["jetson"]
    assert hw_decode.elements_problem("auto", no_jetson) is None
    problem = hw_decode.elements_problem("jetson", no_jetson)
    assert problem is not None and "jetson lacks nvv4l2decoder, nvvidconv" in problem
    assert "nvidia-l4t-gstreamer" in problem and "\n" not in problem
    assert "software lacks avdec_h264" in hw_decode.elements_problem("auto", lambda n: False)


def test_gstreamer_in_opencv_is_read_from_its_build_information() -> None:
    yes = "  Video I/O:\n    FFMPEG:    YES\n    GStreamer:                   YES (1.22.0)\n"
    no = "  Video I/O:\n    GStreamer:                   NO\n"
    assert hw_decode.opencv_gstreamer(yes) and hw_decode.gstreamer_problem(yes) is None
    assert hw_decode.opencv_gstreamer(no) is False
    problem = hw_decode.gstreamer_problem(no)
    assert problem is not None and "\n" not in problem
    assert "python3-opencv" in problem and "JetPack" in problem and "gstreamer1.0-libav" in problem
    with pytest.raises(HardwareDecodeUnavailable, match="has none"):
        hw_decode.require_gstreamer(no)


# -- refused at start with PyPI's OpenCV ----------------------------------------------------------
@pytest.mark.skipif(PYPI_CV2_HAS_GSTREAMER, reason="this venv's OpenCV has GStreamer")
def test_pypi_opencv_refuses_a_hardware_camera_at_start(tmp_path: Path, capsys) -> None:
    """PyPI's wheel (``GStreamer: NO``): the camera is refused when its reader is created,
    with one line saying what to install, and ``run --check`` reports it."""
    assert "GStreamer:                   NO" in cv2.getBuildInformation()
    cam = hw_rtsp(url="rtsp://admin:s3cret@127.0.0.1:1/live")
    with pytest.raises(HardwareDecodeUnavailable) as err:
        CameraSource(cam, FrameHub())
    line = str(err.value)
    assert line.startswith("camera hw: decode: hardware needs OpenCV with GStreamer")
    assert "python3-opencv" in line and "\n" not in line and "s3cret" not in line
    CameraSource(hw_rtsp().model_copy(update={"decode": "software"}), FrameHub())  # fine

    import yaml

    from tests.pipeline.test_config import base

    data = base()
    data["cameras"] = [
        {"type": "rtsp", "id": "door", "url": "rtsp://127.0.0.1:1/x", "decode": "hardware"},
        {"type": "rtsp", "id": "yard", "url": "rtsp://127.0.0.1:1/y"},
    ]
    (tmp_path / "hw.yaml").write_text(yaml.safe_dump(data))
    from edge_infer.cli import main

    assert main(["run", "--check", "--config", str(tmp_path / "hw.yaml")]) == 1
    out = capsys.readouterr().out
    lines = [ln.strip() for ln in out.splitlines() if "decode" in ln]
    assert len(lines) == 1 and lines[0].startswith(
        "cameras[0] (door).decode: decode: hardware needs OpenCV with GStreamer"
    ), out


@pytest.mark.skipif(PYPI_CV2_HAS_GSTREAMER, reason="this venv's OpenCV has GStreamer")
def test_the_daemon_refuses_a_hardware_camera_at_start(tiny_engine: Path, tmp_path: Path) -> None:
    from tests.pipeline.helpers import write_config

    cam = {"type": "rtsp", "id": "door", "url": "rtsp://u:pw@127.0.0.1:1/x", "decode": "hardware"}
    port = rtsp_loopback.free_port()
    cfg = write_config(tmp_path / "c.yaml", tiny_engine, [cam], f"tcp://127.0.0.1:{port}")
    proc = subprocess.run(
        [sys.executable, "-m", "edge_infer", "run", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("edge-infer run: error: camera door: decode: hardware needs OpenCV")
    assert "python3-opencv" in last and ":pw@" not in proc.stdout + proc.stderr
    # refused before the engine is loaded (the backend line comes with the engine)
    assert "settings per worker" not in proc.stdout + proc.stderr


def test_a_gstreamer_capture_is_not_read_again_after_a_failed_read() -> None:
    """OpenCV's GStreamer capture can block for good on a read after a failed one: the
    reader waits out the silence instead, then stalled, then backoff (a new pipeline)."""
    cam = hw_rtsp(stall_timeout_s=1.0, backoff=BackoffConfig(jitter=0))
    h = Harness(cam, [[img(v=1), None, img(v=2)]], stop_after_waits=2)
    h.source.run()
    assert h.states()[:3] == ["streaming", "stalled", "backoff"]
    assert h.waits[0] == pytest.approx(1.0)  # one wait: the rest of the silence
    assert len(h.captures[0].script) == 1  # the frame after the failed read: never read
    assert h.source.stats.frames == 1


def test_open_failure_of_a_hardware_camera_is_named_and_redacted() -> None:
    cam = hw_rtsp(url="rtsp://admin:s3cret@127.0.0.1:1/live", codec="h265", probe=False)
    src = CameraSource(cam, FrameHub(), opener=lambda c: None)
    assert src._open() is None
    err = src.stats.last_error
    assert "s3cret" not in err and "admin:***@127.0.0.1:1/live" in err


# -- real frames through the software element set, under the system Python -------------------
def _need_system_opencv_with_gstreamer() -> None:
    need("gst-launch-1.0", "ffmpeg")
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import cv2; print(cv2.getBuildInformation())"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode == 0 and hw_decode.opencv_gstreamer(probe.stdout):
        return
    reason = f"{SYSTEM_PYTHON} has no OpenCV with GStreamer (python3-opencv; {INSTALLER})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _pure_python_deps(folder: Path) -> Path:
    """Links to the venv's pydantic and its pure-Python companions (pydantic_core is built
    for CPython 3.11 like the system Python), and nothing else: no venv numpy, no cv2."""
    import annotated_types
    import pydantic
    import pydantic_core
    import typing_extensions
    import typing_inspection

    folder.mkdir()
    for module in (annotated_types, pydantic, pydantic_core, typing_inspection):
        (folder / module.__name__).symlink_to(Path(module.__file__).parent)
    (folder / "typing_extensions.py").symlink_to(typing_extensions.__file__)
    return folder


def _run_reader(tmp_path: Path, spec: dict) -> dict:
    out = tmp_path / "frames"
    out.mkdir()
    spec = {**spec, "out": str(out)}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    deps = _pure_python_deps(tmp_path / "deps")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PYTHONPATH=f"{ROOT}{os.pathsep}{deps}", PYTHONNOUSERSITE="1")
    proc = subprocess.run(
        [
            SYSTEM_PYTHON,
            str(ROOT / "tests" / "pipeline" / "hw_reader.py"),
            str(tmp_path / "spec.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["gstreamer"] and result["numpy"].startswith("/usr/lib/python3/")
    result["frames_dir"] = out
    return result


def _video(path: Path, codec: str) -> Path:
    """3 s of ffmpeg's testsrc2 at 15 fps, 320x240: every frame differs (a counter, moving
    patterns), colours in every channel."""
    enc = (
        ["-c:v", "libx264"]
        if codec == "h264"
        else ["-c:v", "libx265", "-x265-params", "log-level=error"]
    )
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=15",
            "-t",
            "3",
            *enc,
            "-pix_fmt",
            "yuv420p",
            "-g",
            "15",
            "-bf",
            "0",
            str(path),
        ],
        check=True,
        timeout=120,
    )
    return path


def _reference(path: Path) -> list[np.ndarray]:
    """Every frame of ``path`` decoded by the venv's OpenCV through FFmpeg."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


def _diffs(image: np.ndarray, reference: list[np.ndarray]) -> np.ndarray:
    return np.array([np.abs(image.astype(np.int16) - r).mean() for r in reference])


@pytest.mark.parametrize("codec, suffix, loop", [("h264", ".mp4", False), ("h265", ".mkv", True)])
def test_a_file_decoded_through_gstreamer_matches_ffmpeg(
    tmp_path: Path, codec: str, suffix: str, loop: bool
) -> None:
    """Every frame taken is the file's frame, in order; a looping file (reopened at its end:
    a GStreamer capture does not survive a seek) goes round without a reconnect."""
    _need_system_opencv_with_gstreamer()
    video = _video(tmp_path / f"cam{suffix}", codec)
    reference = _reference(video)
    assert len(reference) == 45
    camera = {
        "type": "file",
        "id": "hwfile",
        "path": str(video),
        "decode": "hardware",
        "codec": codec,
        "decoder_elements": "software",
        "loop": loop,
        "realtime": True,
    }
    r = _run_reader(tmp_path, {"camera": camera, "frames": 60 if loop else 1000, "timeout_s": 30})
    summary = {k: r[k] for k in ("frames", "stale", "invalid", "size", "transitions", "last_error")}
    assert r["invalid"] == r["stale"] == 0 and r["size"] == [320, 240], summary
    assert r["frames"] >= 60 if loop else r["frames"] == 45, summary
    assert [s for _, s in r["transitions"]] == ["streaming", "stopped"]
    assert r["reconnects"] == 0
    assert any("GStreamer, software elements" in line for line in r["logs"]), r["logs"]
    assert len(r["saved"]) >= 30  # taken every 20 ms from a 15 fps file
    matched = []
    for f in r["saved"]:
        image = np.load(r["frames_dir"] / f["file"])
        assert image.shape == (240, 320, 3) and image.dtype == np.uint8
        assert f["pts_ms"] is None  # GStreamer's positions run ahead: not published
        d = _diffs(image, reference)
        k = int(np.argmin(d))
        # the same pixels as one of FFmpeg's frames (colour conversion rounding apart) and
        # far from every other: the right frame, in the right channel order
        assert d[k] < 3.0 and np.sort(d)[1] > 2 * d[k] + 1.0, (k, np.sort(d)[:2])
        matched.append(k)
    rounds = [matched]
    if loop:  # the second round starts where the frame number falls back
        start = next(i for i in range(1, len(matched)) if matched[i] < matched[i - 1])
        rounds = [matched[:start], matched[start:]]
        assert rounds[1][0] <= 2, matched  # from the top again, not a reconnect's gap
    for frames in rounds:
        assert frames == sorted(set(frames)), matched  # in the file's order, none twice


def test_rtsp_decoded_through_gstreamer_survives_a_server_restart(tmp_path: Path) -> None:
    """A real RTSP server (rtsp-server-perl fed by ffmpeg), read with ``decode: hardware``
    and ``decoder_elements: auto`` (no Jetson elements here: the software set). The frames
    are the file's frames; the server is killed (the camera goes stalled after
    stall_timeout_s, then backoff, publishing nothing in between) and restarted (frames
    again, in the same reader). The URL's password never reaches a log line."""
    _need_system_opencv_with_gstreamer()
    need(rtsp_loopback.SERVER)
    video = _video(tmp_path / "cam.mp4", "h264")
    reference = _reference(video)
    camera = {
        "type": "rtsp",
        "id": "hwrtsp",
        "url": "rtsp://placeholder/x",
        "transport": "udp",  # what rtsp-server-perl serves
        "decode": "hardware",
        "decoder_elements": "auto",
        "latency_ms": 100,
        "read_timeout_s": 0.5,
        "stall_timeout_s": 1.5,
        "open_timeout_s": 3.0,
        "backoff": {"initial_s": 0.3, "max_s": 1.0, "jitter": 0.1},
    }
    spec = {
        "camera": camera,
        "video": str(video),
        "frames": 20,
        "timeout_s": 30,
        "kill": True,
        "password": "s3cret",
    }
    r = _run_reader(tmp_path, spec)
    assert r["first"] >= 20, r
    assert any("GStreamer, software elements" in line for line in r["logs"]), r["logs"]
    assert not any("s3cret" in line for line in r["logs"])
    assert any("edge:***@127.0.0.1" in line for line in r["logs"])
    states = [s for _, s in r["transitions"]]
    # cut: stalled first (after stall_timeout_s of silence), then backoff; then back
    i = states.index("stalled")
    assert states[: i + 2] == ["streaming", "stalled", "backoff"], states
    t_stalled = r["transitions"][i][0]
    assert 1.4 <= t_stalled - r["t_kill"] <= 3.0, t_stalled - r["t_kill"]
    assert r["during_outage"] <= 3  # at most what was in flight (100 ms jitter buffer)
    assert "streaming" in states[i + 2 :] and r["reconnects"] == 1, states
    assert len(r["saved"]) - r["first"] - r["during_outage"] >= 10
    matched = []
    for f in r["saved"]:
        d = _diffs(np.load(r["frames_dir"] / f["file"]), reference)
        assert d.min() < 3.0, d.min()  # one of the file's frames, pixel for pixel
        matched.append(int(np.argmin(d)))
    assert len(set(matched)) >= 15  # a moving stream, not a frozen frame
