"""ZeroMQ endpoints as the config gives them, checked before anything binds.

ZeroMQ itself is lenient in ways that surprise: ``tcp://host:99999`` binds port 99999 mod
65536, and binding ``ipc:///path`` first deletes whatever file is at ``path``. Here every
endpoint is parsed once, with a one-line reason when it is not what the person meant.
"""

from __future__ import annotations

import ipaddress
import re
import stat
from pathlib import Path

_HOST = re.compile(r"^(\*|[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?)$")


def endpoint_problem(ep: str) -> str | None:
    """Why ``ep`` is not a bindable endpoint, or ``None``."""
    if ep.startswith("tcp://"):
        rest = ep[len("tcp://") :]
        host, sep, port = rest.rpartition(":")
        if not sep or not host:
            return f"endpoint {ep!r}: write tcp://HOST:PORT (e.g. tcp://127.0.0.1:5556)"
        if host.startswith("[") and host.endswith("]"):
            try:
                ipaddress.IPv6Address(host[1:-1])
            except ValueError:
                return f"endpoint {ep!r}: {host} is not an IPv6 address"
        elif not _HOST.match(host):
            return f"endpoint {ep!r}: {host!r} is not a host name, an address or *"
        if port == "*":
            return None
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            return f"endpoint {ep!r}: port must be 1..65535 (or * for any free port)"
        return None
    if ep.startswith("ipc://"):
        path = ep[len("ipc://") :]
        if not path:
            return f"endpoint {ep!r}: write ipc:///absolute/path"
        return ipc_path_problem(Path(path), ep)
    if ep.startswith("inproc://"):
        return None if ep[len("inproc://") :] else f"endpoint {ep!r}: give a name"
    return f"endpoint {ep!r} must start with tcp://, ipc:// or inproc://"


def ipc_path_problem(path: Path, ep: str) -> str | None:
    """ZeroMQ unlinks an ipc path before binding: refuse one that holds anything but a
    socket (a stale socket of an earlier run is fine to replace)."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"endpoint {ep!r}: cannot inspect {path}: {exc.strerror or exc}"
    if stat.S_ISSOCK(mode):
        return None
    return (
        f"endpoint {ep!r}: {path} exists and is not a socket; binding would delete it — "
        "choose another path"
    )


def host_problem(address: str, what: str) -> str | None:
    """Why ``address`` is not an IP address or host name to bind ``what`` on, or ``None``."""
    try:
        ipaddress.ip_address(address)
        return None
    except ValueError:
        pass
    if address and _HOST.match(address) and address != "*":
        return None
    return f"{what}: {address!r} is not an IP address or host name"
