"""Auth forms: shape only. Authentication itself is done by ``auth.services.authenticate``."""

from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length

from ..users.forms import timezone_field
from ..users.rules import PASSWORD_MAX


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=PASSWORD_MAX)])
    submit = SubmitField("Log in")


class PasswordChangeForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired(), Length(max=PASSWORD_MAX)])
    new_password = PasswordField("New password", validators=[DataRequired(), Length(max=PASSWORD_MAX)])
    confirm = PasswordField(
        "Repeat new password", validators=[DataRequired(), EqualTo("new_password", "Passwords do not match.")]
    )
    submit = SubmitField("Change password")


class PreferencesForm(FlaskForm):
    """A user's own display preferences."""

    timezone = timezone_field()
    submit = SubmitField("Save preferences")
