"""The hash chain over the audit log, kept beside it: sealing never updates an audit row."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..timeutil import UTCDateTime, utcnow
from .models import IdType


class AuditChainLink(db.Model):
    """One link: HMAC(key, previous link's hash + the canonical form of one audit row)."""

    __tablename__ = "audit_chain"

    #: Position in the chain (1, 2, 3, ...): unique, so two sealers can never fork it.
    seq: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=False)
    #: The sealed audit row (no foreign key: the retention purge removes rows and their links together).
    audit_log_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), unique=True)
    #: The row's user id when it was sealed; deleting a user later sets the row's to NULL (ON DELETE SET NULL).
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    link_hash: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: The row committed after rows with higher ids had been sealed (a slow transaction); chained anyway.
    late: Mapped[bool] = mapped_column(Boolean, default=False)
