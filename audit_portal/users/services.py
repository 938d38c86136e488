"""User operations: each enforces the rules, records its audit event in the same transaction, and
flushes. The caller (a view, an API resource or a command) commits."""

from __future__ import annotations

from sqlalchemy import false, func, select
from sqlalchemy.exc import IntegrityError

from ..audit import ActionType, ResourceType, Status, log_audit, log_user_action
from ..database import escape_like
from ..extensions import db
from .models import Role, RoleName, User, UserStatus
from .passwords import hash_password
from .rules import (
    NotFound,
    ServiceError,
    check_email,
    check_full_name,
    check_password_strength,
    check_timezone,
    check_username,
    parse_status,
)


def find_user_by_username(username: str) -> User | None:
    if "\x00" in username:  # no username contains NUL, and PostgreSQL refuses it in a query
        return None
    return db.session.scalar(select(User).where(func.lower(User.username) == username.strip().lower()))


def get_role(name: str) -> Role:
    name_ = str(name).strip().lower()
    # Only a known name is looked up: anything else could only miss, and one with a NUL would make
    # PostgreSQL fail the query.
    role = db.session.scalar(select(Role).where(Role.name == name_)) if name_ in {r.value for r in RoleName} else None
    if role is None:
        allowed = ", ".join(r.value for r in RoleName)
        raise ServiceError("role", f"Unknown role {name!r}; allowed: {allowed}.")
    return role


def ensure_default_roles() -> None:
    """Create the built-in roles if they are missing (the initial migration creates them too)."""
    existing = set(db.session.scalars(select(Role.name)))
    for role in RoleName:
        if role.value not in existing:
            db.session.add(Role(name=role.value, description=f"Built-in {role.value} role"))
    db.session.flush()


def _check_unique(username: str, email: str, exclude_id: int | None = None) -> None:
    query = select(User.id).where(func.lower(User.username) == username.lower())
    if exclude_id is not None:
        query = query.where(User.id != exclude_id)
    if db.session.scalar(query) is not None:
        raise ServiceError("username", f"The username {username!r} is already taken.")
    query = select(User.id).where(User.email == email)
    if exclude_id is not None:
        query = query.where(User.id != exclude_id)
    if db.session.scalar(query) is not None:
        raise ServiceError("email", f"The email {email!r} is already in use.")


def _active_admin_count() -> int:
    return db.session.scalar(
        select(func.count(User.id)).join(Role).where(
            Role.name == RoleName.ADMIN.value, User.is_active.is_(True), User.status == UserStatus.ACTIVE.value
        )
    )


def _would_remove_last_admin(user: User) -> bool:
    return user.is_admin and user.can_log_in and _active_admin_count() <= 1


# -- queries ---------------------------------------------------------------------------------


def get_user(user_id: int) -> User:
    # users.id is a 32-bit integer; a larger id cannot exist, and SQLite cannot even bind one past 2**63.
    user = db.session.get(User, user_id) if 0 < user_id < 2**31 else None
    if user is None:
        raise NotFound(f"No user with id {user_id}.")
    return user


def _user_query(search: str = ""):
    query = select(User).order_by(User.username)
    if "\x00" in search:  # no stored value can contain NUL, and PostgreSQL refuses it in a query
        return query.where(false())
    if search:
        pattern = "%" + escape_like(search.lower()) + "%"
        query = query.where(
            func.lower(User.username).like(pattern, escape="\\")
            | func.lower(User.email).like(pattern, escape="\\")
            | func.lower(User.full_name).like(pattern, escape="\\")
        )
    return query


def list_users(search: str = "", page: int = 1, per_page: int = 25):
    """A page of users (Flask-SQLAlchemy pagination), for the HTML list."""
    return db.paginate(_user_query(search), page=page, per_page=per_page, error_out=False)


def slice_users(search: str = "", skip: int = 0, limit: int = 50) -> tuple[list[User], int]:
    """(users, total) by offset, for the API."""
    query = _user_query(search)
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    return list(db.session.scalars(query.offset(skip).limit(limit))), total


# -- operations ------------------------------------------------------------------------------


def create_user(actor: User | None, *, username: str, email: str, password: str, full_name: str = "",
                role: str = RoleName.USER.value, status: str = UserStatus.ACTIVE.value,
                is_active: bool = True, timezone: str = "UTC") -> User:
    """Create a user; records CREATE (without any password material)."""
    username, email, full_name = check_username(username), check_email(email), check_full_name(full_name)
    timezone = check_timezone(timezone)
    role_obj, status_obj = get_role(role), parse_status(status)
    check_password_strength(password, username)
    _check_unique(username, email)
    user = User(username=username, email=email, full_name=full_name, role=role_obj, status=status_obj.value,
                is_active=is_active, timezone=timezone, password_hash=hash_password(password))
    db.session.add(user)
    db.session.flush()
    who = actor.username if actor else "the command line"
    log_user_action(actor, ActionType.CREATE, user, f"{who} created user {username} ({role_obj.name})",
                    {"new": {"username": username, "email": email, "full_name": full_name,
                             "role": role_obj.name, "status": status_obj.value, "is_active": is_active,
                             "timezone": timezone}},
                    transactional=True)
    db.session.flush()
    return user


def update_user(actor: User, user: User, *, username: str | None = None, email: str | None = None,
                full_name: str | None = None, role: str | None = None, timezone: str | None = None) -> User:
    """Change profile fields (the time zone too: users change their own) and/or the role; records UPDATE (old
    and new values) and ROLE_CHANGE."""
    new_username = check_username(username) if username is not None else user.username
    new_email = check_email(email) if email is not None else user.email
    new_full_name = check_full_name(full_name) if full_name is not None else user.full_name
    new_timezone = check_timezone(timezone) if timezone is not None else user.timezone
    _check_unique(new_username, new_email, exclude_id=user.id)
    old, new = {}, {}
    for field, value in (("username", new_username), ("email", new_email), ("full_name", new_full_name),
                         ("timezone", new_timezone)):
        if getattr(user, field) != value:
            old[field], new[field] = getattr(user, field), value
            setattr(user, field, value)
    if old:
        log_user_action(actor, ActionType.UPDATE, user,
                        f"{actor.username} updated user {user.username}: {', '.join(sorted(new))}",
                        {"old": old, "new": new}, transactional=True)
    if role is not None:
        change_role(actor, user, role)
    db.session.flush()
    return user


def change_role(actor: User, user: User, role: str) -> User:
    new_role = get_role(role)
    if new_role.id == user.role_id:
        return user
    if new_role.name != RoleName.ADMIN.value and _would_remove_last_admin(user):
        raise ServiceError("role", "This is the last active administrator; make someone else an admin first.")
    old_name = user.role.name
    user.role = new_role
    log_user_action(actor, ActionType.ROLE_CHANGE, user,
                    f"{actor.username} changed the role of {user.username} from {old_name} to {new_role.name}",
                    {"old": {"role": old_name}, "new": {"role": new_role.name}}, transactional=True,
                    is_sensitive=True)
    db.session.flush()
    return user


def change_status(actor: User, user: User, status: str) -> User:
    """Set the account status (active, pending, suspended); records STATUS_CHANGE with old and new."""
    new_status = parse_status(status)
    if new_status.value == user.status:
        return user
    if new_status is not UserStatus.ACTIVE:
        if user.id == actor.id:
            raise ServiceError("status", "You cannot suspend or park your own account.")
        if _would_remove_last_admin(user):
            raise ServiceError("status", "This is the last active administrator; its status must stay active.")
    old_status = user.status
    user.status = new_status.value
    log_user_action(actor, ActionType.STATUS_CHANGE, user,
                    f"{actor.username} changed the status of {user.username} from {old_status} to {new_status.value}",
                    {"old": {"status": old_status}, "new": {"status": new_status.value}}, transactional=True)
    db.session.flush()
    return user


def set_active(actor: User, user: User, active: bool) -> User:
    """Activate or deactivate an account; records ACTIVATE or DEACTIVATE."""
    if user.is_active == active:
        return user
    if not active:
        if user.id == actor.id:
            raise ServiceError("is_active", "You cannot deactivate your own account.")
        if _would_remove_last_admin(user):
            raise ServiceError("is_active", "This is the last active administrator; it cannot be deactivated.")
    user.is_active = active
    action = ActionType.ACTIVATE if active else ActionType.DEACTIVATE
    verb = "activated" if active else "deactivated"
    log_user_action(actor, action, user, f"{actor.username} {verb} user {user.username}",
                    {"old": {"is_active": not active}, "new": {"is_active": active}}, transactional=True)
    db.session.flush()
    return user


def reset_password(actor: User, user: User, new_password: str) -> User:
    """An admin sets another user's password; that user's sessions end. Recorded as sensitive."""
    check_password_strength(new_password, user.username)
    user.password_hash = hash_password(new_password)
    user.session_version += 1
    log_user_action(actor, ActionType.PASSWORD_CHANGE, user,
                    f"{actor.username} reset the password of {user.username}",
                    {"reset_by_admin": True}, transactional=True, is_sensitive=True)
    db.session.flush()
    return user


def delete_user(actor: User, user: User) -> None:
    """Delete a user. Their audit events stay (user_id becomes NULL; the username snapshot remains)."""
    if user.id == actor.id:
        raise ServiceError("user", "You cannot delete your own account.")
    if _would_remove_last_admin(user):
        raise ServiceError("user", "This is the last active administrator; it cannot be deleted.")
    snapshot = {"username": user.username, "email": user.email, "role": user.role.name, "status": user.status}
    log_user_action(actor, ActionType.DELETE, user, f"{actor.username} deleted user {user.username}",
                    {"old": snapshot}, transactional=True)
    db.session.delete(user)
    db.session.flush()


def record_refusal(actor: User | None, action_type: ActionType, target_id: int | None, exc: ServiceError) -> None:
    """A refused attempt (a broken rule): recorded on its own, since the change itself rolled back."""
    who = actor.username if actor else "the command line"
    what = action_type.value.lower().replace("_", " ")
    log_audit(actor.id if actor else None, action_type, ResourceType.USER, target_id,
              f"{who} was refused {what} of user {target_id if target_id is not None else '(new)'}: {exc.message}",
              {"field": exc.field, "reason": exc.message}, status=Status.FAILURE,
              username=actor.username if actor else None)


def run_operation(actor: User | None, action_type: ActionType, target_id: int | None, operation):
    """Run a user operation; commit it, or roll back, record the refusal and re-raise ``ServiceError``.

    A unique-constraint race (two admins creating the same username at once) is reported like the
    check that lost it."""
    try:
        result = operation()
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        exc = ServiceError("username", "That username or email was just taken by another change; choose another.")
        record_refusal(actor, action_type, target_id, exc)
        raise exc from None
    except ServiceError as exc:
        db.session.rollback()
        record_refusal(actor, action_type, target_id, exc)
        raise
    return result
