"""The alerts and alert rules JSON API under /api/v1/alerts and /api/v1/alert-rules (admins only)."""

from __future__ import annotations

from types import SimpleNamespace

from flask import abort
from flask.views import MethodView
from flask_login import current_user
from flask_smorest import Blueprint

from ...extensions import db
from ...rest import commit_or_refuse, documented_errors, envelope, ok, require_admin
from ..alerts import service
from ..alerts.schemas import (
    AlertQueryArgsSchema,
    AlertRuleCreateSchema,
    AlertRuleSchema,
    AlertRuleUpdateSchema,
    AlertSchema,
)

blp = Blueprint(
    "Alerts", __name__, url_prefix="/api/v1/alerts",
    description="Alerts opened by detection rules (brute force, new admins, large exports, new errors, ...): one per "
                "rule and group, acknowledged or resolved by admins, resolved by themselves after a quiet period "
                "(docs/alerts.md). Admins only.",
)
rules_blp = Blueprint(
    "Alert rules", __name__, url_prefix="/api/v1/alert-rules",
    description="Detection rules: the built-in ones (change or disable them) and custom ones (the list API's filters, "
                "a window, an optional group-by and a threshold). Admins only.",
)
for _blueprint in (blp, rules_blp):
    _blueprint.before_request(require_admin)
SECURITY = [{"bearerAuth": []}, {"sessionCookie": []}]
AlertEnvelope = envelope(AlertSchema, "AlertEnvelope")
AlertListEnvelope = envelope(AlertSchema(many=True), "AlertListEnvelope")
RuleEnvelope = envelope(AlertRuleSchema, "AlertRuleEnvelope")
RuleListEnvelope = envelope(AlertRuleSchema(many=True), "AlertRuleListEnvelope")


def _found(lookup, object_id: int):
    try:
        return lookup(object_id)
    except service.NotFound as exc:
        abort(404, description=str(exc))


def _commit(operation):
    return commit_or_refuse(operation, service.AlertError)


@blp.route("/")
class AlertList(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 422)
    @blp.arguments(AlertQueryArgsSchema, location="query")
    @blp.response(200, AlertListEnvelope)
    def get(self, args):
        """List alerts

        Open first, then acknowledged, then resolved; filter with `state` and `rule`.

        ```
        curl -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:5000/api/v1/alerts/?state=open"
        ```
        """
        return ok(service.list_alerts(args.get("state"), args.get("rule")))


@blp.route("/<int:alert_id>")
class AlertItem(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 404)
    @blp.response(200, AlertEnvelope)
    def get(self, alert_id: int):
        """Get an alert"""
        return ok(_found(service.get_alert, alert_id))


@blp.route("/<int:alert_id>/acknowledge")
class AlertAcknowledge(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 404, 409)
    @blp.response(200, AlertEnvelope)
    def post(self, alert_id: int):
        """Acknowledge an open alert (it still collects events; no more notifications)"""
        alert = _found(service.get_alert, alert_id)
        return ok(_commit(lambda: service.acknowledge(current_user, alert)), "Alert acknowledged.")


@blp.route("/<int:alert_id>/resolve")
class AlertResolve(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 404, 409)
    @blp.response(200, AlertEnvelope)
    def post(self, alert_id: int):
        """Resolve an alert (the rule's next hit for the group opens a new one)"""
        alert = _found(service.get_alert, alert_id)
        return ok(_commit(lambda: service.resolve(current_user, alert)), "Alert resolved.")


@rules_blp.route("/")
class RuleList(MethodView):
    @rules_blp.doc(security=SECURITY)
    @documented_errors(rules_blp, 401, 403)
    @rules_blp.response(200, RuleListEnvelope)
    def get(self):
        """List rules (built-in first)"""
        rules = service.list_rules()
        db.session.commit()  # the built-in rules are created on first use
        return ok(rules)

    @rules_blp.doc(security=SECURITY)
    @documented_errors(rules_blp, 400, 401, 403, 422)
    @rules_blp.arguments(AlertRuleCreateSchema)
    @rules_blp.response(201, RuleEnvelope)
    def post(self, data):
        """Add a custom rule

        ```
        curl -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
          -d '{"name": "many_exports", "filters": {"action_type": "EXPORT"}, "group_by": "username",
               "threshold": 5, "window_seconds": 600, "severity": "WARNING"}' \\
          http://127.0.0.1:5000/api/v1/alert-rules/
        ```
        """
        return ok(_commit(lambda: service.create_rule(current_user, data)), "Rule added.")


@rules_blp.route("/<int:rule_id>")
class RuleItem(MethodView):
    @rules_blp.doc(security=SECURITY)
    @documented_errors(rules_blp, 401, 403, 404)
    @rules_blp.response(200, RuleEnvelope)
    def get(self, rule_id: int):
        """Get a rule"""
        return ok(_found(service.get_rule, rule_id))

    @rules_blp.doc(security=SECURITY)
    @documented_errors(rules_blp, 400, 401, 403, 404, 422)
    @rules_blp.arguments(AlertRuleUpdateSchema)
    @rules_blp.response(200, RuleEnvelope)
    def patch(self, data, rule_id: int):
        """Change a rule (a built-in rule: its threshold, window, severity, parameter and enabled)"""
        rule = _found(service.get_rule, rule_id)
        return ok(_commit(lambda: service.update_rule(current_user, rule, data)), "Rule changed.")

    @rules_blp.doc(security=SECURITY)
    @documented_errors(rules_blp, 401, 403, 404, 409)
    @rules_blp.response(200, RuleEnvelope)
    def delete(self, rule_id: int):
        """Remove a custom rule (built-in rules can only be disabled)"""
        rule = _found(service.get_rule, rule_id)
        shown = SimpleNamespace(**{name: getattr(rule, name) for name in AlertRuleSchema().fields})
        _commit(lambda: service.delete_rule(current_user, rule))
        return ok(shown, "Rule removed.")
