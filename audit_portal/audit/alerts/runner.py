"""Running the evaluator: every ALERT_EVAL_INTERVAL seconds, in the app's background (one thread per process,
ALERT_EVAL_IN_APP) or in its own process (``flask alerts run``). One evaluates at a time across processes and
servers, whichever holds the evaluator lock; the others wait their turn. Never inside a request."""

from __future__ import annotations

import logging
import threading

from ...config import ConfigError
from ...extensions import db
from ..delivery.background import BackgroundThread
from ..delivery.locks import ALERT_EVALUATOR, SingletonJob
from ..delivery.webhook import check_url
from .evaluator import Evaluation, evaluate

log = logging.getLogger(__name__)
#: The shortest ALERT_WEBHOOK_SECRET accepted (a receiver's HMAC key).
MIN_SECRET = 16


def check_settings(config) -> None:
    """Refuse to start with a notification webhook that could never be delivered or verified."""
    url = config["ALERT_WEBHOOK_URL"]
    if not url:
        return
    problem = check_url(url)
    if problem:
        raise ConfigError(f"ALERT_WEBHOOK_URL: {problem}")
    if len(config["ALERT_WEBHOOK_SECRET"] or "") < MIN_SECRET:
        raise ConfigError(f"ALERT_WEBHOOK_URL needs ALERT_WEBHOOK_SECRET: a random string of at least {MIN_SECRET} "
                          "characters, which the receiver uses to verify each notification (docs/alerts.md).")


class AlertRunner:
    """Takes the evaluator lock when it is free and evaluates while it holds it."""

    def __init__(self, app):
        self.app = app
        self.job = SingletonJob(app, ALERT_EVALUATOR, 0, "alerts.lock")

    def round(self) -> Evaluation | None:
        """One evaluation, if this runner holds (or can take) the lock; None when another one does."""
        with self.app.app_context():
            if not self.job.mine():
                return None
            try:
                return evaluate()
            finally:
                db.session.remove()

    def close(self) -> None:
        with self.app.app_context():
            self.job.release()

    def run(self, stop: threading.Event, interval_s: float) -> None:
        """Rounds every ``interval_s`` until ``stop`` is set."""
        try:
            while not stop.is_set():
                try:
                    self.round()
                except Exception:  # noqa: BLE001 - the database may be down: try again next time
                    log.warning("alerts: an evaluation failed; retrying", exc_info=True)
                stop.wait(interval_s)
        finally:
            self.close()


class BackgroundEvaluator(BackgroundThread):
    """The evaluator thread of one app in one process (whichever process holds the lock evaluates)."""

    def __init__(self, app):
        super().__init__("audit-alerts", lambda stop: AlertRunner(app).run(stop, app.config["ALERT_EVAL_INTERVAL"]))
