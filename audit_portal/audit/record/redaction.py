"""The one place that removes secrets from anything an audit event carries."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode

REDACTED = "[REDACTED]"

#: Field names that look secret: password, passwd, secret, token, api_key, authorization, cookie, session id, ...
#: Whole-word forms (``pass``, ``otp``) only match as a word, so ``passenger`` or ``footprint`` stay readable.
SECRET_KEY_RE = re.compile(
    r"passw(?:or)?d|passphrase|pwd|secret|token|api[-_]?key|apikey|auth$|authori[sz]ation|cookie|csrf|"
    r"credential|private[-_]?key|signature|sess(?:ion)?[-_]?(?:id|key)$|^session$|"
    r"(?:^|[-_.])(?:pass|pin|otp)(?:$|[-_.])",
    re.IGNORECASE,
)
#: A candidate key inside free text; ``is_secret_key`` decides whether its value is hidden.
_TEXT_KEY = (
    r"[A-Za-z0-9_\-]*(?:pass|pwd|secret|token|api[-_]?key|apikey|auth|cookie|session|csrf|credential|"
    r"private[-_]?key|signature|pin|otp)[A-Za-z0-9_\-]*"
)
#: ``password=x``, ``"token": "x y"``, ``api_key: x``, ``Authorization: Bearer x`` inside free text. A quoted
#: value runs to its closing quote (or the end of the line, when a message was cut short).
_TEXT_PAIR_RE = re.compile(
    r"""(?P<key>(?P<kq>["']?)(?<![A-Za-z0-9_\-])(?P<name>""" + _TEXT_KEY + r""")(?P=kq)\s*[:=]\s*)"""
    r"""(?:(?P<q>["'])(?P<quoted>(?:\\.|(?!(?P=q))[^\\\n])*)(?P<end>(?P=q)|)"""
    r"""|(?P<bare>\[REDACTED\](?=[\s"'&,;})\]]|$)|(?:(?:bearer|basic|digest|token)\s+)?[^\s"'&,;})\]]+))""",
    re.IGNORECASE,
)
#: ``Bearer x`` anywhere; ``Basic x`` and ``Token x`` only when x looks like a credential (a digit, or long).
_BEARER_RE = re.compile(
    r"(?P<key>\bbearer\s+)[^\s\"',;]+"
    r"|(?P<key2>\b(?:basic|token)\s+)(?:(?=[A-Za-z0-9._~+/=\-]*\d)[A-Za-z0-9._~+/=\-]{8,}|[A-Za-z0-9._~+/=\-]{20,})",
    re.IGNORECASE,
)
_MAX_DEPTH = 8


def is_secret_key(name: object) -> bool:
    """True when a field called ``name`` should never be stored."""
    if not isinstance(name, str):
        return False
    if len(name) <= _CACHED_NAME_MAX:
        return _secret_name(name)
    return bool(SECRET_KEY_RE.search(name))


#: Names up to this length are cached: events carry the same few field names over and over ("old", "new",
#: "full_name", ...); a query string's parameter names come from clients and can be long, so those are not kept.
_CACHED_NAME_MAX = 64


@functools.lru_cache(maxsize=4096)
def _secret_name(name: str) -> bool:
    return bool(SECRET_KEY_RE.search(name))


def _redact_pair(match: re.Match) -> str:
    if not is_secret_key(match.group("name")):
        return match.group(0)
    if match.group("q"):
        return f"{match.group('key')}{match.group('q')}{REDACTED}{match.group('end')}"
    return f"{match.group('key')}{REDACTED}"


#: Every match of ``_TEXT_PAIR_RE`` or ``_BEARER_RE`` contains one of these (lower-cased). An ASCII text that
#: contains none of them cannot match, and skips the two regular expressions (most request descriptions and
#: paths). Non-ASCII text always takes the full path: under IGNORECASE the patterns' ASCII letters also match
#: a few non-ASCII ones (the Kelvin sign, the long s, the dotted and dotless i).
_SECRET_HINTS = ("pass", "pwd", "secret", "token", "key", "auth", "cookie", "session", "csrf", "credential",
                 "signature", "pin", "otp", "bearer", "basic")
_SECRET_HINT_RE = re.compile("|".join(_SECRET_HINTS))


def _may_hold_secret(text: str) -> bool:
    return not text.isascii() or _SECRET_HINT_RE.search(text.lower()) is not None


def redact_text(text: str | None) -> str | None:
    """Blank out ``key=value`` pairs with secret-looking keys and bearer credentials in free text."""
    if not text or not _may_hold_secret(text):
        return text
    return _redact_patterns(text)


def _redact_patterns(text: str) -> str:
    text = _TEXT_PAIR_RE.sub(_redact_pair, text)
    return _BEARER_RE.sub(lambda m: f"{m.group('key') or m.group('key2')}{REDACTED}", text)


def storable(text: str) -> str:
    """``text`` as every supported database accepts it: NUL escaped, lone surrogates backslash-escaped
    (PostgreSQL refuses both, in text and in JSONB)."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def redact(value, _depth: int = 0):
    """Return a JSON-safe, storable copy of ``value`` with secret fields and secret-looking text redacted."""
    if _depth > _MAX_DEPTH:
        return "[TRUNCATED]"
    if isinstance(value, Mapping):
        return {
            storable(str(k)): (REDACTED if is_secret_key(str(k)) else redact(v, _depth + 1)) for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(v, _depth + 1) for v in value]
    if isinstance(value, str):
        return storable(redact_text(value))
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or Infinity; PostgreSQL's JSONB refuses them
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return storable(redact_text(repr(value)))


def redact_query_string(query: str | bytes | None) -> str:
    """Redact the values of secret-looking parameters in a URL query string."""
    if not query:
        return ""
    if isinstance(query, bytes):
        query = query.decode("utf-8", "replace")
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, REDACTED if is_secret_key(k) else redact_text(v)) for k, v in pairs], safe="[]")
