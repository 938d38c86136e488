"""What an erasure covers and how it changes each event (``erasure.py`` runs it, with four eyes).

The events: those *by* the person (``user_id``, also the id the link sealed when the account is gone, or the username
snapshot), those *about* them (``resource_type`` USER with their id), and failed logins that typed their username
(``metadata.attempted_username``). In each, following docs/spec19 (the public chain's rules):

- username, IP address and user agent become NULL in the events *by* them (a failed login's address is not theirs
  for sure: anyone can type a name, and the address is the evidence of an attack; it stays);
- the description and metadata have each of the person's names replaced by "[erased]" (changed only if named);
- for each field changed, the link gets ``erased[field]`` = the commitment of the ORIGINAL value under the field's
  salt, and loses ``salts[field]``: the row hash, built from the commitments, is unchanged, so the chains verify.

Events inside an active legal hold are left as they are and reported. Nothing else of an event changes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from sqlalchemy import false, func, select, union, update

from ...extensions import db
from ..record.actors import directory
from ..record.enums import ActionType, ResourceType
from ..record.models import AuditChainLink, AuditLog
from ..record.presentation import ERASED
from .canonical import commitment, encode
from .holds import active_holds

_logs = AuditLog.__table__
_chain = AuditChainLink.__table__
_ATTEMPTED = AuditLog.event_metadata["attempted_username"].as_string()
#: The fields an erasure sets to NULL in the events by the person, and those whose text it redacts.
NULLED = ("username", "ip_address", "user_agent")
REDACTED = ("description", "metadata")
#: Events read (and changed) per round.
BATCH = 1000


class MissingSalt(Exception):
    """A covered event's link has no salt for a field to erase (a chain not rebuilt in the public form)."""


@dataclass(frozen=True)
class Subject:
    """The person: a user id and/or the names they went by. Each way of naming them is a query of its own that an index
    serves, and the events are their union."""

    user_id: int | None
    names: tuple[str, ...]
    #: The account is gone: its events' own user_id is NULL now, their links keep the id (``audit_chain.user_id``,
    #: not indexed: read only then).
    gone: bool = False

    @classmethod
    def of(cls, user_id: int | None, username: str | None) -> Subject:
        """The person with ``user_id`` and/or ``username``; their names include the snapshots their events hold."""
        gone = user_id is not None and not directory().names([user_id])
        subject = cls(user_id, (username,) if username else (), gone)
        if user_id is None:
            return subject
        by_id = union(*subject._by_id()).subquery()
        names = {username} if username else set()
        names.update(n for n in db.session.scalars(select(_logs.c.username).distinct().where(
            _logs.c.id.in_(select(by_id.c.id)), _logs.c.username.is_not(None))) if n)
        return cls(user_id, tuple(sorted(names)), gone)

    def _by_id(self) -> list:
        branches = [select(_logs.c.id).where(_logs.c.user_id == self.user_id)]
        if self.gone:
            branches.append(select(_chain.c.audit_log_id.label("id")).where(_chain.c.user_id == self.user_id))
        return branches

    def by_them(self) -> list:
        """Queries of the ids of the events they did."""
        branches = self._by_id() if self.user_id is not None else []
        if self.names:
            branches.append(select(_logs.c.id).where(_logs.c.username.in_(self.names)))
        return branches

    def matches(self):
        """The ids of every event that names them: by them, about their account, failed logins with their name."""
        branches = self.by_them()
        if self.user_id is not None:
            branches.append(select(_logs.c.id).where(_logs.c.resource_type == ResourceType.USER.value,
                                                     _logs.c.resource_id == str(self.user_id)))
        if self.names:
            branches.append(select(_logs.c.id).where(_ATTEMPTED.in_(self.names)))
        return union(*branches).subquery()


def recorded_user_id(username: str) -> int | None:
    """The user id the events by ``username`` were sealed with, when they name exactly one (a deleted account's: its
    events' own user_id is NULL now, their links keep it); None when none, or several accounts had the name."""
    joined = _logs.join(_chain, _chain.c.audit_log_id == _logs.c.id)
    ids = list(db.session.scalars(select(func.coalesce(_chain.c.user_id, _logs.c.user_id)).distinct()
                                  .select_from(joined).where(_logs.c.username == username).limit(2)))
    ids = [i for i in ids if i is not None]
    return ids[0] if len(ids) == 1 else None


def count_events(subject: Subject) -> int:
    """How many events (sealed or not yet) name the person."""
    return db.session.scalar(select(func.count()).select_from(subject.matches())) or 0


@dataclass
class Outcome:
    erased: int = 0
    #: How many events had each field erased.
    fields: dict = field(default_factory=dict)
    #: The ids of the events left alone because a legal hold covers them.
    held: list = field(default_factory=list)


def carry_out(subject: Subject) -> Outcome:
    """Erase the person's data from every sealed event that names them, outside the active holds (in the session's
    transaction, which the caller has switched on for the triggers)."""
    outcome = Outcome()
    holds = active_holds(db.session)  # the purge's rule: both ends included
    pattern = _names_pattern(subject.names)
    branches = subject.by_them()
    by_them = _logs.c.id.in_(select(union(*branches).subquery().c.id)) if branches else false()
    matched = subject.matches()
    query = (select(_logs, _chain.c.seq.label("link_seq"), _chain.c.salts.label("link_salts"),
                    _chain.c.erased.label("link_erased"), by_them.label("by_them"))
             .join(_chain, _chain.c.audit_log_id == _logs.c.id).where(_logs.c.id.in_(select(matched.c.id)))
             .order_by(_logs.c.id).limit(BATCH))
    last = None
    while rows := db.session.execute(query if last is None else query.where(_logs.c.id > last)).all():
        last = rows[-1].id
        for row in rows:
            _erase_one(row, holds, pattern, outcome)
    return outcome


def _erase_one(row, holds, pattern, outcome: Outcome) -> None:
    """Erase one event (a row of ``audit_logs`` with its link's position, salts and commitments), unless held."""
    if any(start <= row.timestamp <= end for start, end in holds):
        outcome.held.append(row.id)
        return
    changes = _changes(row, pattern)
    if not changes:
        return
    salts, erased = dict(row.link_salts or {}), dict(row.link_erased or {})
    for name in changes:
        if name in erased:  # erased before (another name of theirs): the commitment of the original stays
            continue
        salt = salts.pop(name, None)
        if salt is None:
            raise MissingSalt(f"Event {row.id} (link {row.link_seq}) has no salt for its {name}: the chain is not "
                              "in the public form yet (run `flask --app wsgi db upgrade`). Nothing was erased.")
        erased[name] = commitment(salt, row._mapping[name])
        outcome.fields[name] = outcome.fields.get(name, 0) + 1
    # The timestamp too: on PostgreSQL it picks the event's monthly partition.
    db.session.execute(update(_logs).where(_logs.c.id == row.id, _logs.c.timestamp == row.timestamp)
                       .values(**changes))
    db.session.execute(update(_chain).where(_chain.c.seq == row.link_seq).values(salts=salts, erased=erased))
    outcome.erased += 1


def _changes(row, pattern: re.Pattern | None) -> dict:
    """The new values of the fields of ``row`` that hold the person's data."""
    m = row._mapping
    changes = {name: None for name in NULLED if row.by_them and m[name] is not None}
    if pattern is not None:
        if m["description"] and (text := pattern.sub(ERASED, m["description"])) != m["description"]:
            changes["description"] = text
        if m["metadata"] is not None and (data := _redact(m["metadata"], pattern)) != m["metadata"]:
            changes["metadata"] = data
    return changes


def _names_pattern(names: tuple[str, ...]) -> re.Pattern | None:
    """A name, where it stands as a word of its own ("carol" in "carol logged in" and in "carol@example.com", not in
    "carolina" or "carol.smith"); longer names first, so that one name inside another is replaced whole."""
    if not names:
        return None
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<![\w.-])(?:{alternatives})(?![\w-]|\.\w)")


def _redact(value, pattern: re.Pattern):
    """``value`` (JSON) with the names replaced in every string, keys included."""
    if isinstance(value, str):
        return pattern.sub(ERASED, value)
    if isinstance(value, list):
        return [_redact(v, pattern) for v in value]
    if isinstance(value, dict):
        return {_redact(k, pattern): _redact(v, pattern) for k, v in value.items()}
    return value


def manifest(connection) -> dict:
    """What every erasure so far left in the chain: ``{"entries": n, "sha256": hex}`` over the sorted lines
    ``event id|field|commitment`` of every link's ``erased``. Each ERASURE event records it after its erasure, so that
    ``verify`` can tell a field an erasure removed from a salt removed by hand (which would let anyone rewrite that
    field: its commitment, not its value, is what the chains then check)."""
    lines = []
    rows = connection.execute(select(_chain.c.audit_log_id, _chain.c.erased).where(_chain.c.erased.is_not(None))
                              .order_by(_chain.c.audit_log_id))
    for audit_id, erased in rows:
        for name in sorted(erased or {}):
            lines.append(f"{audit_id}|{name}|{erased[name]}")
    return {"entries": len(lines), "sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest()}


def check(problem) -> None:
    """For ``verify`` (``problem`` reports one). Erased fields are checked by their kept commitment, not their value:
    accept them only as the erasures left them. The newest ERASURE event recorded the manifest of every erased field
    then (``manifest``); an erased
    username, IP address or user agent must be empty, an erased description or metadata must show "[erased]"."""
    with db.engine.connect() as conn:
        now = manifest(conn)
        recorded = conn.execute(select(_logs.c["metadata"])
                                .where(_logs.c.action_type == ActionType.ERASURE.value).order_by(_logs.c.id.desc())
                                .limit(1)).scalar()
        rows = conn.execute(select(_chain.c.audit_log_id, _chain.c.erased, _logs.c.username, _logs.c.ip_address,
                                   _logs.c.user_agent, _logs.c.description, _logs.c["metadata"])
                            .join(_logs, _logs.c.id == _chain.c.audit_log_id)
                            .where(_chain.c.erased.is_not(None))).all()
    expected = (recorded or {}).get("manifest") if isinstance(recorded, dict) else None
    if now["entries"] and expected != now:
        problem(f"{now['entries']} erased field(s) do not match what the last ERASURE event recorded "
                       f"({(expected or {}).get('entries', 0)}): a salt was removed or a commitment changed by hand, "
                       "which would let that field be rewritten unseen.")
    for row in rows:
        for name in row.erased or {}:
            value = row._mapping[name]
            if name in NULLED and value is not None:
                problem(f"Event {row.audit_log_id}: its {name} was erased but holds a value again.")
            elif name in REDACTED and ERASED not in encode(value).decode():
                problem(f"Event {row.audit_log_id}: its erased {name} does not show {ERASED}: it was changed.")
