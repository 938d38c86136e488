"""Signed webhooks: an HTTP POST whose body the receiver can authenticate, and the recipe to check it.

Headers: ``X-Audit-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`` and
``X-Audit-Delivery: <id>``, the same id on every retry of one batch (a receiver drops a repeat). HTTPS, or plain
HTTP to a loopback address only.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import secrets
import ssl
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Audit-Signature"
DELIVERY_HEADER = "X-Audit-Delivery"
#: Seconds a receiver has to answer.
TIMEOUT_S = 10
#: Headers a destination may not set itself (the signature, the delivery id, what HTTP itself owns).
RESERVED_HEADERS = frozenset(h.lower() for h in (SIGNATURE_HEADER, DELIVERY_HEADER, "Content-Type", "Content-Length",
                                                 "Host", "Transfer-Encoding", "Connection"))


class DeliveryFailed(Exception):
    """The receiver did not take the message (no answer, or not a 2xx); the text says why."""


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Audit-Signature`` value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, body: bytes, header: str, tolerance_s: int = 300, now: float | None = None) -> bool:
    """What a receiver runs: the signature matches and is recent (a replay of an old one is refused)."""
    try:
        parts = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), header)


def check_url(url: str) -> str | None:
    """Why ``url`` cannot take webhooks (None: it can): HTTPS anywhere, plain HTTP only to loopback."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "Must be an https:// URL (http:// only to a loopback address such as 127.0.0.1)."
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        return "The port must be a number from 1 to 65535."
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        return "Plain http:// is accepted only for a loopback address (127.0.0.1, ::1, localhost); use https://."
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process (loading the system's CA bundle costs tens of milliseconds)."""
    return ssl.create_default_context()


def post(url: str, body: bytes, *, secret: str, delivery_id: str, headers: dict | None = None,
         content_type: str = "application/x-ndjson") -> int:
    """POST ``body`` signed with ``secret``; return the status. Raises ``DeliveryFailed`` unless it is 2xx."""
    if check_url(url):
        raise DeliveryFailed(f"{url}: {check_url(url)}")
    request = urllib.request.Request(url, data=body, method="POST", headers={  # noqa: S310 - https, or http to loopback
        **(headers or {}), "Content-Type": content_type, "User-Agent": "audit_portal-webhook/1",
        SIGNATURE_HEADER: sign(secret, body, int(time.time())), DELIVERY_HEADER: delivery_id})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=_tls_context()) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(f"HTTP {exc.code} from {url}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryFailed(f"{url}: {getattr(exc, 'reason', exc)}") from None
