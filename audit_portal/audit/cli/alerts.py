"""``flask alerts run|evaluate|list`` (docs/alerts.md)."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from ..alerts import service as alert_service
from ..alerts.runner import AlertRunner
from .common import until_stopped

alerts_cli = AppGroup("alerts", help="Detection rules and alerts (docs/alerts.md).")


@alerts_cli.command("run")
def alerts_run_command():
    """Evaluate the rules every ALERT_EVAL_INTERVAL seconds and send notifications, until SIGTERM or Ctrl-C (the
    production choice when the web workers run with ALERT_EVAL_IN_APP=false)."""
    stop = until_stopped()
    click.echo("Evaluating alert rules; Ctrl-C to stop.")
    AlertRunner(current_app._get_current_object()).run(stop, current_app.config["ALERT_EVAL_INTERVAL"])


@alerts_cli.command("evaluate")
def alerts_evaluate_command():
    """Evaluate the rules once now and send what is due (unless another evaluator holds the lock)."""
    runner = AlertRunner(current_app._get_current_object())
    try:
        result = runner.round()
    finally:
        runner.close()
    if result is None:
        raise click.ClickException("Another evaluator holds the lock; it evaluates the rules.")
    click.echo(f"{len(result.opened)} alert(s) opened, {result.resolved} resolved, {result.sent} notification(s) sent.")


@alerts_cli.command("list")
@click.option("--state", default="open", show_default=True, help="open, acknowledged, resolved or all.")
def alerts_list_command(state: str):
    """The alerts, open first."""
    if state not in ("open", "acknowledged", "resolved", "all"):
        raise click.BadParameter("open, acknowledged, resolved or all.", param_hint="--state")
    alerts = alert_service.list_alerts(None if state == "all" else state)
    if not alerts:
        click.echo("No alerts.")
    for alert in alerts:
        click.echo(f"#{alert.id} {alert.state:<12} {alert.severity:<8} {alert.rule.name:<22} "
                   f"{alert.group or '-':<24} {alert.count:>7} last {alert.last_seen:%Y-%m-%d %H:%M:%S}Z")
