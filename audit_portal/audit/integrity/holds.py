"""Legal holds: time ranges whose events the retention purge keeps until the hold is released. Placing and
releasing one are audited (HOLD_CREATE, HOLD_RELEASE on LEGAL_HOLD, naming the admin) in the same transaction;
the caller (a page, the API, the CLI) commits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from ...extensions import db
from ...timeutil import utcnow
from ..record.enums import ActionType, ResourceType
from ..write.service import log_audit
from .models import REASON_MAX, LegalHold

_holds = LegalHold.__table__


class HoldError(ValueError):
    """A rule was broken; ``field`` names the input at fault, ``code`` the HTTP status that answers it."""

    def __init__(self, field: str, message: str, code: int = 422):
        super().__init__(message)
        self.field, self.message, self.code = field, message, code


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def describe(hold: LegalHold) -> dict:
    """What the audit events say about a hold."""
    return {"from": hold.starts_at.isoformat(), "to": hold.ends_at.isoformat(), "reason": hold.reason}


def add_hold(actor, starts_at: datetime, ends_at: datetime, reason: str) -> LegalHold:
    """Hold the events from ``starts_at`` to ``ends_at`` (both included) back from the retention purge."""
    reason = (reason or "").strip()
    if starts_at > ends_at:
        raise HoldError("from", f"The hold starts ({_when(starts_at)}) after it ends ({_when(ends_at)}).")
    if not reason:
        raise HoldError("reason", "Say why the events are held (a case or matter reference, for instance).")
    if len(reason) > REASON_MAX:
        raise HoldError("reason", f"At most {REASON_MAX} characters (got {len(reason)}).")
    hold = LegalHold(starts_at=starts_at, ends_at=ends_at, reason=reason, created_at=utcnow(),
                     created_by_id=actor.id if actor else None, created_by=actor.username if actor else None)
    db.session.add(hold)
    db.session.flush()
    _record(actor, ActionType.HOLD_CREATE, hold,
            f"Legal hold {hold.id} placed on events from {_when(starts_at)} to {_when(ends_at)}")
    return hold


def release_hold(actor, hold_id: int) -> LegalHold:
    """Release a hold: the purge may remove its events again (those past their retention)."""
    hold = db.session.get(LegalHold, hold_id) if 0 < hold_id < 2**31 else None
    if hold is None:
        raise HoldError("id", f"There is no legal hold with id {hold_id}.", 404)
    if hold.released_at is not None:
        by = f" by {hold.released_by}" if hold.released_by else ""
        raise HoldError("id", f"Legal hold {hold_id} was already released ({_when(hold.released_at)}{by}).", 409)
    hold.released_at = utcnow()
    hold.released_by_id, hold.released_by = (actor.id, actor.username) if actor else (None, None)
    db.session.flush()
    _record(actor, ActionType.HOLD_RELEASE, hold,
            f"Legal hold {hold.id} on events from {_when(hold.starts_at)} to {_when(hold.ends_at)} released")
    return hold


def list_holds() -> list[LegalHold]:
    """Every hold: the active ones first, then the released ones; newest first within each."""
    return list(db.session.scalars(select(LegalHold).order_by(LegalHold.released_at.is_not(None),
                                                              LegalHold.id.desc())))


def active_holds(conn_or_session) -> list[tuple[datetime, datetime]]:
    """The ranges ``(from, to)`` (both included, UTC) of the holds not released, earliest first."""
    rows = conn_or_session.execute(select(_holds.c.starts_at, _holds.c.ends_at)
                                   .where(_holds.c.released_at.is_(None))
                                   .order_by(_holds.c.starts_at, _holds.c.ends_at, _holds.c.id))
    return [(start, end) for start, end in rows]


def _record(actor, action: ActionType, hold: LegalHold, text: str) -> None:
    who = actor.username if actor and actor.username else "the command line"
    log_audit(actor.id if actor else None, action, ResourceType.LEGAL_HOLD, hold.id, f"{text} by {who}",
              {**describe(hold), "admin_action": True}, username=actor.username if actor else None,
              transactional=True, via_outbox=False)
