"""Unbound extension instances; ``init_app`` binds those no feature owns (``database`` binds db and migrate,
``rest`` the API)."""

from flask import Flask
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from .envelope import ErrorEnvelopeSchema

#: Stable constraint names, so migrations name constraints the same on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()


class EnvelopeApi(Api):
    """flask-smorest, documenting errors with this app's envelope."""

    ERROR_SCHEMA = ErrorEnvelopeSchema


api = EnvelopeApi()
#: No default limits: only the routes that ask for one (the login form) are limited.
limiter = Limiter(key_func=lambda: "global", default_limits=[])


#: Seconds the rate limiter waits for Redis to connect or answer, unless RATELIMIT_STORAGE_OPTIONS (or the URL's
#: ``socket_timeout`` / ``socket_connect_timeout``) say otherwise: a Redis host that stops answering must cost a
#: login a moment, then the in-memory fallback, not hold the request until the worker is killed.
REDIS_TIMEOUT_S = 1


def init_app(app: Flask) -> None:
    """Bind CSRF protection, Flask-Login and the rate limiter."""
    csrf.init_app(app)
    login_manager.init_app(app)
    if app.config.get("RATELIMIT_STORAGE_URI", "").startswith(("redis://", "rediss://", "redis+unix://")):
        app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": REDIS_TIMEOUT_S,
                                                            "socket_timeout": REDIS_TIMEOUT_S})
    limiter.init_app(app)
