"""The integrity tables beside the chain: signed digests of it, the retention purges that cut events out of it,
legal holds that keep events from the purge, and requests to erase a person's personal data (four eyes).

Actors are kept by id (``SET NULL`` when the account goes) and by name (a snapshot), as in ``audit_logs``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ...extensions import db
from ...timeutil import UTCDateTime, utcnow
from ..record.enums import ChoiceEnum
from ..record.models import USERNAME_SNAPSHOT_MAX, JSONType

REASON_MAX = 500


class AuditDigest(db.Model):
    """One signed digest: links ``first_seq``..``last_seq`` of the chain, signed with Ed25519 by the sealer
    process (``integrity/digests.py``). ``body`` is the exact signed text (canonical JSON)."""

    __tablename__ = "audit_digests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    last_seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), unique=True)
    #: The public chain's hash at ``last_seq``.
    head: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: SHA-256 of the signing key's SubjectPublicKeyInfo (DER), hex.
    key_fingerprint: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    #: The Ed25519 signature of ``body``, base64.
    signature: Mapped[str] = mapped_column(String(128))


class AuditPurge(db.Model):
    """One retention purge: which events it removed (those of each category older than its cutoff, sealed at links
    up to ``head_seq``, outside the holds it names). Their links stay as tombstones; ``verify`` and the offline
    verifier accept a missing event only when a purge covers it."""

    __tablename__ = "audit_purges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: ``{category: cutoff (ISO 8601, UTC)}``: events of that category older than its cutoff were removed.
    cutoffs: Mapped[dict] = mapped_column(JSONType)
    #: ``[[from, to], ...]`` (ISO 8601, UTC): the holds in force; events inside them were kept.
    holds: Mapped[list] = mapped_column(JSONType)
    #: The chain's head when the purge ran: only events sealed at links up to it were removed.
    head_seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    count: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), default=0)
    #: HMAC (``AUDIT_HMAC_KEY``) of what the record says about tombstones (``tombstones.purge_mac``): a record added
    #: or edited by someone without the key does not count.
    mac: Mapped[str | None] = mapped_column(String(64), nullable=True)


class LegalHold(db.Model):
    """A time range whose events the retention purge must keep, until released."""

    __tablename__ = "audit_legal_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(String(REASON_MAX))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(USERNAME_SNAPSHOT_MAX), nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    released_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    released_by: Mapped[str | None] = mapped_column(String(USERNAME_SNAPSHOT_MAX), nullable=True)


class ErasureStatus(ChoiceEnum):
    PENDING = "pending"  #: waiting for a second admin
    REJECTED = "rejected"  #: a second admin said no; nothing was changed
    DONE = "done"  #: approved by a second admin and carried out


class ErasureRequest(db.Model):
    """A request to erase one person's personal data from the trail (by user id, or by username when the account
    is gone). A second admin approves (it is then carried out) or rejects it."""

    __tablename__ = "audit_erasure_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The person: a user id (no foreign key: the account may be deleted), and/or a username.
    subject_user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    subject_username: Mapped[str | None] = mapped_column(String(USERNAME_SNAPSHOT_MAX), nullable=True)
    reason: Mapped[str] = mapped_column(String(REASON_MAX))
    status: Mapped[str] = mapped_column(String(16), default=ErasureStatus.PENDING.value)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    requested_by: Mapped[str] = mapped_column(String(USERNAME_SNAPSHOT_MAX))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(USERNAME_SNAPSHOT_MAX), nullable=True)
    #: Filled in when carried out: events erased, and events left alone because a legal hold covers them.
    erased_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    held_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: The ids of the held events (the first 1,000), for the report.
    held_events: Mapped[list | None] = mapped_column(JSONType, nullable=True)


__all__ = ["AuditDigest", "AuditPurge", "ErasureRequest", "ErasureStatus", "LegalHold"]
