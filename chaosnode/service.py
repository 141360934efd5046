"""The node's HTTPS connection to the enrollment service, checked against the cluster CA
(the enrollment client and the CRL refresh both use it)."""

from __future__ import annotations

import http.client
import ssl
import urllib.parse
from pathlib import Path


def connect(url: str, ca_file: Path, timeout: float) -> http.client.HTTPSConnection:
    """An (unopened) connection to https://HOST:PORT whose certificate must come from the
    cluster CA and name HOST. ValueError for a bad URL or an unreadable CA."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"--url {url!r} must be https://HOST:PORT")
    try:
        context = ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load the cluster CA {ca_file}: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return http.client.HTTPSConnection(
        parts.hostname, parts.port or 443, context=context, timeout=timeout
    )
