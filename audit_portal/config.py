"""Configuration: a base class per ``APP_ENV``, every setting overridable by an environment variable."""

from __future__ import annotations

import os

import click

#: The repository's root: templates/, static/ and migrations/ live there.
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ConfigError(RuntimeError):
    """Raised when the configuration cannot start the application safely."""


class BaseConfig:
    """Defaults for a local run over plain HTTP."""

    APP_ENV = "development"
    SECRET_KEY = "dev-insecure-secret-key-change-me"
    #: Empty means a SQLite file in the instance folder.
    DATABASE_URL = ""
    #: A streaming replica of DATABASE_URL (PostgreSQL) for the viewer, the list API, the error dashboard and the
    #: exports (docs/scaling.md); empty: every read goes to DATABASE_URL.
    DATABASE_REPLICA_URL = ""
    #: A replica lagging more than this many seconds is skipped (the primary serves its reads); each process checks
    #: the lag again after REPLICA_CHECK_SECONDS.
    REPLICA_MAX_LAG_SECONDS = 10.0
    REPLICA_CHECK_SECONDS = 1.0
    SQLALCHEMY_TRACK_MODIFICATIONS = False

    SESSION_COOKIE_SECURE = False
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    WTF_CSRF_TIME_LIMIT = None

    #: argon2id parameters; OWASP's recommendation is m=19 MiB, t=2, p=1.
    PASSWORD_HASH_MEMORY_KIB = 19456
    PASSWORD_HASH_TIME_COST = 2
    PASSWORD_HASH_PARALLELISM = 1
    PASSWORD_MIN_LENGTH = 10

    TRUSTED_PROXY_COUNT = 0  #: reverse proxies in front of the app whose X-Forwarded-For entries are trusted
    #: Keep an incoming X-Request-ID as the request id (only when the proxy in front always sets it).
    AUDIT_TRUST_REQUEST_ID = False
    RATELIMIT_ENABLED = True
    #: Where the login limits count: memory:// counts per process; with several workers or servers, a shared store
    #: (redis://host:6379/0) so that every one of them sees the same counts (docs/scaling.md).
    RATELIMIT_STORAGE_URI = "memory://"
    #: Put before every key in that store: several apps (or test runs) can then share one Redis database.
    RATELIMIT_KEY_PREFIX = ""
    #: When the shared store does not answer, each process counts in memory until it answers again (the limits then
    #: hold per process), and an error of the store is logged, never a failed login (docs/security.md).
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    RATELIMIT_SWALLOW_ERRORS = True
    RATELIMIT_HEADERS_ENABLED = True
    #: Failed logins allowed per username and per client IP (Flask-Limiter syntax; ';' separates limits).
    LOGIN_LIMIT_PER_USERNAME = "5 per minute;30 per hour"
    LOGIN_LIMIT_PER_IP = "20 per minute;200 per hour"

    AUDIT_ENABLED = True
    AUDIT_HMAC_KEY = "dev-insecure-audit-hmac-key-change-me-000"
    AUDIT_EXPORT_MAX_ROWS = 1_000_000
    #: Lists count matching events exactly up to this many; past it they report "N+" (a lower bound).
    AUDIT_COUNT_LIMIT = 10_000
    #: The same bound for lists filtered by ``search``: a text match has no ordered index, so counting N
    #: matches reads about N / (share of matching events) rows, whatever the log's size (docs/scaling.md).
    AUDIT_SEARCH_COUNT_LIMIT = 1_000
    #: The histogram counts every matching event up to EXACT_LIMIT; past it each bar reads at most SAMPLE events and
    #: is estimated from them (``read/histogram.py``; a larger sample costs more and errs less, docs/scaling.md).
    AUDIT_HISTOGRAM_EXACT_LIMIT = 10_000
    AUDIT_HISTOGRAM_SAMPLE = 50
    #: How long a live tail's polls go unrecorded before it must be started (and recorded) again.
    AUDIT_TAIL_MAX_HOURS = 12
    AUDIT_RETENTION_DAYS = 365
    #: Retention per category (``requests=90,authentication=365,security=2555``; categories as in the viewer's
    #: filter); the others keep AUDIT_RETENTION_DAYS. ``flask audit purge --yes`` applies them (docs/compliance.md).
    AUDIT_RETENTION_DAYS_BY_CATEGORY = ""
    #: Where the event spool lives (empty: the instance folder); its largest size is AUDIT_SPOOL_MAX_BYTES, past
    #: which new events are refused with a warning.
    AUDIT_DATA_DIR = ""
    #: Request events: which requests are significant enough to record.
    AUDIT_REQUEST_METHODS = "POST,PUT,PATCH,DELETE"
    AUDIT_REQUEST_INCLUDE_PREFIXES = "/auth/,/admin/,/api/v1/audit-logs"
    AUDIT_REQUEST_EXCLUDE_PREFIXES = "/healthz,/metrics,/static/,/api/docs,/api/openapi.json,/favicon.ico"
    #: Seconds between background runs of the hash-chain sealer (0 turns it off; `flask audit verify` seals too).
    AUDIT_SEAL_INTERVAL = 5
    #: Signed digests (docs/compliance.md, "Signed digests"). The private key's file: for the sealer process
    #: (``flask audit sealer``) alone; the web app refuses to start when it is set. Empty: no digests are signed.
    AUDIT_SIGNING_KEY_FILE = ""
    #: During a key rotation, the sealer's next key: the next digest names it, and it signs the digests after that.
    AUDIT_NEXT_SIGNING_KEY_FILE = ""
    #: The public key(s) (PEM, one after another after a rotation): for `flask audit verify`, the API and the pages.
    AUDIT_PUBLIC_KEY_FILE = ""
    #: Where the sealer writes each digest as a JSON file for shipping; empty: AUDIT_DATA_DIR/digests.
    AUDIT_DIGEST_DIR = ""
    #: A digest is signed when this many links wait for one, or when this many seconds passed since the last.
    AUDIT_DIGEST_EVERY_EVENTS = 1000
    AUDIT_DIGEST_EVERY_SECONDS = 3600
    #: Seconds the sealer process sleeps between its rounds (seal, then sign what is due).
    AUDIT_SEALER_INTERVAL = 5.0
    #: PostgreSQL (docs/scaling.md): months ahead whose partitions exist, made by the background maintenance every
    #: AUDIT_PARTITION_CHECK_SECONDS (0: never; it runs without the sealer too) and by ``flask audit partitions``.
    #: A month an event needs is also made on demand, which can make two requests wait: keep the maintenance on.
    AUDIT_PARTITIONS_AHEAD = 3
    AUDIT_PARTITION_CHECK_SECONDS = 3600
    #: Milliseconds a partition's creation or drop waits for a lock per attempt (it retries): requests never wait longer.
    AUDIT_PARTITION_LOCK_TIMEOUT_MS = 200

    #: Stream destinations (docs/streams.md). Each app process runs a dispatcher thread unless this is false
    #: (then run `flask streams run` as its own process; both together are safe).
    STREAM_DISPATCH_IN_APP = True
    #: Where file destinations write (their paths are relative to it); empty: AUDIT_DATA_DIR/streams.
    AUDIT_STREAM_FILE_DIR = ""
    #: Links per batch a destination is sent.
    STREAM_BATCH_SIZE = 1000
    #: Syslog has no acknowledgement: after a connection error, events sent this many seconds back go again.
    STREAM_RESEND_SECONDS = 5
    #: The longest wait between attempts at a failing destination (the backoff doubles up to it).
    STREAM_MAX_BACKOFF_SECONDS = 300
    #: A syslog message longer than this is cut, with a marker saying so.
    STREAM_SYSLOG_MAX_BYTES = 65_536
    #: A file destination's file is rotated (to .1, .2, ... .5) when it would pass this size.
    STREAM_FILE_ROTATE_BYTES = 100 * 1024 * 1024
    #: Seconds a dispatcher waits when every destination is caught up.
    STREAM_POLL_SECONDS = 1.0
    #: Alerts (docs/alerts.md). Each app process runs an evaluator thread unless ALERT_EVAL_IN_APP is false (then
    #: run `flask alerts run`); one evaluates at a time, whichever holds the lock.
    ALERT_EVAL_IN_APP = True
    #: Seconds between evaluations of the rules.
    ALERT_EVAL_INTERVAL = 5.0
    #: An alert with no new event for this long is resolved.
    ALERT_RESOLVE_MINUTES = 60
    #: An open alert that keeps growing is notified again after this long.
    ALERT_RENOTIFY_MINUTES = 60
    #: The longest wait between attempts at a notification (the backoff doubles up to it).
    ALERT_MAX_BACKOFF_SECONDS = 300
    #: Notifications by email: none unless SMTP_HOST is set. ALERT_EMAIL_TO: comma-separated; empty: every
    #: active admin's address.
    SMTP_HOST = ""
    SMTP_PORT = 25
    SMTP_USERNAME = ""
    SMTP_PASSWORD = ""
    SMTP_STARTTLS = False
    ALERT_EMAIL_FROM = "audit-portal@localhost"
    ALERT_EMAIL_TO = ""
    #: Notifications by webhook (signed like the streams' webhooks): none unless ALERT_WEBHOOK_URL is set.
    ALERT_WEBHOOK_URL = ""
    ALERT_WEBHOOK_SECRET = ""
    #: Where the portal is (e.g. https://audit.example.com): notifications link to an alert's events there.
    ALERT_BASE_URL = ""
    #: Milliseconds the background writer gathers events before writing them in one transaction (exit, SIGTERM and
    #: ``flush()`` write at once): longer is less CPU per event (docs/performance.md), shorter shows them sooner.
    AUDIT_WRITE_DELAY_MS = 250
    #: PostgreSQL: domain events commit with their change into a narrow outbox that the writer moves into audit_logs
    #: with its next batch (``audit/write/outbox.py``); false: straight into audit_logs (what the outbox holds still moves).
    AUDIT_OUTBOX = True
    AUDIT_SPOOL_MAX_BYTES = 256 * 1024 * 1024

    #: Prometheus metrics at /metrics (docs/metrics.md); off by default: /metrics is then a 404.
    METRICS_ENABLED = False
    #: When set (16+ characters), every scrape must send ``Authorization: Bearer <token>``, loopback included;
    #: when empty, /metrics answers only requests from loopback that did not come through a proxy.
    METRICS_TOKEN = ""

    ADMIN_USERNAME = ""
    ADMIN_PASSWORD = ""
    ADMIN_EMAIL = ""

    LOG_LEVEL = "INFO"

    API_TITLE = "audit_portal API"
    API_VERSION = "v1"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/api"
    OPENAPI_JSON_PATH = "openapi.json"
    #: Swagger UI is served by ``audit_portal.rest`` at /api/docs from vendored assets (CSP-clean).


class DevelopmentConfig(BaseConfig):
    """Local run: the defaults."""


class TestingConfig(BaseConfig):
    """The test suite: cheap password hashing, no rate limits unless a test turns them on."""

    APP_ENV = "testing"
    TESTING = True
    PASSWORD_HASH_MEMORY_KIB = 64
    PASSWORD_HASH_TIME_COST = 1
    RATELIMIT_ENABLED = False
    #: Tests seal explicitly, so that row counts stay predictable; they run stream dispatchers themselves.
    AUDIT_SEAL_INTERVAL = 0
    AUDIT_PARTITION_CHECK_SECONDS = 0
    STREAM_DISPATCH_IN_APP = False
    ALERT_EVAL_IN_APP = False


class ProductionConfig(BaseConfig):
    """Production: secrets must come from the environment."""

    APP_ENV = "production"
    SECRET_KEY = ""
    AUDIT_HMAC_KEY = ""
    LOG_LEVEL = "WARNING"


CONFIGS = {"development": DevelopmentConfig, "testing": TestingConfig, "production": ProductionConfig}


def _coerce(raw: str, default):
    if isinstance(default, bool):
        value = raw.strip().lower()
        if value in {"1", "true", "yes", "on"}:
            return True
        if value in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(f"expected true or false, got {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"expected an integer, got {raw!r}") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"expected a number, got {raw!r}") from None
    return raw


def settings_from(app_env: str, environ=os.environ) -> dict:
    """Return the settings for ``app_env``, each overridden by an environment variable of the same name."""
    try:
        base = CONFIGS[app_env]
    except KeyError:
        raise ConfigError(f"APP_ENV must be one of {', '.join(CONFIGS)}; got {app_env!r}") from None
    settings = {name: getattr(base, name) for name in dir(base) if name.isupper()}
    for name, default in settings.items():
        if name in environ and name != "APP_ENV":
            try:
                settings[name] = _coerce(environ[name], default)
            except ConfigError as exc:
                raise ConfigError(f"{name}: {exc}") from None
    return settings


def check_production(settings: dict) -> None:
    """Refuse to start production without real secrets."""
    if settings["APP_ENV"] != "production":
        return
    missing = [name for name in ("SECRET_KEY", "AUDIT_HMAC_KEY") if len(settings.get(name) or "") < 32]
    if missing:
        raise ConfigError(
            "APP_ENV=production needs "
            + " and ".join(missing)
            + " set to random strings of at least 32 characters, e.g. "
            + " ".join(f'{name}="$(python -c \'import secrets; print(secrets.token_urlsafe(48))\')"' for name in missing)
        )


def _flask_command_other_than_run() -> bool:
    """Whether this process is a ``flask`` command that serves no requests (``flask audit sealer``, not
    ``flask run``). The flask command sets FLASK_RUN_FROM_CLI before it loads the app, inside its click context."""
    if os.environ.get("FLASK_RUN_FROM_CLI") != "true":
        return False
    context = click.get_current_context(silent=True)
    return context is not None and context.command.name != "run"


def check_signing_key(settings: dict) -> None:
    """Refuse to serve requests with the digest signing key: it belongs to the sealer process alone, so that whoever
    takes over the web host cannot sign digests for a rewritten history. Commands (``flask audit sealer``) may hold
    it; a server (gunicorn, ``flask run``) may not."""
    if not settings.get("AUDIT_SIGNING_KEY_FILE") or _flask_command_other_than_run():
        return
    raise ConfigError(
        "AUDIT_SIGNING_KEY_FILE is set, but the web app must never hold the digest signing key: it belongs to the "
        "sealer process alone (`flask --app wsgi audit sealer`, a service of its own under its own OS user). Remove "
        "AUDIT_SIGNING_KEY_FILE from the web app's environment and give it AUDIT_PUBLIC_KEY_FILE instead "
        "(docs/compliance.md, 'Signed digests').")


def configure(app, overrides: dict) -> None:
    """Load the settings of ``APP_ENV`` (or ``overrides["APP_ENV"]``) into ``app``, then ``overrides`` (tests use
    them); refuse an unsafe production configuration."""
    app_env = overrides.get("APP_ENV") or os.environ.get("APP_ENV", "development")
    settings = settings_from(app_env)
    settings.update(overrides)
    check_production(settings)
    check_signing_key(settings)
    app.config.from_mapping(settings)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config["AUDIT_DATA_DIR"] = app.config["AUDIT_DATA_DIR"] or app.instance_path
    app.config["AUDIT_STREAM_FILE_DIR"] = app.config["AUDIT_STREAM_FILE_DIR"] or os.path.join(
        app.config["AUDIT_DATA_DIR"], "streams")
    app.config["AUDIT_DIGEST_DIR"] = app.config["AUDIT_DIGEST_DIR"] or os.path.join(app.config["AUDIT_DATA_DIR"],
                                                                                    "digests")
