"""marshmallow schemas for the users API (shape only; the services own the rules)."""

from marshmallow import RAISE, Schema, fields, validate

from ..params import QueryArgsSchema
from .models import EMAIL_MAX, FULL_NAME_MAX, TIMEZONE_MAX, USERNAME_MAX, RoleName, UserStatus
from .rules import PASSWORD_MAX, USERNAME_RE

#: The rules the services enforce, documented (not enforced here: the services' messages are clearer).
USERNAME_DOC = {"pattern": USERNAME_RE.pattern,
                "description": "3 to 64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit. "
                               "Unique, case-insensitively."}
EMAIL_DOC = {"format": "email", "description": "Unique; stored in lower case."}
PASSWORD_DOC = {"description": "At least PASSWORD_MIN_LENGTH characters (10 by default) with at least 4 different "
                               "ones, not containing the username. Never returned."}
FULL_NAME_DOC = {"description": "Printable characters (no control characters)."}
TIMEZONE_DOC = {"description": "The zone the HTML pages show this user times in: UTC or an IANA name such as "
                               "Europe/Paris (any case; stored in its IANA spelling). The API and exports always "
                               "answer in UTC.", "example": "Europe/Paris"}

ROLES = [r.value for r in RoleName]
STATUSES = [s.value for s in UserStatus]


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class UserSchema(Schema):
    """A user as the API returns it (never the password hash)."""

    id = fields.Integer()
    username = fields.String()
    email = fields.String()
    full_name = fields.String()
    role = fields.String(attribute="role_name", metadata={"enum": ROLES})
    status = fields.String(metadata={"enum": STATUSES})
    is_active = fields.Boolean()
    timezone = fields.String(metadata=TIMEZONE_DOC)
    created_at = fields.DateTime(format="iso")
    updated_at = fields.DateTime(format="iso")
    last_login_at = fields.DateTime(format="iso", allow_none=True)


class UserCreateSchema(_Strict):
    username = fields.String(required=True, validate=validate.Length(min=1, max=USERNAME_MAX), metadata=USERNAME_DOC)
    email = fields.String(required=True, validate=validate.Length(min=1, max=EMAIL_MAX), metadata=EMAIL_DOC)
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=PASSWORD_MAX),
                             metadata=PASSWORD_DOC)
    full_name = fields.String(load_default="", validate=validate.Length(max=FULL_NAME_MAX), metadata=FULL_NAME_DOC)
    role = fields.String(load_default=RoleName.USER.value, metadata={"enum": ROLES})
    status = fields.String(load_default=UserStatus.ACTIVE.value, metadata={"enum": STATUSES})
    is_active = fields.Boolean(load_default=True)
    timezone = fields.String(load_default="UTC", validate=validate.Length(min=1, max=TIMEZONE_MAX), metadata=TIMEZONE_DOC)


class UserUpdateSchema(_Strict):
    username = fields.String(validate=validate.Length(min=1, max=USERNAME_MAX), metadata=USERNAME_DOC)
    email = fields.String(validate=validate.Length(min=1, max=EMAIL_MAX), metadata=EMAIL_DOC)
    full_name = fields.String(validate=validate.Length(max=FULL_NAME_MAX), metadata=FULL_NAME_DOC)
    role = fields.String(metadata={"enum": ROLES})
    timezone = fields.String(validate=validate.Length(min=1, max=TIMEZONE_MAX), metadata=TIMEZONE_DOC)


class StatusChangeSchema(_Strict):
    status = fields.String(required=True, metadata={"enum": STATUSES})


class PasswordResetSchema(_Strict):
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=PASSWORD_MAX),
                             metadata=PASSWORD_DOC)


class UserQueryArgsSchema(QueryArgsSchema):
    search = fields.String(load_default="", validate=validate.Length(max=100),
                           metadata={"description": "Substring of username, email or full name."})
    skip = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2**31))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class UserListSchema(Schema):
    items = fields.List(fields.Nested(UserSchema))
    total = fields.Integer()
    skip = fields.Integer()
    limit = fields.Integer()
