"""The search language of the ``q`` parameter: ``key:value`` terms, ``-key:value`` to negate, ``key:a,b`` for
either, ``"quoted values"``, and bare words that search the description. It compiles to conditions on
``audit_logs`` that ``query.apply_filters`` adds to the other filters (AND), so the viewer, the API, the export
and the error dashboard accept exactly the same queries. README's Filters section documents it.

    action:login_failed ip:10.0.0.0/8 -user:alice created:>=2026-11-01 "disk full"
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import and_, cast, false, func, literal, not_, or_
from sqlalchemy.dialects.postgresql import INET
from sqlalchemy.sql import ColumnElement

from ...database import escape_like
from ...extensions import db
from ...timeutil import midnight
from ..record.enums import ActionType, Category, ErrorSeverity, ResourceType, Status
from ..record.events import canonical_ip
from ..record.models import AuditLog

MAX_QUERY = 1000
MAX_TERMS = 30
_KEY = re.compile(r"[A-Za-z_]+:")
_ENUMS = {"action": (AuditLog.action_type, ActionType), "resource": (AuditLog.resource_type, ResourceType),
          "status": (AuditLog.status, Status), "category": (AuditLog.category, Category),
          "severity": (AuditLog.severity, ErrorSeverity)}
_PLAIN = {"error": AuditLog.error_type, "request": AuditLog.request_id}
KEYS = (*_ENUMS, *_PLAIN, "user", "ip", "path", "method", "token", "created")
_OPERATORS = (">=", "<=", ">", "<")
#: The name a failed or throttled login typed, kept in the event's metadata (``log_login_failed``): such an
#: event has no actor, so its ``username`` column is empty.
ATTEMPTED_USERNAME = AuditLog.event_metadata["attempted_username"].as_string()
#: The prefix of the API token a request authenticated with (its ``client`` credential).
_TOKEN_PREFIX = AuditLog.event_metadata[("client", "prefix")].as_string()


def suggestions() -> dict:
    """What the search box suggests while typing: the keys, and the values of the keys that have a fixed set."""
    values = {key: enum.values() for key, (_, enum) in _ENUMS.items()}
    values["method"] = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    values["created"] = [">=", "<", ">", "<="]
    return {"keys": list(KEYS), "values": values}


class QueryError(ValueError):
    """A term that cannot be understood: the message names it and its character offset in the query."""

    def __init__(self, term: str, offset: int, problem: str):
        self.message = f"{term[:60]!r} at offset {offset}: {problem}"
        super().__init__(self.message)


@dataclass
class Term:
    text: str  #: as written, for messages
    offset: int
    key: str | None = None  #: None: bare words
    values: list[str] = field(default_factory=list)
    negated: bool = False
    phrase: bool = False  #: a quoted bare phrase


def _read_value(q: str, i: int) -> tuple[str, int, bool]:
    """The value starting at ``i`` (quoted or up to the next space) and where it ends; a quoted value's quotes
    are removed (``\\"`` inside one is a quote)."""
    if i < len(q) and q[i] == '"':
        out, j = [], i + 1
        while j < len(q) and q[j] != '"':
            if q[j] == "\\" and j + 1 < len(q):
                j += 1
            out.append(q[j])
            j += 1
        if j >= len(q):
            raise QueryError(q[i:], i, "a quote is not closed")
        return "".join(out), j + 1, True
    j = i
    while j < len(q) and not q[j].isspace():
        j += 1
    return q[i:j], j, False


def parse(q: str) -> list[Term]:
    """The terms of ``q``; raises ``QueryError`` for one that is malformed."""
    if len(q) > MAX_QUERY:
        raise QueryError(q[:20], 0, f"a query has at most {MAX_QUERY} characters")
    terms: list[Term] = []
    i = 0
    while i < len(q):
        if q[i].isspace():
            i += 1
            continue
        start, negated = i, q[i] == "-" and i + 1 < len(q) and not q[i + 1].isspace()
        j = i + 1 if negated else i
        key_match = _KEY.match(q, j)
        if key_match:
            key = key_match.group(0)[:-1].lower()
            if key not in KEYS:
                raise QueryError(q[start:key_match.end()], start, f"unknown key; the keys are {', '.join(KEYS)}")
            value, end, quoted = _read_value(q, key_match.end())
            values = [value] if quoted else [v for v in value.split(",")]
            if not value or any(not v for v in values):
                raise QueryError(q[start:end], start, "a value is missing")
            terms.append(Term(q[start:end], start, key, values, negated))
        else:
            value, end, quoted = _read_value(q, j)
            if negated or not value:
                raise QueryError(q[start:end], start, "a bare word cannot be negated; use -key:value")
            terms.append(Term(q[start:end], start, None, [value], phrase=quoted))
        if len(terms) > MAX_TERMS:
            raise QueryError(q[start:end], start, f"a query has at most {MAX_TERMS} terms")
        i = end
    return terms


def reads_rows(q: str | None) -> bool:
    """Whether counting ``q``'s matches reads each candidate row, not an index alone: a bare word (a text match, as
    ``search``), or more than one term besides ``created:`` (one index serves one term; the others are checked on
    the row). ``query.count_bounded`` counts such queries to AUDIT_SEARCH_COUNT_LIMIT. ``q`` is valid."""
    if not q:
        return False
    terms = [term for term in parse(q) if term.key != "created"]
    return len(terms) > 1 or any(term.key is None for term in terms)


def compile_query(q: str) -> list[ColumnElement]:
    """The conditions ``q`` stands for (each term one, ANDed by the caller); raises ``QueryError``."""
    return [_term(term) for term in parse(q)]


def _term(term: Term) -> ColumnElement:
    if term.key is None:
        return _describes(term)
    conditions = _conditions(term)
    condition = or_(*conditions) if len(conditions) > 1 else conditions[0]
    # "Not that": events without the field are kept (-ip:10.0.0.0/8 keeps the events that have no IP), so a
    # comparison with NULL counts as false before it is negated.
    return not_(func.coalesce(condition, false())) if term.negated else condition


def _describes(term: Term) -> ColumnElement:
    words = [term.values[0]] if term.phrase else term.values[0].split()
    return and_(*(func.lower(AuditLog.description).like(f"%{escape_like(w.lower())}%", escape="\\") for w in words))


def _conditions(term: Term) -> list[ColumnElement]:
    key = term.key
    if key in _ENUMS:
        column, enum = _ENUMS[key]
        return [column == _enum_value(term, enum, v) for v in term.values]
    if key in _PLAIN:
        return [_PLAIN[key] == v for v in term.values]
    if key == "method":
        return [AuditLog.http_method == v.upper() for v in term.values]
    if key == "user":
        return [AuditLog.user_id == int(v) if v.isascii() and v.isdecimal() and len(v) < 19
                else or_(AuditLog.username == v, ATTEMPTED_USERNAME == v) for v in term.values]
    if key == "ip":
        return [_ip(term, v) for v in term.values]
    if key == "path":
        return [AuditLog.path.like(escape_like(v[:-1]) + "%", escape="\\") if v.endswith("*") else AuditLog.path == v
                for v in term.values]
    if key == "token":
        return [_TOKEN_PREFIX == v for v in term.values]
    return [_created(term, v) for v in term.values]


def _enum_value(term: Term, enum, value: str) -> str:
    try:
        return enum.parse(value).value
    except ValueError:
        raise QueryError(term.text, term.offset,
                         f"unknown {term.key} {value[:40]!r}; one of: {', '.join(enum.values())}") from None


def _ip(term: Term, value: str) -> ColumnElement:
    if "/" not in value:
        address = canonical_ip(value)
        if address is None:
            raise QueryError(term.text, term.offset, f"{value[:50]!r} is not an IPv4 or IPv6 address or range")
        return AuditLog.ip_address == address
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise QueryError(term.text, term.offset, f"{value[:50]!r} is not an IP range such as 10.0.0.0/8") from None
    return _in_network(str(network))


def _in_network(network: str) -> ColumnElement:
    """Addresses inside ``network``: PostgreSQL's ``inet`` containment, through ``audit_inet`` (migration 0014:
    NULL for text that is no address, where a cast would fail the query; the expression of the index
    ``ix_audit_logs_ip_inet``); on SQLite a function of ``database.py`` that Python evaluates row by row."""
    if db.engine.dialect.name == "postgresql":
        return func.audit_inet(AuditLog.ip_address).op("<<=", is_comparison=True)(cast(literal(network), INET))
    return func.audit_ip_in_network(AuditLog.ip_address, network) == 1


def _created(term: Term, value: str) -> ColumnElement:
    low, high = _created_range(term, value)
    conditions = ([AuditLog.timestamp >= low] if low else []) + ([AuditLog.timestamp < high] if high else [])
    return and_(*conditions)


def _created_range(term: Term, value: str) -> tuple[datetime | None, datetime | None]:
    """[low, high) of one ``created:`` value (None: open)."""
    if ".." in value:
        low, _, high = value.partition("..")
        return _moment(term, low, start=True), _moment(term, high, start=False)
    for operator in _OPERATORS:
        if value.startswith(operator):
            moment = value[len(operator):]
            bound = _moment(term, moment, start=operator in (">=", "<"))
            return (bound, None) if operator in (">=", ">") else (None, bound)
    # A day alone: that whole day; a moment alone: that moment.
    return _moment(term, value, start=True), _moment(term, value, start=False)


def created_range(q: str) -> tuple[datetime | None, datetime | None]:
    """The time range every event ``q`` selects lies in, from its ``created:`` terms: [low, high), None where
    open (negated terms and ``a,b`` alternatives do not narrow it). Raises ``QueryError``."""
    low = high = None
    for term in parse(q):
        if term.key == "created" and not term.negated and len(term.values) == 1:
            lo, hi = _created_range(term, term.values[0])
            low = lo if low is None or (lo is not None and lo > low) else low
            high = hi if high is None or (hi is not None and hi < high) else high
    return low, high


def _moment(term: Term, text: str, *, start: bool) -> datetime:
    """A date (its midnight; ``start=False``: the next midnight, so that a day is included whole) or an ISO
    date-time (UTC unless it says otherwise)."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return midnight(day) if start else midnight(day + timedelta(days=1))
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        return moment if start else moment + timedelta(microseconds=1)
    except (ValueError, OverflowError):  # OverflowError: before year 1 or after 9999 once in UTC
        raise QueryError(term.text, term.offset, f"{text[:40]!r} is not a date (2026-11-30) or date-time "
                                                 "(2026-11-30T14:00:00Z); operators: >=, >, <=, <, or a..b") from None
