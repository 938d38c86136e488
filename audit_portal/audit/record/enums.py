"""The audit vocabulary: actions, resources, outcomes, severities and categories.

Values are stored as strings, so adding a member needs no database type change.
"""

from __future__ import annotations

import enum


class ChoiceEnum(enum.StrEnum):
    """A string enum that parses case-insensitively and lists its values (every enum of the audit package)."""

    @classmethod
    def values(cls) -> list[str]:
        return [member.value for member in cls]

    @classmethod
    def parse(cls, value: str):
        """Look ``value`` up case-insensitively; raise ``ValueError`` naming the allowed values."""
        if isinstance(value, cls):
            return value
        text = str(value).strip()
        for candidate in (text, text.upper(), text.lower()):
            try:
                return cls(candidate)
            except ValueError:
                continue
        raise ValueError(f"must be one of: {', '.join(cls.values())}")

    def __str__(self) -> str:
        return self.value


class ActionType(ChoiceEnum):
    """What happened."""

    LOGIN = "LOGIN"  #: a user logged in
    LOGOUT = "LOGOUT"  #: a user logged out
    LOGIN_FAILED = "LOGIN_FAILED"  #: a login attempt failed (wrong password, unknown or inactive user)
    LOGIN_THROTTLED = "LOGIN_THROTTLED"  #: a login attempt was refused by the rate limiter
    CREATE = "CREATE"  #: an object was created
    READ = "READ"  #: an object was read (recorded for sensitive reads such as the audit log)
    UPDATE = "UPDATE"  #: an object's fields changed; metadata holds ``old`` and ``new``
    DELETE = "DELETE"  #: an object was deleted
    STATUS_CHANGE = "STATUS_CHANGE"  #: a user's status changed; metadata holds ``old`` and ``new``
    ROLE_CHANGE = "ROLE_CHANGE"  #: a user's role changed; metadata holds ``old`` and ``new``
    ACTIVATE = "ACTIVATE"  #: an account was activated
    DEACTIVATE = "DEACTIVATE"  #: an account was deactivated
    PASSWORD_CHANGE = "PASSWORD_CHANGE"  #: a password was changed or reset (never with password material)
    PERMISSION_DENIED = "PERMISSION_DENIED"  #: an authenticated user was refused (403)
    TOKEN_CREATE = "TOKEN_CREATE"  #: an API token was created
    TOKEN_REVOKE = "TOKEN_REVOKE"  #: an API token was revoked
    TOKEN_AUTH_FAILED = "TOKEN_AUTH_FAILED"  #: a request presented a bad or revoked API token
    EXPORT = "EXPORT"  #: audit events were exported
    REQUEST = "REQUEST"  #: a significant HTTP request (recorded by the request hooks)
    ERROR_OCCURRED = "ERROR_OCCURRED"  #: an error was recorded by application code
    EXCEPTION_RAISED = "EXCEPTION_RAISED"  #: an unhandled exception reached the global handler
    RETENTION_PURGE = "RETENTION_PURGE"  #: old events were purged by the retention command
    CHAIN_CHECKPOINT = "CHAIN_CHECKPOINT"  #: the hash chain's head was recorded (detects truncation and rewrites)
    AUDIT_VERIFY = "AUDIT_VERIFY"  #: the hash chain was verified; metadata holds the result
    AUDIT_FAILURE = "AUDIT_FAILURE"  #: building an audit event failed; this minimal event stands in for it
    STREAM_CREATE = "STREAM_CREATE"  #: a stream destination was added (secrets and header values redacted)
    STREAM_UPDATE = "STREAM_UPDATE"  #: a stream destination was changed, paused, resumed or given a new secret
    STREAM_DELETE = "STREAM_DELETE"  #: a stream destination was removed
    ALERT_TRIGGERED = "ALERT_TRIGGERED"  #: a detection rule opened an alert
    ALERT_ACKNOWLEDGED = "ALERT_ACKNOWLEDGED"  #: an admin acknowledged an alert
    ALERT_RESOLVED = "ALERT_RESOLVED"  #: an alert was resolved, by an admin or after a quiet period
    ALERT_RULE_CREATE = "ALERT_RULE_CREATE"  #: a detection rule was added
    ALERT_RULE_UPDATE = "ALERT_RULE_UPDATE"  #: a detection rule was changed, enabled or disabled
    ALERT_RULE_DELETE = "ALERT_RULE_DELETE"  #: a custom detection rule was removed
    DIGEST_SIGNED = "DIGEST_SIGNED"  #: the sealer process signed a digest of the chain (``integrity/digests.py``)
    HOLD_CREATE = "HOLD_CREATE"  #: a legal hold was placed on a time range (the purge keeps its events)
    HOLD_RELEASE = "HOLD_RELEASE"  #: a legal hold was released
    ERASURE_REQUEST = "ERASURE_REQUEST"  #: an admin asked to erase a person's personal data from the trail
    ERASURE_REJECT = "ERASURE_REJECT"  #: a second admin rejected an erasure request
    ERASURE = "ERASURE"  #: a second admin approved an erasure request and it was carried out


class ResourceType(ChoiceEnum):
    """What the action was done to."""

    USER = "USER"
    ROLE = "ROLE"
    SESSION = "SESSION"
    API_TOKEN = "API_TOKEN"
    DATA_UPLOAD = "DATA_UPLOAD"
    SETTING = "SETTING"
    AUDIT_LOG = "AUDIT_LOG"
    REQUEST = "REQUEST"
    SYSTEM = "SYSTEM"
    STREAM = "STREAM"  #: a destination the audit trail is streamed to
    ALERT = "ALERT"  #: an alert opened by a detection rule
    ALERT_RULE = "ALERT_RULE"  #: a detection rule
    LEGAL_HOLD = "LEGAL_HOLD"  #: a time range the retention purge must keep
    ERASURE_REQUEST = "ERASURE_REQUEST"  #: a request to erase a person's personal data (four eyes)


class Status(ChoiceEnum):
    """The outcome."""

    SUCCESS = "SUCCESS"  #: it worked
    FAILURE = "FAILURE"  #: it was refused (bad input, wrong password, permission denied)
    ERROR = "ERROR"  #: it broke (an exception)


class ErrorSeverity(ChoiceEnum):
    """How bad an error is."""

    WARNING = "WARNING"  #: validation errors: the client sent something wrong
    ERROR = "ERROR"  #: a bug: any other exception
    CRITICAL = "CRITICAL"  #: the process itself is in trouble: SystemError, MemoryError


class Category(ChoiceEnum):
    """A coarse grouping of actions for filtering and display, derived from action and resource."""

    AUTHENTICATION = "authentication"
    USER_MANAGEMENT = "user_management"
    SECURITY = "security"
    DATA = "data"
    ERRORS = "errors"
    REQUESTS = "requests"
    AUDIT = "audit"
    SYSTEM = "system"


_ACTION_CATEGORY = {
    ActionType.LOGIN: Category.AUTHENTICATION,
    ActionType.LOGOUT: Category.AUTHENTICATION,
    ActionType.LOGIN_FAILED: Category.AUTHENTICATION,
    ActionType.LOGIN_THROTTLED: Category.SECURITY,
    ActionType.PASSWORD_CHANGE: Category.SECURITY,
    ActionType.PERMISSION_DENIED: Category.SECURITY,
    ActionType.TOKEN_CREATE: Category.SECURITY,
    ActionType.TOKEN_REVOKE: Category.SECURITY,
    ActionType.TOKEN_AUTH_FAILED: Category.SECURITY,
    ActionType.ERROR_OCCURRED: Category.ERRORS,
    ActionType.EXCEPTION_RAISED: Category.ERRORS,
    ActionType.REQUEST: Category.REQUESTS,
    ActionType.EXPORT: Category.AUDIT,
    ActionType.RETENTION_PURGE: Category.AUDIT,
    ActionType.CHAIN_CHECKPOINT: Category.AUDIT,
    ActionType.AUDIT_VERIFY: Category.AUDIT,
    ActionType.AUDIT_FAILURE: Category.AUDIT,
    ActionType.STREAM_CREATE: Category.AUDIT,
    ActionType.STREAM_UPDATE: Category.AUDIT,
    ActionType.STREAM_DELETE: Category.AUDIT,
    **dict.fromkeys((ActionType.DIGEST_SIGNED, ActionType.HOLD_CREATE, ActionType.HOLD_RELEASE,
                     ActionType.ERASURE_REQUEST, ActionType.ERASURE_REJECT, ActionType.ERASURE), Category.AUDIT),
    **dict.fromkeys((ActionType.ALERT_TRIGGERED, ActionType.ALERT_ACKNOWLEDGED, ActionType.ALERT_RESOLVED,
                     ActionType.ALERT_RULE_CREATE, ActionType.ALERT_RULE_UPDATE, ActionType.ALERT_RULE_DELETE),
                    Category.SECURITY),
}
_RESOURCE_CATEGORY = {
    ResourceType.USER: Category.USER_MANAGEMENT,
    ResourceType.ROLE: Category.USER_MANAGEMENT,
    ResourceType.SESSION: Category.AUTHENTICATION,
    ResourceType.API_TOKEN: Category.SECURITY,
    ResourceType.DATA_UPLOAD: Category.DATA,
    ResourceType.SETTING: Category.DATA,
    ResourceType.AUDIT_LOG: Category.AUDIT,
    ResourceType.REQUEST: Category.REQUESTS,
    ResourceType.SYSTEM: Category.SYSTEM,
    ResourceType.STREAM: Category.AUDIT,
    ResourceType.ALERT: Category.SECURITY,
    ResourceType.ALERT_RULE: Category.SECURITY,
    ResourceType.LEGAL_HOLD: Category.AUDIT,
    ResourceType.ERASURE_REQUEST: Category.AUDIT,
}


def category_for(action_type: ActionType | str, resource_type: ResourceType | str) -> Category:
    """The category of an event: the action decides when it is specific, otherwise the resource."""
    action = ActionType(action_type)
    if action in _ACTION_CATEGORY:
        return _ACTION_CATEGORY[action]
    return _RESOURCE_CATEGORY.get(ResourceType(resource_type), Category.SYSTEM)


class ExportFormat(ChoiceEnum):
    """File formats of an export."""

    CSV = "csv"  #: one header row, then one row per event
    JSON = "json"  #: one JSON array of items
    NDJSON = "ndjson"  #: one JSON item per line
