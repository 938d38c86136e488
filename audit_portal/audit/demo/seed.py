"""Synthetic but realistic audit events for demos, staging and benchmarks.

A seed of a million events must cost seconds of Python, not minutes: rows are made as lines of PostgreSQL's COPY
text format (what the bulk load sends), from texts cleaned once per user and variant through the sanitisers
``build_event`` applies, with a chunk's random draws made at once. ``generate`` gives the rows as the dicts
``build_event`` makes (a test holds them equal), for SQLite and for callers that want events."""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import accumulate

from ...timeutil import utcnow
from ..record.enums import ActionType, ResourceType, Status
from . import scenarios as s
from .copytext import TimestampFormatter, event_from_line, from_microseconds, microseconds

#: The fields of a seed row, in the order of its COPY text line: those every event draws, then the scenario's.
COLUMNS = ("event_id", "timestamp", "ip_address", "user_agent", "request_id") + s.BODY_COLUMNS
#: Rows made (and, on PostgreSQL, copied and committed) at a time.
CHUNK_ROWS = 10_000

IPS = [f"10.0.{a}.{b}" for a in range(4) for b in (7, 23, 42, 101)] + ["2001:db8::17", "192.0.2.9"]
AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "python-requests/2.32.3",
    "curl/8.5.0",
]
#: Every (address, user agent) pair, each as its two fields: one uniform pick is an address and an agent.
_CLIENTS = [f"{ip}\t{agent}" for ip in IPS for agent in AGENTS]
#: Target ids (a user, a token, a count), 1 to 500, as text.
_TARGETS = [str(i) for i in range(1, 501)]
#: Hex digit -> the UUID variant digit (10xx) that keeps its low two random bits.
_VARIANT = {f"{i:x}": "89ab"[i & 3] for i in range(16)}

#: Action types the seed never fakes: they carry the integrity state (the hash chain's checkpoints and the
#: latest verification result), which demo events would falsify.
NOT_SEEDED = frozenset({ActionType.CHAIN_CHECKPOINT, ActionType.AUDIT_VERIFY, ActionType.DIGEST_SIGNED})
#: (weight, scenario). Every other action type, every status and every severity has at least one scenario.
SCENARIOS = [
    (0.30, s.request),
    (0.15, s.session(ActionType.LOGIN, "{user} logged in")),
    (0.07, s.session(ActionType.LOGOUT, "{user} logged out")),
    (0.07, s.refused_login(ActionType.LOGIN_FAILED, "wrong password")),
    (0.01, s.refused_login(ActionType.LOGIN_THROTTLED, "too many attempts")),
    *[(weight, s.user_change(action)) for weight, action in [
        (0.02, ActionType.CREATE), (0.05, ActionType.UPDATE), (0.03, ActionType.STATUS_CHANGE),
        (0.02, ActionType.ACTIVATE), (0.02, ActionType.DEACTIVATE), (0.02, ActionType.DELETE),
        (0.02, ActionType.ROLE_CHANGE)]],
    (0.012, s.security(ActionType.PASSWORD_CHANGE, ResourceType.USER)),
    (0.01, s.security(ActionType.TOKEN_CREATE, ResourceType.API_TOKEN)),
    (0.008, s.security(ActionType.TOKEN_REVOKE, ResourceType.API_TOKEN)),
    (0.005, s.security(ActionType.TOKEN_AUTH_FAILED, ResourceType.API_TOKEN, Status.FAILURE)),
    (0.01, s.security(ActionType.PERMISSION_DENIED, ResourceType.REQUEST, Status.FAILURE)),
    (0.01, s.security(ActionType.EXPORT, ResourceType.AUDIT_LOG)),
    *[(0.015, s.data(action)) for action in (ActionType.CREATE, ActionType.READ, ActionType.UPDATE, ActionType.DELETE)],
    (0.001, s.maintenance(ActionType.RETENTION_PURGE, Status.SUCCESS, "Purged audit events older than 365 days")),
    (0.001, s.maintenance(ActionType.AUDIT_FAILURE, Status.ERROR, "An audit event could not be recorded in full")),
    *[(0.0005, s.stream(action)) for action in (ActionType.STREAM_CREATE, ActionType.STREAM_UPDATE,
                                                 ActionType.STREAM_DELETE)],
    *[(0.0005, s.alert(action)) for action in (ActionType.ALERT_TRIGGERED, ActionType.ALERT_ACKNOWLEDGED,
                                                ActionType.ALERT_RESOLVED, ActionType.ALERT_RULE_CREATE,
                                                ActionType.ALERT_RULE_UPDATE, ActionType.ALERT_RULE_DELETE)],
    *[(0.0005, s.trail(action)) for action in (ActionType.HOLD_CREATE, ActionType.HOLD_RELEASE,
                                                ActionType.ERASURE_REQUEST, ActionType.ERASURE_REJECT,
                                                ActionType.ERASURE)],
    # Errors: 10% of events, spread over ERRORS; two more pin down both error action types.
    *[(0.10 / len(s.ERRORS), s.error(i)) for i in range(len(s.ERRORS))],
    (0.0, s.error(0, ActionType.EXCEPTION_RAISED)),
    (0.0, s.error(1, ActionType.ERROR_OCCURRED)),
]


@dataclass(frozen=True)
class Chunk:
    """Consecutive seed rows as COPY text lines (each ending in a newline), and the span of their timestamps."""

    lines: list[str]
    first: datetime
    last: datetime


def generate_chunks(count: int, users: list[tuple[int | None, str | None]], *, days: int = 30, demo: bool = True,
                    seed: int | None = None, chunk_rows: int | None = None) -> Iterator[Chunk]:
    """Make ``count`` events spread over the last ``days`` days, oldest first (each moved earlier by up to half the
    gap to the next), by ``users`` (and anonymous failed logins), in chunks of ``chunk_rows``. The first events go through
    every scenario once, so even a small count has every action type, status and severity."""
    chunk_rows = chunk_rows or CHUNK_ROWS
    rng = random.Random(seed)
    actors = [s.Actor(uid, name) for uid, name in users]
    meta = s.Meta(demo)
    scenarios = [scenario for _, scenario in SCENARIOS]
    cumulative = list(accumulate(weight for weight, _ in SCENARIOS))
    now = microseconds(utcnow())
    span = days * 86_400_000_000
    step = span / max(count, 1)
    jitter = step * 0.5
    timestamp = TimestampFormatter()
    for start in range(0, count, chunk_rows):
        n = min(chunk_rows, count - start)
        stamps = [now - int(span - i * step + rng.random() * jitter) for i in range(start, start + n)]
        picks = rng.choices(scenarios, cum_weights=cumulative, k=n)
        for i in range(start, min(start + n, len(scenarios))):
            picks[i - start] = scenarios[i]
        chosen = zip(stamps, _event_ids(n), rng.choices(_CLIENTS, k=n), _request_ids(rng, n), picks,
                     rng.choices(actors, k=n), rng.choices(_TARGETS, k=n), strict=True)
        lines = [f"{event_id}\t{timestamp(us)}\t{client}\t{request_id}\t{scenario(rng, actor, target, meta)}\n"
                 for us, event_id, client, request_id, scenario, actor, target in chosen]
        yield Chunk(lines, from_microseconds(min(stamps)), from_microseconds(max(stamps)))


def generate(count: int, users: list[tuple[int | None, str | None]], *, days: int = 30, demo: bool = True,
             seed: int | None = None):
    """Yield ``count`` events (dicts as ``build_event`` makes them) as ``generate_chunks`` makes their rows."""
    for chunk in generate_chunks(count, users, days=days, demo=demo, seed=seed):
        for line in chunk.lines:
            yield event_from_line(COLUMNS, line)


def _event_ids(n: int) -> list[str]:
    """``n`` event ids as ``new_event_id`` makes them (UUID 7: this millisecond, then 74 random bits)."""
    t = f"{time.time_ns() // 1_000_000:012x}"
    head = f"{t[:8]}-{t[8:]}-7"
    h = secrets.token_hex(10 * n)
    return [f"{head}{h[j:j + 3]}-{_VARIANT[h[j + 3]]}{h[j + 4:j + 7]}-{h[j + 7:j + 19]}" for j in range(0, 20 * n, 20)]


def _request_ids(rng: random.Random, n: int) -> list[str]:
    """``n`` request ids (random UUID 4, from ``rng``: a seeded run repeats them)."""
    h = rng.randbytes(16 * n).hex()
    return [f"{h[j:j + 8]}-{h[j + 8:j + 12]}-4{h[j + 13:j + 16]}-{_VARIANT[h[j + 16]]}{h[j + 17:j + 20]}-{h[j + 20:j + 32]}"
            for j in range(0, 32 * n, 32)]
