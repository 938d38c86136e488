"""The input and output of stream destinations: one set of rules for the API, the page and the CLI."""

from __future__ import annotations

import os
import re
import ssl

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates, validates_schema

from ..delivery.webhook import RESERVED_HEADERS, check_url, url_problem
from ..read.fields import CaseInsensitiveEnum
from ..read.schemas import AuditLogFilterSchema
from .models import NAME_MAX, PATH_MAX, URL_MAX, StreamFormat, StreamKind

NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")
HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")  # an HTTP token (RFC 9110)
STARTS = ("now", "beginning")


def syslog_url_problem(url: str) -> str | None:
    """Why ``url`` is not a syslog receiver (None: it is): ``tcp://host:port`` or ``tls://host:port``."""
    parts, problem = url_problem(url, ("tcp", "tls"))
    if problem and problem != "scheme":
        return problem
    if problem or parts.port is None or parts.path not in ("", "/") or parts.query:
        return "Must be tcp://host:port or tls://host:port."
    return None


def ca_file_problem(path: str) -> str | None:
    """Why ``path`` cannot verify a receiver's certificate (None: it can): an absolute path (every worker, whatever
    its directory, reads the same file) to a readable PEM bundle of CA certificates."""
    if not os.path.isabs(path):
        return "Must be an absolute path to a PEM file of CA certificates."
    try:
        ssl.create_default_context(cafile=path)
    except FileNotFoundError:
        return "No such file."
    except (OSError, ssl.SSLError, ValueError):
        return "Not a readable PEM file of CA certificates."
    return None


class _DestinationFields(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(validate=[validate.Length(min=1, max=NAME_MAX),
                                   validate.Regexp(NAME_RE, error="Letters, digits, '.', '_' and '-' only.")],
                         metadata={"example": "splunk"})
    url = fields.String(validate=validate.Length(min=1, max=URL_MAX),
                        metadata={"description": "syslog: tcp://host:port or tls://host:port; webhook: https://... "
                                                 "(plain http only to loopback).", "example": "https://siem.example.com/hook"})
    path = fields.String(validate=validate.Length(min=1, max=PATH_MAX),
                         metadata={"description": "file: a path relative to AUDIT_STREAM_FILE_DIR.", "example": "audit.ndjson"})
    format = CaseInsensitiveEnum(StreamFormat, metadata={"description": "json, ecs or cef."})
    filters = fields.Dict(keys=fields.String(), values=fields.String(),
                          metadata={"description": "The list API's filter parameters, e.g. {\"category\": \"security\"}."})
    headers = fields.Dict(keys=fields.String(), values=fields.String(validate=validate.Length(max=4000)),
                          metadata={"description": "webhook: extra headers (values are never shown again)."})
    ca_file = fields.String(validate=validate.Length(min=1, max=PATH_MAX),
                            metadata={"description": "tls:// syslog or https:// webhook: the CA bundle (PEM, an absolute "
                                                     "path) that signed the receiver's certificate; default: the "
                                                     "system's."})

    @validates("filters")
    def _filters(self, value, **kwargs):
        try:
            AuditLogFilterSchema().load(value)
        except ValidationError as exc:
            raise ValidationError({key: messages for key, messages in exc.messages.items()}) from None

    @validates("headers")
    def _headers(self, value, **kwargs):
        for name, item in value.items():
            if not HEADER_NAME_RE.match(name):
                raise ValidationError(f"{name[:40]!r} is not a valid header name.")
            if name.lower() in RESERVED_HEADERS:
                raise ValidationError(f"{name} is set by audit_portal itself.")
            if not all(32 <= ord(c) < 127 or c == "\t" for c in item):
                raise ValidationError(f"The value of {name} must be printable ASCII (no line breaks).")

    def check_target(self, kind: str, data: dict, stored_url: str | None = None) -> None:
        """The URL or path that ``kind`` needs, and nothing the other kinds take (``stored_url``: a change's
        destination's URL, when the change does not give one)."""
        if kind in (StreamKind.SYSLOG, StreamKind.WEBHOOK):
            if "path" in data:
                raise ValidationError(f"A {kind} destination has a url, not a path.", field_name="path")
            if "url" in data:
                problem = syslog_url_problem(data["url"]) if kind == StreamKind.SYSLOG else check_url(data["url"])
                if problem:
                    raise ValidationError(problem, field_name="url")
        elif "url" in data:
            raise ValidationError("A file destination has a path, not a url.", field_name="url")
        if data.get("headers") and kind != StreamKind.WEBHOOK:
            raise ValidationError("Only a webhook sends headers.", field_name="headers")
        url = data.get("url", stored_url) or ""
        if data.get("ca_file"):
            if not url.startswith(("tls://", "https://")):
                raise ValidationError("Only a tls:// syslog or an https:// webhook destination takes a CA file.",
                                      field_name="ca_file")
            problem = ca_file_problem(data["ca_file"])
            if problem:
                raise ValidationError(problem, field_name="ca_file")


class StreamCreateSchema(_DestinationFields):
    """A new destination."""

    name = fields.String(required=True, validate=_DestinationFields._declared_fields["name"].validators,
                         metadata={"example": "splunk"})
    kind = CaseInsensitiveEnum(StreamKind, required=True, metadata={"description": "syslog, webhook or file."})
    format = CaseInsensitiveEnum(StreamFormat, load_default=StreamFormat.JSON.value,
                                 metadata={"description": "json (default), ecs or cef."})
    start = fields.String(load_default="now", validate=validate.OneOf(STARTS),
                          metadata={"description": "now (default): events from now on; beginning: the stored trail first."})

    @validates_schema
    def _target(self, data, **kwargs):
        kind = data.get("kind")
        if kind is None:
            return
        needed = "path" if kind == StreamKind.FILE else "url"
        if needed not in data:
            raise ValidationError(f"A {kind} destination needs a {needed}.", field_name=needed)
        self.check_target(kind, data)


class StreamUpdateSchema(_DestinationFields):
    """Changes to a destination (its kind stays)."""


class StreamSchema(Schema):
    """A destination as the API shows it: header names only, never a secret."""

    id = fields.Integer(metadata={"example": 1})
    name = fields.String(metadata={"example": "splunk"})
    kind = fields.String(metadata={"example": "webhook"})
    url = fields.String(allow_none=True, metadata={"example": "https://siem.example.com/hook"})
    path = fields.String(allow_none=True, metadata={"example": None})
    format = fields.String(metadata={"example": "json"})
    filters = fields.Dict(metadata={"example": {"category": "security"}})
    headers = fields.Function(lambda d: sorted(d.headers or {}),
                              metadata={"example": ["Authorization"], "description": "Header names only."})
    state = fields.String(metadata={"description": "active, paused or failing.", "example": "active"})
    lag_events = fields.Integer(metadata={"description": "Sealed events not delivered yet.", "example": 0})
    lag_seconds = fields.Float(metadata={"description": "How old the oldest of them is.", "example": 0.0})
    last_delivery_at = fields.DateTime(format="iso", allow_none=True)
    last_error = fields.String(allow_none=True, metadata={"example": None})
    created_at = fields.DateTime(format="iso")


class StreamCreatedSchema(StreamSchema):
    secret = fields.String(allow_none=True, metadata={"description": "webhook: the signing secret, shown only now."})
