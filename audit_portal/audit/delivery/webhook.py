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
    """The receiver did not take the message (no answer, or not a 2xx); the text says why, ``status`` is the HTTP
    status it answered (None when there was no answer)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


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


def url_problem(url: str, schemes: tuple[str, ...]) -> tuple[object, str | None]:
    """(the parsed URL, why it is unusable or None): one of ``schemes``, a host, a port from 1 to 65535 if
    given, no credentials in it (they would be shown and logged: send a token as a header), no spaces or
    control characters."""
    parts = urlsplit(url)
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url) or not url.isascii():
        return parts, "Must not contain spaces, control or non-ASCII characters (percent-encode them)."
    if parts.scheme not in schemes or not parts.hostname:
        return parts, "scheme"
    if parts.username is not None or parts.password is not None:
        return parts, "Must not hold a user name or password: send credentials as a header."
    try:
        port = parts.port
    except ValueError:
        return parts, "The port must be a number from 1 to 65535."
    if port == 0 or any(len(label) > 63 for label in parts.hostname.split(".")):
        return parts, "The port must be a number from 1 to 65535, and each part of the host name at most 63 characters."
    return parts, None


def check_url(url: str) -> str | None:
    """Why ``url`` cannot take webhooks (None: it can): HTTPS anywhere, plain HTTP only to loopback."""
    parts, problem = url_problem(url, ("https", "http"))
    if problem == "scheme":
        return "Must be an https:// URL (http:// only to a loopback address such as 127.0.0.1)."
    if problem:
        return problem
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


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is not delivery: following it would turn the POST into a GET without its body (and carry
    the signature and custom headers, a token perhaps, to another host). A 3xx fails like any other non-2xx."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


@functools.lru_cache(maxsize=32)
def _opener(ca_file: str | None) -> urllib.request.OpenerDirector:
    """One opener per process and CA bundle (``None``: the system's): verifying TLS (loading a CA bundle costs
    tens of milliseconds), no redirects."""
    context = ssl.create_default_context(cafile=ca_file)
    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirects())


def post(url: str, body: bytes, *, secret: str, delivery_id: str, headers: dict | None = None,
         content_type: str = "application/x-ndjson", ca_file: str | None = None) -> int:
    """POST ``body`` signed with ``secret``; return the status. Raises ``DeliveryFailed`` unless it is 2xx.
    ``ca_file``: the CA bundle that signed an https receiver's certificate (default: the system's)."""
    if check_url(url):
        raise DeliveryFailed(f"{url}: {check_url(url)}")
    try:
        opener = _opener(ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise DeliveryFailed(f"{url}: the CA file {ca_file} could not be read ({exc})") from None
    request = urllib.request.Request(url, data=body, method="POST", headers={  # noqa: S310 - https, or http to loopback
        **(headers or {}), "Content-Type": content_type, "User-Agent": "audit_portal-webhook/1",
        SIGNATURE_HEADER: sign(secret, body, int(time.time())), DELIVERY_HEADER: delivery_id})
    try:
        with opener.open(request, timeout=TIMEOUT_S) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(f"HTTP {exc.code} from {url}", status=exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryFailed(f"{url}: {getattr(exc, 'reason', exc)}") from None
