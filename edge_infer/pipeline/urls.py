"""Camera URLs as they may be shown: in logs, status and errors a password never appears.

Standard library only, so :mod:`edge_infer.pipeline.hw_decode` stays importable without the
daemon's dependencies.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (user names are kept: they help)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))
