"""How Flask-Login finds the current user."""

from ..extensions import db, login_manager
from ..users.models import User

login_manager.login_view = "auth.login"
login_manager.login_message = "Please log in to see that page."
login_manager.login_message_category = "info"
login_manager.session_protection = "strong"


@login_manager.user_loader
def load_user(session_key: str) -> User | None:
    """Session key is ``<id>.<session_version>``; a bumped version (logout, password change) ends old sessions."""
    user_id, _, version = session_key.partition(".")
    if not user_id.isdigit() or not version.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    if user is None or user.session_version != int(version) or not user.can_log_in:
        return None
    return user
