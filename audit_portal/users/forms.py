"""User management forms: shape only; the services own the rules."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length

from .models import EMAIL_MAX, FULL_NAME_MAX, TOKEN_NAME_MAX, USERNAME_MAX, RoleName, UserStatus
from .rules import PASSWORD_MAX

ROLE_CHOICES = [SelectChoice(r.value, r.value.capitalize()) for r in RoleName]
STATUS_CHOICES = [SelectChoice(s.value, s.value.capitalize()) for s in UserStatus]


class UserCreateForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=USERNAME_MAX)])
    email = EmailField("Email", validators=[DataRequired(), Length(max=EMAIL_MAX)])
    full_name = StringField("Full name", validators=[Length(max=FULL_NAME_MAX)])
    role = SelectField("Role", choices=ROLE_CHOICES, default=RoleName.USER.value)
    status = SelectField("Status", choices=STATUS_CHOICES, default=UserStatus.ACTIVE.value)
    is_active = BooleanField("Active (can log in)", default=True)
    password = PasswordField("Password", validators=[DataRequired(), Length(max=PASSWORD_MAX)])
    confirm = PasswordField("Repeat password", validators=[DataRequired(), EqualTo("password", "Passwords do not match.")])
    submit = SubmitField("Create user")


class UserEditForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=USERNAME_MAX)])
    email = EmailField("Email", validators=[DataRequired(), Length(max=EMAIL_MAX)])
    full_name = StringField("Full name", validators=[Length(max=FULL_NAME_MAX)])
    role = SelectField("Role", choices=ROLE_CHOICES)
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
