"""``audit_portal/metrics/timing.py``: every request is timed under its route's rule and its method; paths no
route matches share one label, and so do unusual methods, so that clients cannot multiply the series."""

from __future__ import annotations

from .scrape import scrape, value

DURATION = "http_request_duration_seconds"


def _count(samples, endpoint: str, method: str) -> float:
    return value(samples, f"{DURATION}_count", endpoint=endpoint, method=method)


def test_requests_are_counted_per_route_and_method(client):
    before = scrape(client)
    for _ in range(3):
        client.get("/healthz")
    client.head("/healthz")
    client.get("/admin/audit-logs/41")  # a redirect to the login page: timed under the route, not the path
    client.get("/admin/audit-logs/42")
    for path in ("/no/such/page", "/another/missing/page", "/api/v1/nothing-here"):
        client.get(path)
    client.open("/healthz", method="BREW")  # 405: no route answers BREW
    after = scrape(client)
    assert _count(after, "/healthz", "GET") - _count(before, "/healthz", "GET") == 3
    assert _count(after, "/healthz", "HEAD") - _count(before, "/healthz", "HEAD") == 1
    rule = "/admin/audit-logs/<int:log_id>"
    assert _count(after, rule, "GET") - _count(before, rule, "GET") == 2
    assert _count(after, "<unmatched>", "GET") - _count(before, "<unmatched>", "GET") == 3
    assert _count(after, "<unmatched>", "OTHER") - _count(before, "<unmatched>", "OTHER") == 1
    # The first scrape was timed too, and a request takes some time.
    assert _count(after, "/metrics", "GET") - _count(before, "/metrics", "GET") == 1
    assert value(after, f"{DURATION}_sum", endpoint="/healthz", method="GET") > value(
        before, f"{DURATION}_sum", endpoint="/healthz", method="GET")
    labels = {dict(key).get("endpoint") for name, key in after if name == f"{DURATION}_count"}
    assert not any(path in labels for path in ("/no/such/page", "/admin/audit-logs/41"))
