"""A saved view of the audit log."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ...extensions import db
from ...timeutil import UTCDateTime, utcnow
from ..record.enums import ChoiceEnum

NAME_MAX = 100
#: The pages a view opens (the audit blueprint's paths).
PAGE_PATHS = {"viewer": "/admin/audit-logs/", "errors": "/admin/audit-logs/errors"}


class ViewPage(ChoiceEnum):
    VIEWER = "viewer"  #: the audit log viewer
    ERRORS = "errors"  #: the error dashboard


class SavedView(db.Model):
    """A query and filters with a name: its owner's alone, or shared with every admin (changed by its owner)."""

    __tablename__ = "saved_views"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    q: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The list filters besides ``q`` (validated by the list API's schema).
    filters: Mapped[dict] = mapped_column(JSON, default=dict)
    page: Mapped[str] = mapped_column(String(16), default=ViewPage.VIEWER.value)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Opened when its owner visits its page without any filter (one per owner and page).
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    @property
    def url(self) -> str:
        """Its page with its query and filters."""
        return PAGE_PATHS[self.page] + "?" + urlencode({**(self.filters or {}), **({"q": self.q} if self.q else {})})
