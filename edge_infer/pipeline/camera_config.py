"""The daemon's camera settings: one pydantic model per camera ``type`` (a discriminated
union), each owning its settings, plus the reconnect backoff they share. Part of the config
(:mod:`edge_infer.pipeline.config`), kept apart because each camera type is its own concern.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

CAMERA_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackoffConfig(_Model):
    """Reconnect delays: exponential, capped, with random jitter so cameras do not sync up."""

    initial_s: float = Field(0.5, gt=0, le=60, description="first reconnect delay (seconds)")
    multiplier: float = Field(2.0, ge=1, le=10, description="delay growth factor per failure")
    max_s: float = Field(30.0, gt=0, le=3600, description="cap on the reconnect delay (seconds)")
    jitter: float = Field(
        0.2, ge=0, le=1, description="random fraction added or removed from each delay"
    )


class _CameraBase(_Model):
    id: str = Field(pattern=CAMERA_ID, description="camera id; part of the ZeroMQ topic")
    enabled: bool = Field(True, description="false: the camera is configured but not opened")
    max_fps: float | None = Field(
        None, gt=0, le=240, description="skip frames at the source above this rate"
    )
    open_timeout_s: float = Field(5.0, gt=0, le=120, description="timeout of one open attempt")
    read_timeout_s: float = Field(
        3.0, gt=0, le=120, description="a read blocked this long fails (FFmpeg backend)"
    )
    stall_timeout_s: float = Field(
        5.0, gt=0, le=600, description="no frame for this long marks the camera stalled"
    )
    backoff: BackoffConfig = Field(default_factory=BackoffConfig, description="reconnect backoff")


class _FFmpegCamera(_CameraBase):
    """A camera decoded by OpenCV's FFmpeg backend."""

    decode_threads: int = Field(
        1,
        ge=0,
        le=16,
        description="FFmpeg decoder threads of this camera; 0 lets FFmpeg "
        "choose (one per core). With many cameras one thread each is cheapest: 0.37 vs "
        "0.71 ms CPU per 640x360 H.264 frame on a 2-core machine",
    )


class _DecodableCamera(_FFmpegCamera):
    """A file or RTSP camera: decoded by FFmpeg on the CPU, or by the device's decoder."""

    decode: Literal["software", "hardware"] = Field(
        "software",
        description="software: OpenCV's FFmpeg decodes on the CPU; hardware: a GStreamer "
        "pipeline decodes (on a Jetson nvv4l2decoder and nvvidconv: NVDEC and VIC, not the "
        "CPU). Needs an OpenCV built with GStreamer (JetPack's; PyPI's wheels are not): "
        "without one the camera is refused at start. See docs/hardware-decoding.md",
    )
    codec: Literal["h264", "h265"] = Field(
        "h264", description="the video codec of the stream (decode: hardware only)"
    )
    decoder_elements: Literal["auto", "jetson", "software"] = Field(
        "auto",
        description="GStreamer elements of decode: hardware: jetson (nvv4l2decoder, "
        "nvvidconv), software (avdec_h264/avdec_h265, videoconvert: the stand-in used on "
        "CI), auto: jetson where its elements are installed, else software",
    )


class FileCamera(_DecodableCamera):
    """A video file, read at its own frame rate (a recorded or synthetic camera)."""

    type: Literal["file"] = Field(description="discriminator")
    path: Path = Field(description="video file (relative to the config file's folder)")
    loop: bool = Field(True, description="start again at the end instead of stopping")
    realtime: bool = Field(True, description="pace reads at the file's frame rate")


class RtspCamera(_DecodableCamera):
    """An RTSP (or HTTP) network camera read through OpenCV's FFmpeg backend."""

    type: Literal["rtsp"] = Field(description="discriminator")
    url: str = Field(
        min_length=8,
        max_length=2048,
        pattern=r"^(rtsp|rtsps|http|https)://",
        description="stream URL, rtsp://host:port/path",
    )
    transport: Literal["tcp", "udp"] = Field(
        "tcp", description="RTP transport asked of the server (some servers speak UDP only)"
    )
    probe: bool = Field(
        True,
        description="before each open, check that the server answers (connect, then "
        "RTSP OPTIONS / HTTP GET): a dead or silent server backs off without entering "
        "OpenCV's open",
    )
    probe_timeout_s: float = Field(
        2.0, gt=0, le=60, description="seconds the server has to answer the probe"
    )
    latency_ms: int = Field(
        200,
        ge=0,
        le=10000,
        description="jitter buffer of the GStreamer RTSP source (decode: hardware only): "
        "lower is fresher, higher survives more network jitter",
    )


class UsbCamera(_CameraBase):
    """A V4L2 camera (``/dev/videoN`` or its index)."""

    type: Literal["usb"] = Field(description="discriminator")
    device: int | str = Field(description="device index or path such as /dev/video0")
    width: int | None = Field(None, ge=16, le=8192, description="requested frame width")
    height: int | None = Field(None, ge=16, le=8192, description="requested frame height")
    fps: float | None = Field(None, gt=0, le=240, description="requested capture rate")


class GStreamerCamera(_CameraBase):
    """A GStreamer pipeline ending in ``appsink`` (Jetson CSI cameras via nvarguscamerasrc)."""

    type: Literal["gstreamer"] = Field(description="discriminator")
    pipeline: str = Field(
        min_length=8,
        max_length=4096,
        pattern=r"appsink",
        description="gst-launch style pipeline ending in appsink",
    )


CameraConfig = Annotated[
    FileCamera | RtspCamera | UsbCamera | GStreamerCamera, Field(discriminator="type")
]


#: camera ``type`` -> its settings model
CAMERA_TYPES: dict[str, type[_CameraBase]] = {
    "file": FileCamera,
    "rtsp": RtspCamera,
    "usb": UsbCamera,
    "gstreamer": GStreamerCamera,
}
