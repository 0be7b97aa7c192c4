"""Is a network camera's server answering? A probe before ``cv2.VideoCapture`` opens it.

OpenCV's FFmpeg backend holds one process-wide lock for the whole of an open (unless the
daemon lets opens run in parallel, ``capture.parallel_open``), and the RTSP transport
option is a process-wide variable too: a camera whose open hangs until its timeout keeps
the other cameras from (re)connecting meanwhile. The probe does what FFmpeg does first,
in the camera's own thread and under no lock: connect to ``host:port`` (plus the TLS
handshake for ``rtsps``/``https``), send ``OPTIONS`` (RTSP) or ``GET`` (HTTP), and wait for
the first bytes of an answer. A server that is down (refused, unreachable, unresolvable)
or silent fails the probe and the camera backs off without entering OpenCV's open.

Any answer passes: what it says is FFmpeg's business, so the probe never turns away a
camera FFmpeg could open (an RTSP server must answer ``OPTIONS``; FFmpeg sends it first).
Messages name ``host:port`` only, never the URL, which may carry a password.
"""

from __future__ import annotations

import socket
import ssl
import time
from urllib.parse import urlsplit

DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}


def probe_stream(url: str, timeout: float) -> str | None:
    """``None`` when the server of ``url`` answers within ``timeout`` s, else why not.

    URLs of other schemes are not probed (``None``).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        return None
    host = parts.hostname
    hostport = parts.netloc.rpartition("@")[2]  # as written, IPv6 brackets kept
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        return f"{hostport}: invalid port"
    if not host:
        return "the URL names no host"
    where = f"{host}:{port}"
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(1e-3, deadline - time.monotonic())

    if scheme.startswith("rtsp"):
        path = f"{scheme}://{hostport}{parts.path or '/'}"
        request = f"OPTIONS {path} RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: edge_infer\r\n\r\n"
    else:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = (f"GET {target} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: edge_infer\r\n"
                   "Connection: close\r\n\r\n")
    try:
        with socket.create_connection((host, port), timeout=left()) as raw:
            sock: socket.socket = raw
            if scheme in ("rtsps", "https"):
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False  # reachability only: FFmpeg verifies as configured
                ctx.verify_mode = ssl.CERT_NONE
                raw.settimeout(left())
                sock = ctx.wrap_socket(raw, server_hostname=host)
            sock.settimeout(left())
            sock.sendall(request.encode("latin-1", "replace"))
            sock.settimeout(left())
            answer = sock.recv(64)
    except TimeoutError:
        return f"{where} did not answer within {timeout:g} s"
    except ConnectionRefusedError:
        return f"{where} refused the connection (nothing listens there)"
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
        return f"{where} closed the connection without answering"
    except socket.gaierror as exc:
        return f"cannot resolve {host}: {exc.strerror or exc}"
    except ssl.SSLError:
        return None  # it answered, if not with what TLS expects: FFmpeg reports the rest
    except OSError as exc:
        return f"{where}: {exc.strerror or exc}"
    if not answer:
        return f"{where} closed the connection without answering"
    return None
