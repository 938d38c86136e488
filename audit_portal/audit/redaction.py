"""The one place that removes secrets from anything an audit event carries."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode

REDACTED = "[REDACTED]"

#: Field names that look secret: password, passwd, secret, token, api_key, authorization, cookie, ...
SECRET_KEY_RE = re.compile(
    r"pass(word|wd|phrase)?|pwd|secret|token|api[-_]?key|auth(orization)?$|cookie|session|csrf|"
    r"credential|private[-_]?key|signature|otp",
    re.IGNORECASE,
)
_KEY = (
    r"[A-Za-z0-9_\-]*(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[-_]?key|authorization|cookie|session|csrf|"
    r"credential)[A-Za-z0-9_\-]*"
)
#: ``password=x``, ``"token": "x"``, ``api_key: x`` inside free text.
_TEXT_PAIR_RE = re.compile(
    r"""(?P<key>["']?""" + _KEY + r"""["']?\s*[:=]\s*)(?P<q>["']?)(?P<value>[^\s"'&,;}]+)(?P=q)""",
    re.IGNORECASE,
)
_BEARER_RE = re.compile(r"(?P<key>\b(?:bearer|basic|token)\s+)[A-Za-z0-9._~+/=\-]{8,}", re.IGNORECASE)
_MAX_DEPTH = 8


def is_secret_key(name: object) -> bool:
    """True when a field called ``name`` should never be stored."""
    return isinstance(name, str) and bool(SECRET_KEY_RE.search(name))


def redact_text(text: str | None) -> str | None:
    """Blank out ``key=value`` pairs with secret-looking keys and bearer credentials in free text."""
    if not text:
        return text
    text = _TEXT_PAIR_RE.sub(lambda m: f"{m.group('key')}{m.group('q')}{REDACTED}{m.group('q')}", text)
    return _BEARER_RE.sub(lambda m: f"{m.group('key')}{REDACTED}", text)


def redact(value, _depth: int = 0):
    """Return a JSON-safe copy of ``value`` with secret fields and secret-looking text redacted."""
    if _depth > _MAX_DEPTH:
        return "[TRUNCATED]"
    if isinstance(value, Mapping):
        return {
            str(k): (REDACTED if is_secret_key(k) else redact(v, _depth + 1)) for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(v, _depth + 1) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact_text(repr(value))


def redact_query_string(query: str | bytes | None) -> str:
    """Redact the values of secret-looking parameters in a URL query string."""
    if not query:
        return ""
    if isinstance(query, bytes):
        query = query.decode("utf-8", "replace")
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, REDACTED if is_secret_key(k) else redact_text(v)) for k, v in pairs], safe="[]")
