"""Hardware decoding: a file or RTSP camera opened through a GStreamer pipeline.

A camera with ``decode: hardware`` is not read by OpenCV's FFmpeg backend but by
``cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)``, the pipeline ending in a BGR ``appsink``.
Which decoder and converter elements go in the middle is an **element set** from a small
registry: ``jetson`` (``nvv4l2decoder`` → ``nvvidconv``, NVIDIA's Jetson Linux elements) and
``software`` (``avdec_h264``/``avdec_h265`` → ``videoconvert``), the stand-in that runs on
any Debian machine and on CI. ``auto`` takes the first set whose elements are installed.

This module needs only the standard library and (lazily) ``cv2``: tests run it under a
system Python whose OpenCV has GStreamer, where the daemon's own dependencies are absent.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_infer.errors import EdgeInferError
from edge_infer.pipeline.urls import redact_url

CODECS = ("h264", "h265")
#: what to install when OpenCV has no GStreamer (one line, used in every refusal)
INSTALL_HINT = (
    "use an OpenCV built with GStreamer: JetPack's on a Jetson (apt python3-opencv from "
    "NVIDIA's repository), on Debian/Ubuntu `apt install python3-opencv "
    "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad "
    "gstreamer1.0-libav` (a venv made with --system-site-packages, without pip's "
    "opencv-python); or set decode: software"
)


class HardwareDecodeError(EdgeInferError):
    """A ``decode: hardware`` camera cannot be opened as configured."""


class HardwareDecodeUnavailable(HardwareDecodeError):
    """The installed OpenCV cannot run GStreamer pipelines (PyPI's wheels): refused at start."""


@dataclass(frozen=True)
class ElementSet:
    """The GStreamer elements that turn a parsed H.264/H.265 stream into BGR frames."""

    name: str
    decoders: dict[str, str]  # codec -> decoder element (with its properties)
    convert: str  # decoder output -> BGR in system memory, ending before the appsink
    required: tuple[str, ...]  # element factories that must be installed
    description: str

    def decoder(self, codec: str) -> str:
        if codec not in self.decoders:
            raise HardwareDecodeError(f"element set {self.name}: no decoder for codec {codec}")
        return self.decoders[codec]


ELEMENT_SETS: dict[str, ElementSet] = {}


def register(elements: ElementSet) -> ElementSet:
    if elements.name in ELEMENT_SETS:
        raise HardwareDecodeError(f"element set {elements.name} is already registered")
    ELEMENT_SETS[elements.name] = elements
    return elements


register(
    ElementSet(
        "jetson",
        {"h264": "nvv4l2decoder", "h265": "nvv4l2decoder"},
        # nvvidconv copies out of NVMM memory but cannot write 3-byte BGR: BGRx, then the
        # CPU drops the fourth byte
        "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR",
        ("nvv4l2decoder", "nvvidconv", "videoconvert"),
        "Jetson NVDEC (nvv4l2decoder) and VIC conversion (nvvidconv)",
    )
)
register(
    ElementSet(
        "software",
        # output-corrupt=false: a stream joined between keyframes gives no grey
        # concealment frames before its next keyframe
        {"h264": "avdec_h264 output-corrupt=false", "h265": "avdec_h265 output-corrupt=false"},
        "videoconvert ! video/x-raw,format=BGR",
        ("avdec_h264", "avdec_h265", "videoconvert"),
        "libav software decoders (the stand-in where no hardware decoder exists; CI)",
    )
)
#: the order ``auto`` tries them in
AUTO_ORDER = ("jetson", "software")

_DEPAY = {"h264": "rtph264depay", "h265": "rtph265depay"}
_PARSE = {"h264": "h264parse", "h265": "h265parse"}
#: file suffix -> demuxer ("" for an elementary stream)
_DEMUX = {
    ".mp4": "qtdemux",
    ".mov": "qtdemux",
    ".m4v": "qtdemux",
    ".mkv": "matroskademux",
    ".webm": "matroskademux",
    ".h264": "",
    ".264": "",
    ".h265": "",
    ".265": "",
    ".hevc": "",
}


def _quote(value: str) -> str:
    """A property value for gst-launch syntax (URLs and paths may hold ``!`` or spaces)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tail(codec: str, elements: ElementSet, live: bool) -> str:
    # a live camera keeps only its newest frame (the reader drops late ones anyway); a file
    # is read at the reader's pace, so the appsink pushes back instead of dropping
    sink = (
        "appsink drop=true max-buffers=1 sync=false"
        if live
        else "appsink drop=false max-buffers=2 sync=false"
    )
    return f"{_PARSE[codec]} ! {elements.decoder(codec)} ! {elements.convert} ! {sink}"


def rtsp_pipeline(
    url: str, codec: str, elements: ElementSet, *, latency_ms: int, transport: str
) -> str:
    """``rtspsrc`` → depayload → parse → the set's decoder and converter → BGR appsink."""
    _check_codec(codec)
    if transport not in ("tcp", "udp"):
        raise HardwareDecodeError(f"transport {transport!r}: expected tcp or udp")
    return (
        f"rtspsrc location={_quote(url)} latency={int(latency_ms)} protocols={transport} "
        f"! {_DEPAY[codec]} ! {_tail(codec, elements, live=True)}"
    )


def file_pipeline(path: str | Path, codec: str, elements: ElementSet) -> str:
    """``filesrc`` → the container's demuxer (by suffix) → parse → decode → BGR appsink."""
    _check_codec(codec)
    demux = demuxer(path)
    head = f"filesrc location={_quote(str(path))}"
    if demux:  # the first video stream, whatever else the container holds
        head += f" ! {demux} name=demux demux.video_0 ! queue"
    return f"{head} ! {_tail(codec, elements, live=False)}"


def demuxer(path: str | Path) -> str:
    """The demuxer element of ``path``'s container; raises for one not supported."""
    suffix = Path(path).suffix.lower()
    if suffix not in _DEMUX:
        raise HardwareDecodeError(
            f"{path}: decode: hardware reads {', '.join(sorted(_DEMUX))} files, not "
            f"{suffix or 'a file without suffix'} (or use decode: software)"
        )
    return _DEMUX[suffix]


def _check_codec(codec: str) -> None:
    if codec not in CODECS:
        raise HardwareDecodeError(f"codec {codec!r}: expected one of {', '.join(CODECS)}")


# -- what this machine has ------------------------------------------------------------------
def opencv_gstreamer(build_information: str | None = None) -> bool | None:
    """True/False: OpenCV's build information says GStreamer YES/NO; None: no cv2 at all."""
    if build_information is None:
        try:
            import cv2
        except ImportError:
            return None
        build_information = cv2.getBuildInformation()
    for line in build_information.splitlines():
        key, _, value = line.strip().partition(":")
        if key.strip() == "GStreamer":
            return value.strip().upper().startswith("YES")
    return False


def gstreamer_problem(build_information: str | None = None) -> str | None:
    """One line saying why this OpenCV cannot run ``decode: hardware``; None if it can."""
    found = opencv_gstreamer(build_information)
    if found:
        return None
    if found is None:
        return f"decode: hardware needs OpenCV (cv2 is not installed): {INSTALL_HINT}"
    import cv2

    return (
        f"decode: hardware needs OpenCV with GStreamer; this one (cv2 {cv2.__version__}, "
        f"{Path(cv2.__file__).parent}) has none (PyPI's opencv-python wheels are built "
        f"without it): {INSTALL_HINT}"
    )


def require_gstreamer(build_information: str | None = None) -> None:
    """Raise :class:`HardwareDecodeUnavailable` when OpenCV cannot run GStreamer pipelines."""
    problem = gstreamer_problem(build_information)
    if problem is not None:
        raise HardwareDecodeUnavailable(problem)


@functools.lru_cache(maxsize=64)
def element_installed(name: str) -> bool | None:
    """Is GStreamer element ``name`` installed? Asked of PyGObject's registry when it is
    importable, else of ``gst-inspect-1.0 --exists``; None when neither can tell."""
    try:
        import gi

        gi.require_version("Gst", "1.0")
        from gi.repository import Gst

        Gst.init(None)
        return Gst.ElementFactory.find(name) is not None
    except (ImportError, ValueError):
        pass
    tool = shutil.which("gst-inspect-1.0")
    if tool is None:
        return None
    try:
        done = subprocess.run(
            [tool, "--exists", name], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.returncode == 0


def missing_elements(elements: ElementSet, installed: Any = None) -> list[str] | None:
    """The set's required elements that are not installed; None when that cannot be told."""
    check = installed or element_installed
    found = {name: check(name) for name in elements.required}
    if any(v is None for v in found.values()):
        return None
    return [name for name, ok in found.items() if not ok]


def candidates(requested: str, installed: Any = None) -> list[ElementSet]:
    """The element sets to try, in order, for ``decoder_elements: requested``.

    A named set is the only candidate. ``auto`` gives the sets of :data:`AUTO_ORDER` whose
    elements are all installed; where that cannot be told (no PyGObject, no
    gst-inspect-1.0) it gives all of them, and opening tries each in turn.
    """
    if requested != "auto":
        if requested not in ELEMENT_SETS:
            raise HardwareDecodeError(
                f"decoder_elements {requested!r}: expected auto or one of "
                f"{', '.join(sorted(ELEMENT_SETS))}"
            )
        return [ELEMENT_SETS[requested]]
    sets = [ELEMENT_SETS[name] for name in AUTO_ORDER]
    known = [(s, missing_elements(s, installed)) for s in sets]
    if any(missing is None for _, missing in known):
        return sets
    return [s for s, missing in known if not missing]


def elements_problem(requested: str, installed: Any = None) -> str | None:
    """One line when no element set of ``requested`` is installed (None: fine or unknown)."""
    if requested == "auto":
        if candidates(requested, installed):
            return None
        sets = [ELEMENT_SETS[name] for name in AUTO_ORDER]
    else:
        sets = candidates(requested, installed)
    parts = []
    for s in sets:
        missing = missing_elements(s, installed)
        if not missing:
            return None
        parts.append(f"{s.name} lacks {', '.join(missing)}")
    return (
        f"no GStreamer element set for decoder_elements: {requested} is installed "
        f"({'; '.join(parts)}): on a Jetson install JetPack's nvidia-l4t-gstreamer, "
        "elsewhere gstreamer1.0-libav and gstreamer1.0-plugins-base"
    )


# -- opening ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Opened:
    """A started GStreamer capture and how it was made (the pipeline as it may be logged)."""

    capture: Any
    elements: str
    shown: str  # the pipeline with the URL's password replaced by ***


def open_pipelines(pipelines: list[tuple[str, str, str]]) -> Opened:
    """Open the first of ``(element set, pipeline, pipeline as logged)`` that starts.

    Returns the last unopened capture (``isOpened()`` False) when none starts, so the
    caller reports the failure as for any other capture.
    """
    import cv2

    cap = None
    for name, pipeline, shown in pipelines:
        if cap is not None:
            cap.release()
        cap = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
        if cap.isOpened():
            return Opened(cap, name, shown)
    if cap is None:
        raise HardwareDecodeError("no GStreamer element set to open the camera with")
    return Opened(cap, "", pipelines[-1][2])


def rtsp_candidates(
    url: str, codec: str, requested: str, *, latency_ms: int, transport: str
) -> list[tuple[str, str, str]]:
    """``(set, pipeline, pipeline with the password redacted)`` for each candidate set."""
    return [
        (
            s.name,
            rtsp_pipeline(url, codec, s, latency_ms=latency_ms, transport=transport),
            rtsp_pipeline(redact_url(url), codec, s, latency_ms=latency_ms, transport=transport),
        )
        for s in candidates(requested)
    ]


def file_candidates(path: str | Path, codec: str, requested: str) -> list[tuple[str, str, str]]:
    out = []
    for s in candidates(requested):
        pipeline = file_pipeline(path, codec, s)
        out.append((s.name, pipeline, pipeline))
    return out
