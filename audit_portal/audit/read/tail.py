"""The live tail's token: proof that a poll belongs to a tail its admin started.

Reading the audit log is itself audited (one REQUEST event per API read). A tail polls every couple of seconds,
and recording every poll would fill the tail with its own polls. So starting a tail is recorded as usual (a
list request with ``since_id`` and no token), and its answer carries a token, signed with SECRET_KEY, bound to
that admin and those filters and the ``since_id`` it started from, valid for AUDIT_TAIL_MAX_HOURS. Polls that carry it
and read from that id or later are not recorded one by one (a poll from an earlier id reads what the recorded
start did not: it is recorded as any read).
A script that polls with ``since_id`` alone is recorded at every request, as any other read.
"""

from __future__ import annotations

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from .query import AuditFilters, filters_hash


class BadTailToken(ValueError):
    """The token is malformed, forged, expired, or belongs to another admin or other filters."""


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="audit-live-tail")


def make_tail_token(user_id: int, filters: AuditFilters, since_id: int) -> str:
    """A token for the tail this admin starts with these filters from ``since_id`` (the recorded start)."""
    return _serializer().dumps([user_id, filters_hash(filters, "tail"), since_id])


def check_tail_token(token: str, user_id: int, filters: AuditFilters) -> int:
    """The ``since_id`` the tail started from (a poll below it reads what the start did not: it is recorded as
    any read). Raises ``BadTailToken`` unless ``token`` was made for this admin and these filters, recently
    enough."""
    max_age = int(current_app.config["AUDIT_TAIL_MAX_HOURS"] * 3600)
    try:
        owner, digest, floor = _serializer().loads(token, max_age=max_age)
    except SignatureExpired:
        raise BadTailToken("This live tail has expired: start it again (send since_id without tail).") from None
    except (BadSignature, ValueError, TypeError):
        raise BadTailToken("Not a valid tail token: use the tail_token of the tail's first answer, unchanged.") from None
    if owner != user_id or digest != filters_hash(filters, "tail"):
        raise BadTailToken("This tail token was made for another admin or other filters: start the tail again.")
    return int(floor)
