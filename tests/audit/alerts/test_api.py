"""``audit_portal/audit/web/alerts_api.py``: alerts and alert rules over the JSON API, admins only, every change
audited (category security), bad input a 422 naming the field, a refused transition a 409."""

from __future__ import annotations

import pytest

from tests.api_helpers import bearer, make_token

from .conftest import evaluate
from .test_rules import failed_logins

RULES = "/api/v1/alert-rules/"
ALERTS = "/api/v1/alerts/"


def _rule(client, headers, name):
    return next(r for r in client.get(RULES, headers=headers).json["data"] if r["name"] == name)


def test_the_built_in_rules_are_listed_with_their_defaults(client, admin_headers):
    rules = {r["name"]: r for r in client.get(RULES, headers=admin_headers).json["data"]}
    assert set(rules) == {"brute_force_ip", "brute_force_username", "password_spraying", "login_throttled", "new_admin",
                          "large_export", "new_error", "error_regression", "error_spike", "verification_failed",
                          "audit_write_failure"}
    assert rules["brute_force_ip"] | {"id": 0} == {"id": 0, "name": "brute_force_ip", "builtin": True, "enabled": True,
                                                  "filters": {}, "group_by": "ip_address", "threshold": 20,
                                                  "window_seconds": 300, "severity": "ERROR", "parameter": None}
    assert rules["error_regression"]["parameter"] == 7 and rules["large_export"]["threshold"] == 10_000


def test_a_built_in_rule_can_be_tuned_and_disabled_not_renamed_or_deleted(app, client, admin_headers, audit_rows):
    rule = _rule(client, admin_headers, "brute_force_ip")
    changed = client.patch(f"{RULES}{rule['id']}", headers=admin_headers, json={"threshold": 5, "enabled": False})
    assert changed.status_code == 200 and changed.json["data"]["threshold"] == 5
    [update] = audit_rows(action_type="ALERT_RULE_UPDATE")
    assert update.category == "security" and update.event_metadata["old"] == {"threshold": 20, "enabled": True}
    failed_logins(app, 10, distinct=True)
    evaluate(app)
    assert client.get(f"{ALERTS}?rule=brute_force_ip", headers=admin_headers).json["data"] == []  # disabled
    renamed = client.patch(f"{RULES}{rule['id']}", headers=admin_headers, json={"name": "mine"})
    assert renamed.status_code == 422 and "name" in renamed.json["errors"]
    deleted = client.delete(f"{RULES}{rule['id']}", headers=admin_headers)
    assert deleted.status_code == 409 and "disable it instead" in deleted.json["message"]


def test_a_custom_rule_is_created_fires_and_is_removed_audited(app, client, admin_headers, audit_rows):
    created = client.post(RULES, headers=admin_headers, json={
        "name": "failed_logins_per_user", "filters": {"action_type": "login_failed"}, "group_by": "username",
        "threshold": 3, "window_seconds": 600, "severity": "critical"})
    assert created.status_code == 201, created.json
    rule = created.json["data"]
    assert rule["builtin"] is False and rule["severity"] == "CRITICAL" and rule["group_by"] == "username"
    failed_logins(app, 3, username="carol")
    evaluate(app)
    [alert] = client.get(f"{ALERTS}?rule=failed_logins_per_user", headers=admin_headers).json["data"]
    assert alert["group"] == "carol" and alert["count"] == 3 and alert["severity"] == "CRITICAL"
    assert "username=carol" in alert["events_url"] and "action_type=LOGIN_FAILED" in alert["events_url"]
    events = client.get("/api/v1/audit-logs/?" + alert["events_url"].split("?", 1)[1], headers=admin_headers)
    assert events.status_code == 200 and len(events.json["data"]["items"]) == 3  # the link selects exactly its events
    removed = client.delete(f"{RULES}{rule['id']}", headers=admin_headers)
    assert removed.status_code == 200
    assert [e.action_type for e in audit_rows(category="security") if e.action_type.startswith("ALERT_RULE")] == [
        "ALERT_RULE_CREATE", "ALERT_RULE_DELETE"]


@pytest.mark.parametrize(("payload", "field"), [
    ({"colour": "red"}, "colour"),
    ({"group_by": "country"}, "group_by"),
    ({"window_seconds": 0}, "window_seconds"),
    ({"window_seconds": 30 * 24 * 3600 + 1}, "window_seconds"),
    ({"threshold": -1}, "threshold"),
    ({"threshold": "ten"}, "threshold"),
    ({"filters": {"status": "MAYBE"}}, "filters"),
    ({"filters": {"date_from": "2026-01-01"}}, "filters"),
    ({"severity": "apocalyptic"}, "severity"),
    ({"name": "brute_force_ip"}, "name"),
])
def test_bad_rule_input_is_a_422_naming_the_field(client, admin_headers, payload, field):
    body = {"name": "r1", "threshold": 2, "window_seconds": 60, **payload}
    response = client.post(RULES, headers=admin_headers, json=body)
    assert response.status_code == 422, response.json
    assert field in response.json["errors"], response.json


def test_alerts_are_acknowledged_and_resolved_once_each(app, client, admin_headers, audit_rows):
    failed_logins(app, 20, distinct=True)
    evaluate(app)
    alert = client.get(f"{ALERTS}?rule=brute_force_ip&state=open", headers=admin_headers).json["data"][0]
    acknowledged = client.post(f"{ALERTS}{alert['id']}/acknowledge", headers=admin_headers)
    assert acknowledged.status_code == 200 and acknowledged.json["data"]["state"] == "acknowledged"
    assert acknowledged.json["data"]["acknowledged_by"] == "admin"
    again = client.post(f"{ALERTS}{alert['id']}/acknowledge", headers=admin_headers)
    assert again.status_code == 409 and "state" in again.json["errors"]
    resolved = client.post(f"{ALERTS}{alert['id']}/resolve", headers=admin_headers)
    assert resolved.status_code == 200 and resolved.json["data"]["state"] == "resolved"
    assert client.post(f"{ALERTS}{alert['id']}/resolve", headers=admin_headers).status_code == 409
    actions = [e.action_type for e in audit_rows(resource_type="ALERT") if e.resource_id == str(alert["id"])]
    assert actions == ["ALERT_TRIGGERED", "ALERT_ACKNOWLEDGED", "ALERT_RESOLVED"]
    listed = client.get(ALERTS, headers=admin_headers).json["data"]
    assert [a["state"] for a in listed] == sorted((a["state"] for a in listed),
                                                  key=["open", "acknowledged", "resolved"].index)  # open first
    assert client.get(f"{ALERTS}?state=sleeping", headers=admin_headers).status_code == 422
    nul = client.get(f"{ALERTS}?rule=a%00b", headers=admin_headers)
    assert nul.status_code == 422 and "rule" in nul.json["errors"]
    assert client.get(f"{ALERTS}999999", headers=admin_headers).status_code == 404


def test_alerts_and_rules_are_for_admins_only(app, client, make_user):
    user_headers = bearer(make_token(app, make_user("plain", role="user")))
    for url in (ALERTS, RULES):
        assert client.get(url, headers=user_headers).status_code == 403
        assert client.get(url).status_code == 401
