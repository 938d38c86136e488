"""Access checks for HTML views (the JSON API's live in ``rest.py``)."""

import functools

from flask import abort
from flask_login import current_user

from .extensions import login_manager


def admin_required(view):
    """Anonymous users go to the login page; logged-in non-admins get 403 (which is audited)."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        if not current_user.is_admin:
            abort(403, description="This page is for administrators only.")
        return view(*args, **kwargs)

    return wrapper
