"""CURVE keys for the publisher: made, read and checked in one place.

Layout of a daemon's keys folder (``publisher.curve.keys_dir``)::

    server.key_secret              the daemon's key pair (secret: mode 0600)
    server.key                     its public half, for clients
    authorized_clients/NAME.key    public keys of the subscribers allowed in
    clients/NAME/                  what `--make-keys` made for a subscriber: NAME's key pair
                                   (client.key_secret) and server.key — copy the folder to
                                   the subscriber and delete it here

Key files are pyzmq's certificate format (``public-key = "…"`` / ``secret-key = "…"``, Z85).
A malformed file is a one-line :class:`ConfigError` naming it; a secret readable by other
users is reported (a warning at start, a problem at ``run --check``).
"""

from __future__ import annotations

import datetime
import logging
import os
import stat
from pathlib import Path

import zmq
from zmq.utils import z85

from edge_infer.atomic import atomic_path
from edge_infer.errors import ConfigError

log = logging.getLogger(__name__)

SERVER_SECRET = "server.key_secret"
SERVER_PUBLIC = "server.key"
CLIENTS = "authorized_clients"


def _key(line: bytes) -> bytes:
    return line.split(b"=", 1)[1].strip(b" \t'\"")


def read_key_file(path: Path, *, secret: bool) -> tuple[bytes, bytes | None]:
    """``(public, secret)`` Z85 keys of a certificate file; ``secret`` demands the secret."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"CURVE key file {path}: {exc.strerror or exc}") from None
    public = private = None
    for raw in data.splitlines():
        line = raw.strip()
        if line.startswith(b"public-key") and b"=" in line:
            public = _key(line)
        elif line.startswith(b"secret-key") and b"=" in line:
            private = _key(line)
    for name, key in (("public-key", public), ("secret-key", private)):
        if key is None:
            continue
        try:
            if len(key) != 40 or len(z85.decode(key)) != 32:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                f"CURVE key file {path}: {name} is not a 40-character Z85 "
                "key; make new keys with `edge-infer subscribe --make-keys DIR`"
            ) from None
    if public is None:
        raise ConfigError(
            f"CURVE key file {path}: no public-key line; make new keys with "
            "`edge-infer subscribe --make-keys DIR`"
        )
    if secret and private is None:
        raise ConfigError(
            f"CURVE key file {path}: holds no secret-key (is it the .key "
            "file instead of the .key_secret one?)"
        )
    return public, private


def secret_exposure(path: Path) -> str | None:
    """Why a secret key file is readable by others, or ``None``."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (
            f"{path} is readable by other users (mode {stat.S_IMODE(mode):04o}); "
            f"run `chmod 600 {path}`"
        )
    return None


def keys_dir_problems(keys_dir: Path) -> list[str]:
    """Everything wrong with a daemon's keys folder (empty when it is usable)."""
    problems: list[str] = []
    secret = keys_dir / SERVER_SECRET
    clients = keys_dir / CLIENTS
    if not secret.is_file():
        problems.append(
            f"{secret} is missing; make keys with `edge-infer subscribe --make-keys {keys_dir}`"
        )
    else:
        try:
            read_key_file(secret, secret=True)
        except ConfigError as exc:
            problems.append(str(exc))
        exposure = secret_exposure(secret)
        if exposure is not None:
            problems.append(exposure)
    if not clients.is_dir():
        problems.append(f"{clients}/ is missing: no subscriber could connect")
    else:
        keys = sorted(clients.glob("*.key"))
        if not keys:
            problems.append(f"{clients}/ holds no *.key: no subscriber could connect")
        for key in keys:
            try:
                read_key_file(key, secret=False)
            except ConfigError as exc:
                problems.append(str(exc))
    return problems


def server_keys(keys_dir: Path) -> tuple[bytes, bytes]:
    """The daemon's ``(public, secret)`` keys, after checking the whole folder."""
    problems = [p for p in keys_dir_problems(keys_dir) if "readable by other users" not in p]
    if problems:
        raise ConfigError(f"publisher.curve.keys_dir: {problems[0]}")
    exposure = secret_exposure(keys_dir / SERVER_SECRET)
    if exposure is not None:
        log.warning("CURVE: %s", exposure)
    public, private = read_key_file(keys_dir / SERVER_SECRET, secret=True)
    assert private is not None  # read_key_file(secret=True) guarantees it
    return public, private


def _write_cert(path: Path, public: bytes, secret: bytes | None) -> None:
    kind = "Secret" if secret is not None else "Public"
    lines = [
        f"#   ****  Generated on {datetime.datetime.now().isoformat(timespec='seconds')} "
        "by edge-infer  ****",
        f"#   ZeroMQ CURVE {kind} Certificate",
        "",
        "metadata",
        "curve",
        f'    public-key = "{public.decode()}"',
    ]
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode()}"')
    with atomic_path(path) as tmp:
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret is not None else 0o644
        )
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write("\n".join(lines) + "\n")


def make_keys(keys_dir: Path, client: str = "client") -> Path:
    """Make the daemon's key pair (unless it exists) and a key pair for subscriber
    ``client``; returns the folder to copy to that subscriber."""
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = keys_dir / SERVER_SECRET
    if secret.is_file():
        server_public, _ = read_key_file(secret, secret=True)
    else:
        server_public, server_secret = zmq.curve_keypair()
        _write_cert(secret, server_public, server_secret)
        _write_cert(keys_dir / SERVER_PUBLIC, server_public, None)
    public, private = zmq.curve_keypair()
    (keys_dir / CLIENTS).mkdir(exist_ok=True)
    _write_cert(keys_dir / CLIENTS / f"{client}.key", public, None)
    bundle = keys_dir / "clients" / client
    bundle.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_cert(bundle / "client.key_secret", public, private)
    _write_cert(bundle / SERVER_PUBLIC, server_public, None)
    return bundle
