"""User management forms: shape only; the services own the rules."""

from functools import lru_cache

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length

from ..timeutil import known_timezones
from .models import EMAIL_MAX, FULL_NAME_MAX, TIMEZONE_MAX, TOKEN_NAME_MAX, USERNAME_MAX, RoleName, UserStatus
from .rules import PASSWORD_MAX

ROLE_CHOICES = [SelectChoice(r.value, r.value.capitalize()) for r in RoleName]
STATUS_CHOICES = [SelectChoice(s.value, s.value.capitalize()) for s in UserStatus]


@lru_cache(maxsize=1)
def timezone_choices() -> list[SelectChoice]:
    """UTC first, then every IANA name in order."""
    return [SelectChoice("UTC", "UTC")] + [SelectChoice(name, name) for name in known_timezones().values() if name != "UTC"]


def timezone_field() -> SelectField:
    """A select of every zone. Any submitted name reaches the service, which accepts every IANA name (in any
    case) and refuses others with a message naming the field."""
    return SelectField("Time zone", choices=timezone_choices, validate_choice=False, default="UTC",
                       validators=[Length(max=TIMEZONE_MAX)],
                       description="Pages show times in this zone; the API and exports stay in UTC.")


class UserCreateForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=USERNAME_MAX)])
    email = EmailField("Email", validators=[DataRequired(), Length(max=EMAIL_MAX)])
    full_name = StringField("Full name", validators=[Length(max=FULL_NAME_MAX)])
    role = SelectField("Role", choices=ROLE_CHOICES, default=RoleName.USER.value)
    status = SelectField("Status", choices=STATUS_CHOICES, default=UserStatus.ACTIVE.value)
    is_active = BooleanField("Active (can log in)", default=True)
    timezone = timezone_field()
    password = PasswordField("Password", validators=[DataRequired(), Length(max=PASSWORD_MAX)])
    confirm = PasswordField("Repeat password", validators=[DataRequired(), EqualTo("password", "Passwords do not match.")])
    submit = SubmitField("Create user")


class UserEditForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=USERNAME_MAX)])
    email = EmailField("Email", validators=[DataRequired(), Length(max=EMAIL_MAX)])
    full_name = StringField("Full name", validators=[Length(max=FULL_NAME_MAX)])
    role = SelectField("Role", choices=ROLE_CHOICES)
    timezone = timezone_field()
    submit = SubmitField("Save changes")


class StatusForm(FlaskForm):
    status = SelectField("Status", choices=STATUS_CHOICES)
    submit = SubmitField("Change status")


class ResetPasswordForm(FlaskForm):
    password = PasswordField("New password", validators=[DataRequired(), Length(max=PASSWORD_MAX)])
    confirm = PasswordField("Repeat new password", validators=[DataRequired(), EqualTo("password", "Passwords do not match.")])
    submit = SubmitField("Reset password")


class ConfirmForm(FlaskForm):
    """A bare form: CSRF protection for one-button actions (activate, deactivate, delete)."""

    submit = SubmitField("Confirm")


class TokenCreateForm(FlaskForm):
    name = StringField("Token name", validators=[Length(max=TOKEN_NAME_MAX)])
    submit = SubmitField("Create token")
