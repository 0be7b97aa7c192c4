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
    _, problem = _ask(url, timeout, "OPTIONS", 64)
    return problem


def describe_refusal(url: str, timeout: float) -> str | None:
    """Why an RTSP server that answers would not serve ``url``'s stream — its own status
    line for ``DESCRIBE`` when that is not 200 (``404 Not Found``: no such stream path;
    ``401 Unauthorized``: credentials) — or ``None`` (served, not RTSP, or no answer)."""
    if not urlsplit(url).scheme.lower().startswith("rtsp"):
        return None
    answer, problem = _ask(url, timeout, "DESCRIBE", 256)
    if problem is not None or not answer:
        return None
    status = answer.split(b"\r\n", 1)[0].decode("latin-1", "replace").split(" ", 2)
    if len(status) == 3 and status[0].startswith("RTSP/") and status[1] != "200":
        path = urlsplit(url).path or "/"
        return f"the server answered {status[1]} {status[2].strip()} for {path}"
    return None


def _ask(url: str, timeout: float, method: str, limit: int) -> tuple[bytes | None, str | None]:
    """Send one ``method`` request for ``url``; ``(first bytes of the answer, None)`` or
    ``(None, why not)``; ``(None, None)`` for schemes that are not probed."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        return None, None
    host = parts.hostname
    hostport = parts.netloc.rpartition("@")[2]  # as written, IPv6 brackets kept
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        return None, f"{hostport}: invalid port"
    if not host:
        return None, "the URL names no host"
    where = f"{host}:{port}"
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(1e-3, deadline - time.monotonic())

    if scheme.startswith("rtsp"):
        path = f"{scheme}://{hostport}{parts.path or '/'}"
        request = (
            f"{method} {path} RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: edge_infer\r\n"
            + ("Accept: application/sdp\r\n" if method == "DESCRIBE" else "")
            + "\r\n"
        )
    else:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: edge_infer\r\n"
            "Connection: close\r\n\r\n"
        )
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
            answer = sock.recv(limit)
    except TimeoutError:
        return None, f"{where} did not answer within {timeout:g} s"
    except ConnectionRefusedError:
        return None, f"{where} refused the connection (nothing listens there)"
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
        return None, f"{where} closed the connection without answering"
    except socket.gaierror as exc:
        return None, f"cannot resolve {host}: {exc.strerror or exc}"
    except ssl.SSLError:
        return None, None  # it answered, if not with what TLS expects: FFmpeg reports the rest
    except OSError as exc:
        return None, f"{where}: {exc.strerror or exc}"
    if not answer:
        return None, f"{where} closed the connection without answering"
    return answer, None
