"""Erasing a person's personal data from the trail, with four eyes: one admin asks (``request_erasure``), another
approves (``approve_erasure``: it is then carried out) or rejects it (``reject_erasure``). Each step is an audit event
on the request (ERASURE_REQUEST, ERASURE_REJECT, ERASURE), written in the step's transaction.

Carrying it out keeps the evidence (docs/compliance.md, "Erasure"): every covered event's link keeps a commitment of
each removed value (``audit_chain.erased``) in place of its salt, so both chains still verify, while the value itself
is gone (``erasure_scope.py`` says which events and fields). Events inside an active legal hold are left alone and
reported. The UPDATE of ``audit_logs`` and ``audit_chain`` is the one change of a stored event besides the purge: the
append-only triggers let it through only inside this transaction's ``audit_portal.erasure`` switch, and only for the
personal columns (migration 0016).

The callers (page, API, CLI) commit, or roll back on an ``ErasureError``; ``approve_erasure`` first seals, in a
transaction of its own, so that every covered event has its link.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, text, update

from ...extensions import db
from ...timeutil import utcnow
from ..record.actors import directory
from ..record.enums import ActionType, ResourceType, Status
from ..record.models import AuditChainLink, AuditLog
from ..write.service import log_audit
from . import erasure_scope
from .models import REASON_MAX, ErasureRequest, ErasureStatus
from .seal import seal

_logs = AuditLog.__table__
_chain = AuditChainLink.__table__
#: How many held event ids a request keeps for its report.
HELD_EVENTS_KEPT = 1000


class ErasureError(ValueError):
    """A request that cannot be made or decided: nothing was changed. ``field`` names the input at fault, ``code``
    is the HTTP status an API answers with."""

    def __init__(self, field: str, message: str, code: int = 422):
        super().__init__(message)
        self.field, self.message, self.code = field, message, code


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class Admin:
    """Who acts: an admin's id and name (the page and the API pass the logged-in user, the CLI ``--by``)."""

    id: int | None
    username: str


def admin_named(username: str) -> Admin:
    """The admin called ``username`` (the CLI's ``--by``); an ``ErasureError`` when there is none."""
    found = directory().find(username)
    user_id = found[0] if found else None
    if user_id is None or not directory().is_admin(user_id):
        raise ErasureError("by", f"{username!r} is not an admin who can log in: only admins request and decide "
                                 "erasures.")
    return Admin(user_id, username)


def list_requests(limit: int = 200) -> list[ErasureRequest]:
    """The newest requests first."""
    return list(db.session.scalars(select(ErasureRequest).order_by(ErasureRequest.id.desc()).limit(limit)))


def request_erasure(requester: Admin, reason: str, *, user_id: int | None = None,
                    username: str | None = None) -> ErasureRequest:
    """Ask for the erasure of the person with ``user_id`` and/or ``username`` (the account may be gone). Refused when
    no event names them, or when a request for them is already pending."""
    reason = (reason or "").strip()
    if not reason:
        raise ErasureError("reason", "Say why the data is erased (the reason is kept with the request).")
    if len(reason) > REASON_MAX:
        raise ErasureError("reason", f"The reason is longer than {REASON_MAX} characters.")
    username = (username or "").strip() or None
    if user_id is None and username is None:
        raise ErasureError("user_id", "Name the person: a user id, a username, or both.")
    # Complete the subject from the accounts that exist, so the approver sees whom it covers.
    if user_id is not None and username is None:
        username = directory().names([user_id]).get(user_id)
    elif user_id is None:  # the account's id, or the one its events were sealed with when it is gone
        account = directory().find(username)
        user_id = account[0] if account else erasure_scope.recorded_user_id(username)
    subject = erasure_scope.Subject.of(user_id, username)
    matched = erasure_scope.count_events(subject)
    if not matched:
        who = " / ".join(filter(None, [f"user id {user_id}" if user_id is not None else None,
                                       f"username {username!r}" if username else None]))
        raise ErasureError("user_id" if username is None else "username",
                           f"No audit event names {who} (as its actor, as the user it is about, or as a failed "
                           "login's username): there is nothing to erase.")
    pending = db.session.scalar(select(ErasureRequest.id).where(
        ErasureRequest.status == ErasureStatus.PENDING.value,
        ErasureRequest.subject_user_id.is_(None) if user_id is None else ErasureRequest.subject_user_id == user_id,
        ErasureRequest.subject_username.is_(None) if username is None else ErasureRequest.subject_username == username))
    if pending is not None:
        raise ErasureError("user_id" if username is None else "username",
                           f"Erasure request {pending} for this person is already waiting for a decision.", 409)
    made = ErasureRequest(subject_user_id=user_id, subject_username=username, reason=reason,
                          requested_by_id=requester.id, requested_by=requester.username,
                          status=ErasureStatus.PENDING.value, requested_at=utcnow())
    db.session.add(made)
    db.session.flush()
    _record(requester, ActionType.ERASURE_REQUEST, made,
            f"{requester.username} asked to erase the personal data of {_subject_label(made)} "
            f"(erasure request {made.id}, {matched:,} events)", {"events": matched, "reason": reason})
    return made


def reject_erasure(request_id: int, decider: Admin) -> ErasureRequest:
    """Reject a pending request (its requester may withdraw it this way too); nothing else changes."""
    found = _pending(request_id)
    _decide(found, decider, ErasureStatus.REJECTED)
    _record(decider, ActionType.ERASURE_REJECT, found,
            f"{decider.username} rejected erasure request {found.id} (asked by {found.requested_by})",
            {"requested_by": found.requested_by})
    return found


def approve_erasure(request_id: int, approver: Admin) -> ErasureRequest:
    """Approve a pending request of another admin and carry it out (in the caller's transaction, after a seal of its
    own). Refused, with nothing changed, for the requester and for a request that is not pending."""
    found = _pending(request_id)
    if approver.id is not None and approver.id == found.requested_by_id or approver.username == found.requested_by:
        raise ErasureError("approver", f"{approver.username} asked for erasure request {found.id}: another admin "
                                       "must approve it (four eyes).", 403)
    db.session.commit()  # nothing to write yet: ends the read, so that the seal's own transaction is not held up
    seal()  # every event that names them gets its link (and salts) first
    if db.engine.dialect.name == "postgresql":
        # The append-only triggers let this transaction change the personal columns (and the links' salts and
        # commitments), nothing else; the switch ends with the transaction.
        db.session.execute(text("SET LOCAL audit_portal.erasure = 'on'"))
    found = _pending(request_id, lock=True)  # again, locked: another admin may have decided meanwhile
    try:
        outcome = erasure_scope.carry_out(erasure_scope.Subject.of(found.subject_user_id, found.subject_username))
    except erasure_scope.MissingSalt as exc:
        raise ErasureError("status", str(exc), 409) from None
    _decide(found, approver, ErasureStatus.DONE)
    found.erased_count, found.held_count = outcome.erased, len(outcome.held)
    found.held_events = outcome.held[:HELD_EVENTS_KEPT]
    held = f"; {len(outcome.held):,} in a legal hold left as they are" if outcome.held else ""
    _record(approver, ActionType.ERASURE, found,
            f"{approver.username} approved erasure request {found.id} (asked by {found.requested_by}): personal data "
            f"erased from {outcome.erased:,} events{held}",
            {"requested_by": found.requested_by, "approved_by": approver.username, "erased": outcome.erased,
             "fields": outcome.fields, "held": len(outcome.held), "held_events": outcome.held[:100],
             "manifest": erasure_scope.manifest(db.session.connection())})
    return found


def _pending(request_id: int, lock: bool = False) -> ErasureRequest:
    query = select(ErasureRequest).where(ErasureRequest.id == request_id)
    found = db.session.scalar(query.with_for_update() if lock else query) if 0 < request_id < 2**31 else None
    if found is None:
        raise NotFound(f"There is no erasure request {request_id}.")
    if found.status != ErasureStatus.PENDING.value:
        raise ErasureError("status", f"Erasure request {request_id} is {found.status}, not pending: it was decided "
                                     f"by {found.decided_by}.", 409)
    return found


def _decide(found: ErasureRequest, decider: Admin, status: ErasureStatus) -> None:
    # Guarded by the status, so that two deciders at once cannot both win (SQLite has no FOR UPDATE).
    claimed = db.session.execute(
        update(ErasureRequest).where(ErasureRequest.id == found.id, ErasureRequest.status == ErasureStatus.PENDING.value)
        .values(status=status.value, decided_at=utcnow(), decided_by_id=decider.id, decided_by=decider.username)
        .execution_options(synchronize_session="fetch")).rowcount
    if claimed != 1:
        raise ErasureError("status", f"Erasure request {found.id} was decided meanwhile.", 409)


def _subject_label(found: ErasureRequest) -> str:
    """The person, as the trail names them: by user id only, so the events about the erasure hold no name."""
    return f"user #{found.subject_user_id}" if found.subject_user_id is not None else "a former user (by username)"


def _record(actor: Admin, action: ActionType, found: ErasureRequest, description: str, metadata: dict) -> None:
    log_audit(actor.id, action, ResourceType.ERASURE_REQUEST, found.id, description,
              {"request_id": found.id, "subject_user_id": found.subject_user_id, **metadata},
              status=Status.SUCCESS, username=actor.username, transactional=True, via_outbox=False)
