"""The admin pages of the audit log (viewer, detail, error dashboard, HTML export) through the test client."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import timedelta

import pytest

from audit_portal.audit.record.enums import ActionType, ErrorSeverity, ResourceType, Status
from audit_portal.audit.record.events import build_event
from audit_portal.audit.record.models import AuditLog
from audit_portal.audit.write.store import insert_ignoring_duplicates
from audit_portal.extensions import db
from audit_portal.timeutil import utcnow
from tests.api_helpers import bearer, make_token

VIEWER = "/admin/audit-logs/"
ERRORS = "/admin/audit-logs/errors"
EXPORT = "/admin/audit-logs/export"
XSS = "<script>alert(1)</script>"
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
DESCRIPTION_RE = re.compile(r'class="col-description" data-label="Description">([^<]*)')
STACK = ('Traceback (most recent call last):\n  File "/srv/app/audit_portal/reports.py", line 12, in total\n'
         "    return a / b\nZeroDivisionError: division by zero\n")


def insert_events(app, events) -> dict[str, int]:
    """Insert events; return their ids by description."""
    with app.app_context(), db.engine.begin() as conn:
        insert_ignoring_duplicates(conn, events)
    with app.app_context():
        rows = db.session.execute(db.select(AuditLog.description, AuditLog.id)).all()
        return {description: log_id for description, log_id in rows}


def event(description, action=ActionType.UPDATE, resource=ResourceType.USER, minutes_ago=0, **fields):
    return build_event(action, resource, fields.pop("resource_id", None), description,
                       timestamp=utcnow() - timedelta(minutes=minutes_ago), **fields)


def error_event(description, error_type="ZeroDivisionError", severity=ErrorSeverity.ERROR, fingerprint="f" * 32,
                minutes_ago=0, **fields):
    return event(description, ActionType.EXCEPTION_RAISED, ResourceType.SYSTEM, minutes_ago, status=Status.ERROR,
                 severity=severity, error_type=error_type, fingerprint=fingerprint, stack_trace=STACK,
                 metadata={"location": "audit_portal/reports.py:total"}, **fields)


def descriptions(response) -> list[str]:
    """The descriptions in the page's event table, top to bottom (HTML entities decoded)."""
    return [html.unescape(d).strip() for d in DESCRIPTION_RE.findall(response.get_data(as_text=True))]


def page_text(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def alice_id(make_user):
    return make_user("alice")


@pytest.fixture
def sample(app, admin_id, alice_id):
    """One event of each kind the filters tell apart (descriptions start with "zz-")."""
    return insert_events(app, [
        event("zz-login", ActionType.LOGIN, ResourceType.SESSION, 5, user_id=alice_id, username="alice",
              request_id_="req-aaaa-0001", ip_address="203.0.113.5"),
        event("zz-fail", ActionType.LOGIN_FAILED, ResourceType.SESSION, 6, status=Status.FAILURE,
              metadata={"attempted_username": "alice", "reason": "wrong password"}, ip_address="2001:db8::5"),
        event("zz-update", ActionType.UPDATE, ResourceType.USER, 7, user_id=admin_id, username="admin",
              resource_id=alice_id, metadata={"old": {"email": "a@old.example"}, "new": {"email": "a@new.example"}},
              request_id_="req-aaaa-0001", ip_address="203.0.113.5"),
        error_event("zz-critical", "SystemError", ErrorSeverity.CRITICAL, "c" * 32, minutes_ago=8),
        error_event("zz-warning", "ValidationError", ErrorSeverity.WARNING, "w" * 32, minutes_ago=9),
        event("zz-old-delete", ActionType.DELETE, ResourceType.DATA_UPLOAD, 3 * 24 * 60),
    ])


ALL_SAMPLE = {"zz-login", "zz-fail", "zz-update", "zz-critical", "zz-warning", "zz-old-delete"}


def sample_shown(response) -> set[str]:
    return set(descriptions(response)) & ALL_SAMPLE


# -- the viewer -----------------------------------------------------------------------------------


def test_viewer_lists_events_newest_first_with_labelled_badges(admin_client, sample):
    response = admin_client.get(VIEWER)
    assert response.status_code == 200
    shown = [d for d in descriptions(response) if d in ALL_SAMPLE]
    assert shown == ["zz-login", "zz-fail", "zz-update", "zz-critical", "zz-warning", "zz-old-delete"]
    body = page_text(response)
    assert "Time (UTC)" in body and "5 minutes ago" in body
    assert re.search(r'class="badge badge-status badge-status-red"[^>]*>FAILURE<', body)
    assert re.search(r'class="badge badge-status badge-status-green"[^>]*>SUCCESS<', body)
    assert re.search(r'badge-severity-red"[^>]*><span class="visually-hidden">Severity </span>CRITICAL<', body)
    assert f'href="/admin/audit-logs/?user_id={_id(body, "alice")}"' in body
    assert f'href="/admin/audit-logs/{sample["zz-fail"]}"' in body


def _id(body, username):
    return re.search(rf'href="/admin/audit-logs/\?user_id=(\d+)" title="All events by {username}"', body).group(1)


@pytest.mark.parametrize("query, expected", [
    ("action_type=login_failed", {"zz-fail"}),
    ("action_type=EXCEPTION_RAISED&severity=critical", {"zz-critical"}),
    ("resource_type=session", {"zz-login", "zz-fail"}),
    ("status=failure", {"zz-fail"}),
    ("status=ERROR", {"zz-critical", "zz-warning"}),
    ("category=authentication", {"zz-login", "zz-fail"}),
    ("category=DATA", {"zz-old-delete"}),
    ("severity=WARNING", {"zz-warning"}),
    ("error_type=SystemError", {"zz-critical"}),
    ("search=ZZ-UP", {"zz-update"}),
    ("search=zz-&date_to={two_days_ago}", {"zz-old-delete"}),
    ("search=zz-&date_from={two_days_ago}", ALL_SAMPLE - {"zz-old-delete"}),
    ("date_from={today}&date_to={today}&search=zz-", ALL_SAMPLE - {"zz-old-delete"}),
    ("fingerprint=" + "w" * 32, {"zz-warning"}),
    ("request_id=req-aaaa-0001", {"zz-login", "zz-update"}),
    ("user_id={alice}", {"zz-login"}),
    ("user_id={alice}&status=FAILURE", set()),
    ("username=alice", {"zz-login", "zz-fail"}),  # her login, and the failed one that typed her name
    ("username=admin", {"zz-update"}),
    ("username=Alice", set()),
    ("ip_address=203.0.113.5", {"zz-login", "zz-update"}),
    ("ip_address=2001:DB8:0::5", {"zz-fail"}),
    ("ip_address=203.0.113.5&username=alice", {"zz-login"}),
])
def test_every_filter_from_the_query_string(admin_client, sample, alice_id, query, expected):
    now = utcnow()
    url = VIEWER + "?" + query.format(two_days_ago=(now - timedelta(days=2)).date().isoformat(),
                                      today=now.date().isoformat(), alice=alice_id)
    response = admin_client.get(url)
    assert response.status_code == 200
    assert sample_shown(response) == expected


def test_filters_refill_the_form_and_show_as_removable_chips(admin_client, sample, alice_id):
    body = page_text(admin_client.get(f"{VIEWER}?status=failure&search=zz&user_id={alice_id}&request_id=req-aaaa-0001"))
    assert '<option value="FAILURE" selected>' in body
    assert re.search(r'id="f-search"\s+name="search" value="zz"', body)
    chips = body[body.index('data-testid="active-filters"'):]
    assert "User:</span> <span class=\"filter-chip-value\">alice (#" in chips
    assert "Request:</span> <span class=\"filter-chip-value\">req-aaaa-0001" in chips
    # Removing one filter keeps the others.
    assert f'href="/admin/audit-logs/?search=zz&amp;user_id={alice_id}&amp;request_id=req-aaaa-0001"' in chips
    # A filter the bar has no field for (the request id) is carried by a hidden input.
    assert '<input type="hidden" name="request_id" value="req-aaaa-0001">' in body


def test_username_and_ip_address_have_fields_that_keep_their_values(admin_client, sample):
    body = page_text(admin_client.get(f"{VIEWER}?username=alice&ip_address=2001:DB8::5"))
    assert re.search(r'<label class="form-label" for="f-username">Username</label>\s*<input[^>]+id="f-username"\s+'
                     r'name="username" value="alice"', body)
    assert re.search(r'<label class="form-label" for="f-ip_address">IP address</label>\s*<input[^>]+'
                     r'id="f-ip_address"\s+name="ip_address" value="2001:DB8::5"', body)
    chips = body[body.index('data-testid="active-filters"'):]
    assert 'Username:</span> <span class="filter-chip-value">alice' in chips
    assert 'IP address:</span> <span class="filter-chip-value">2001:DB8::5' in chips
    assert 'href="/admin/audit-logs/?ip_address=2001:DB8::5"' in chips  # removing the username keeps the address
    assert 'href="/admin/audit-logs/export?username=alice&amp;ip_address=2001:DB8::5&amp;format=csv"' in body
    assert sample_shown(admin_client.get(f"{VIEWER}?username=alice&ip_address=2001:DB8::5")) == {"zz-fail"}


@pytest.mark.parametrize("query, parameter, allowed", [
    ("status=nope", "status", "SUCCESS, FAILURE, ERROR"),
    ("action_type=LOGON", "action_type", "LOGIN, LOGOUT, LOGIN_FAILED"),
    ("resource_type=FILE", "resource_type", "USER, ROLE, SESSION"),
    ("category=misc", "category", "authentication, user_management"),
    ("severity=FATAL", "severity", "WARNING, ERROR, CRITICAL"),
    ("date_from=yesterday", "date_from", "ISO 8601"),
    ("date_from=2026-02-01&date_to=2026-01-01", "date_from", "before date_to"),
    ("user_id=abc", "user_id", "integer"),
    ("ip_address=203.0.113.300", "ip_address", "Not a valid IPv4 or IPv6 address"),
    ("username=" + "x" * 65, "username", "Length must be between 1 and 64."),
    ("limit=0", "limit", "from 1 to 200"),
    ("limit=201", "limit", "from 1 to 200"),
    ("skip=-1", "skip", "0 or more"),
    ("sort=timestamp", "sort", "the parameters are: date_from, date_to, user_id"),
])
def test_a_bad_filter_is_a_422_page_naming_the_parameter_and_the_allowed_values(admin_client, query, parameter,
                                                                                   allowed):
    response = admin_client.get(f"{VIEWER}?{query}")
    assert response.status_code == 422
    body = page_text(response)
    alert = body[body.index('data-testid="filter-errors"'):]
    alert = alert[:alert.index("</div>")]
    assert f"<strong>{parameter}</strong>" in alert
    assert html.escape(allowed, quote=True) in alert
    assert 'data-testid="audit-table"' not in body
    assert 'aria-invalid="true"' in body or parameter in {"sort", "skip"}


def test_paging_links_keep_the_filters(app, admin_client):
    insert_events(app, [event(f"page-{i:02d}", status=Status.FAILURE, minutes_ago=i) for i in range(23)]
                  + [event("not-a-failure", minutes_ago=1)])
    first = admin_client.get(f"{VIEWER}?status=FAILURE&search=page-&limit=10")
    body = page_text(first)
    assert descriptions(first) == [f"page-{i:02d}" for i in range(10)]
    assert "1–10 of 23 events · page 1 of 3" in body
    next_href = re.search(r'href="([^"]+)" rel="next"', body).group(1).replace("&amp;", "&")
    assert next_href.startswith("/admin/audit-logs/?status=FAILURE&search=page-&skip=10&limit=10&cursor=")
    assert 'href="/admin/audit-logs/?status=FAILURE&amp;search=page-&amp;skip=20&amp;limit=10">Last' in body
    by_cursor = admin_client.get(next_href)
    assert descriptions(by_cursor) == [f"page-{i:02d}" for i in range(10, 20)]
    assert "11–20 of 23 events · page 2 of 3" in page_text(by_cursor)
    assert '<span class="page-link" aria-disabled="true">‹ Previous</span>' in body

    second = admin_client.get(f"{VIEWER}?status=FAILURE&search=page-&skip=10&limit=10")
    assert descriptions(second) == [f"page-{i:02d}" for i in range(10, 20)]
    assert "11–20 of 23 events · page 2 of 3" in page_text(second)
    assert 'href="/admin/audit-logs/?status=FAILURE&amp;search=page-&amp;skip=0&amp;limit=10" rel="prev"' in page_text(second)

    last = admin_client.get(f"{VIEWER}?status=FAILURE&search=page-&skip=20&limit=10")
    assert descriptions(last) == ["page-20", "page-21", "page-22"]
    assert '<span class="page-link" aria-disabled="true">Next ›</span>' in page_text(last)


def test_paging_and_download_links_keep_username_and_ip_address(app, admin_client):
    insert_events(app, [event(f"pager-{i:02d}", username="pat", ip_address="198.51.100.23", minutes_ago=i)
                        for i in range(13)]
                  + [event("other-address", username="pat", ip_address="198.51.100.24"),
                     event("other-user", username="patricia", ip_address="198.51.100.23")])
    first = admin_client.get(f"{VIEWER}?username=pat&ip_address=198.51.100.23&limit=10")
    body = page_text(first)
    assert descriptions(first) == [f"pager-{i:02d}" for i in range(10)]
    assert "1–10 of 13 events · page 1 of 2" in body
    next_href = re.search(r'href="([^"]+)" rel="next"', body).group(1).replace("&amp;", "&")
    assert next_href.startswith("/admin/audit-logs/?username=pat&ip_address=198.51.100.23&skip=10&limit=10&cursor=")
    assert descriptions(admin_client.get(next_href)) == ["pager-10", "pager-11", "pager-12"]
    assert 'href="/admin/audit-logs/?username=pat&amp;ip_address=198.51.100.23&amp;skip=10&amp;limit=10">Last' in body
    csv_href = html.unescape(re.search(r'data-testid="export-csv" href="([^"]+)"', body).group(1))
    rows = list(csv.DictReader(io.StringIO(admin_client.get(csv_href).get_data(as_text=True))))
    assert [r["description"] for r in rows] == [f"pager-{i:02d}" for i in range(13)]


@pytest.mark.parametrize("limit", [25, 50, 100, 200])
def test_page_sizes(app, admin_client, limit):
    insert_events(app, [event(f"size-{i:03d}", minutes_ago=i) for i in range(210)])
    response = admin_client.get(f"{VIEWER}?search=size-&limit={limit}")
    assert len(descriptions(response)) == limit
    assert f'<option value="{limit}" selected>' in page_text(response)


def test_default_page_size_is_50(app, admin_client):
    insert_events(app, [event(f"size-{i:03d}", minutes_ago=i) for i in range(60)])
    assert len(descriptions(admin_client.get(f"{VIEWER}?search=size-"))) == 50


def test_empty_result_says_so_and_offers_to_clear_the_filters(admin_client, sample):
    response = admin_client.get(f"{VIEWER}?search=no-such-event")
    assert response.status_code == 200
    body = page_text(response)
    assert "No events match these filters" in body
    assert '<a href="/admin/audit-logs/?view=all">Clear the filters</a>' in body
    assert 'data-testid="audit-table"' not in body


def test_quick_ranges_set_date_from_and_keep_the_other_filters(admin_client, sample):
    body = page_text(admin_client.get(f"{VIEWER}?search=zz-"))
    link = re.search(r'href="([^"]+)">24 hours</a>', body).group(1)
    assert "search=zz-" in link and "date_from=" in link
    response = admin_client.get(html.unescape(link))
    assert response.status_code == 200
    assert sample_shown(response) == ALL_SAMPLE - {"zz-old-delete"}


def test_export_buttons_carry_the_filters(admin_client, sample):
    body = page_text(admin_client.get(f"{VIEWER}?status=FAILURE&search=zz"))
    assert 'href="/admin/audit-logs/export?status=FAILURE&amp;search=zz&amp;format=csv"' in body
    assert 'href="/admin/audit-logs/export?status=FAILURE&amp;search=zz&amp;format=json"' in body


# -- the detail page ------------------------------------------------------------------------------


def test_detail_shows_every_field_and_a_before_after_table(app, admin_client, sample, alice_id):
    response = admin_client.get(f"{VIEWER}{sample['zz-update']}")
    assert response.status_code == 200
    body = page_text(response)
    with app.app_context():
        log = db.session.get(AuditLog, sample["zz-update"])
        for value in (log.event_id, log.timestamp.strftime("%Y-%m-%d %H:%M:%S"), "UPDATE", "user_management",
                      f"USER #{alice_id}", "zz-update", "req-aaaa-0001"):
            assert value in body
    changes = body[body.index('data-testid="changes"'):]
    changes = changes[:changes.index("</table>")]
    assert re.search(r"email</th>\s*<td class=\"change-old\">a@old.example</td>\s*<td class=\"change-new\">a@new.example",
                     changes)
    # Links to the other events of the same request and of the same user.
    assert 'href="/admin/audit-logs/?request_id=req-aaaa-0001"' in body
    assert re.search(r'href="/admin/audit-logs/\?user_id=\d+" data-testid="same-user"', body)
    assert {"zz-login", "zz-update"} <= set(descriptions(response))  # the same request's events, listed


def test_detail_of_an_error_shows_its_stack_trace_and_its_group(admin_client, sample):
    body = page_text(admin_client.get(f"{VIEWER}{sample['zz-critical']}"))
    trace = body[body.index('data-testid="stack-trace"'):]
    assert trace.index("ZeroDivisionError: division by zero") < trace.index("</pre>")
    assert "SystemError" in body and 'data-severity="CRITICAL"' in body
    assert f'href="/admin/audit-logs/errors?fingerprint={"c" * 32}" data-testid="error-group">1 occurrence' in body
    assert "audit_portal/reports.py:total" in body


def test_detail_of_a_request_event_shows_the_request(app, admin_client):
    ids = insert_events(app, [event("GET /x answered 404", ActionType.REQUEST, ResourceType.REQUEST,
                                    status=Status.FAILURE, http_method="GET", path="/x?page=2", status_code=404,
                                    duration_ms=12, ip_address="192.0.2.7", user_agent_="curl/8.5.0")])
    body = page_text(admin_client.get(f"{VIEWER}{ids['GET /x answered 404']}"))
    assert "GET /x?page=2 → 404 in 12 ms" in body
    assert "192.0.2.7" in body and "curl/8.5.0" in body
    assert "anonymous" in body


@pytest.mark.parametrize("log_id", ["999999", "9223372036854775808"])
def test_detail_of_an_unknown_event_is_404(admin_client, log_id):
    response = admin_client.get(f"{VIEWER}{log_id}")
    assert response.status_code == 404
    assert f"There is no audit event with id {log_id}." in page_text(response)


# -- the error dashboard --------------------------------------------------------------------------


@pytest.fixture
def errors_sample(app):
    """Two groups: ZeroDivisionError x3 (oldest 3 days ago), KeyError x1 (CRITICAL); and a failed request's
    own ERROR row, which belongs to no group."""
    return insert_events(app, [
        error_event("zde-1", minutes_ago=3 * 24 * 60),
        error_event("zde-2", minutes_ago=60),
        error_event("zde-3", minutes_ago=5),
        error_event("ke-1", "KeyError", ErrorSeverity.CRITICAL, "k" * 32, minutes_ago=30),
        event("POST /x answered 500", ActionType.REQUEST, ResourceType.REQUEST, 5, status=Status.ERROR,
              http_method="POST", path="/x", status_code=500),
    ])


def _group_rows(body: str) -> dict[str, str]:
    """fingerprint -> that row's HTML in the groups table."""
    table = body[body.index('data-testid="error-groups"'):body.index("</table>", body.index('data-testid="error-groups"'))]
    return {m.group(1): m.group(2) for m in re.finditer(r'<tr data-fingerprint="(\w+)"(.*?)</tr>', table, re.S)}


def test_dashboard_groups_errors_by_fingerprint_with_counts_and_first_and_last_seen(app, admin_client, errors_sample):
    response = admin_client.get(ERRORS)
    assert response.status_code == 200
    body = page_text(response)
    rows = _group_rows(body)
    assert list(rows) == ["f" * 32, "k" * 32]  # most recently seen first
    zde = rows["f" * 32]
    assert "ZeroDivisionError" in zde and 'data-testid="group-count">3<' in zde
    with app.app_context():
        first, last = (db.session.get(AuditLog, errors_sample[d]).timestamp for d in ("zde-1", "zde-3"))
    assert zde.index(first.strftime("%Y-%m-%d %H:%M:%S")) < zde.index(last.strftime("%Y-%m-%d %H:%M:%S"))
    assert "3 days ago" in zde and "5 minutes ago" in zde
    assert 'data-severity="CRITICAL"' in rows["k" * 32] and 'data-testid="group-count">1<' in rows["k" * 32]
    assert "POST /x answered 500" not in body
    assert "1 other ERROR event without a stack trace" in body


def test_a_group_link_shows_its_occurrences(admin_client, errors_sample):
    body = page_text(admin_client.get(ERRORS))
    link = re.search(r'href="(/admin/audit-logs/errors\?fingerprint=f{32})"', body).group(1)
    response = admin_client.get(link)
    assert response.status_code == 200
    assert descriptions(response) == ["zde-3", "zde-2", "zde-1"]
    group_page = page_text(response)
    assert "<strong>3</strong> occurrences" in group_page
    assert 'data-total="3"' in group_page


def test_dashboard_filters_by_severity_and_error_type(admin_client, errors_sample):
    critical = page_text(admin_client.get(f"{ERRORS}?severity=critical"))
    assert list(_group_rows(critical)) == ["k" * 32]
    assert 'data-total="1"' in critical
    by_type = page_text(admin_client.get(f"{ERRORS}?error_type=ZeroDivisionError"))
    assert list(_group_rows(by_type)) == ["f" * 32]
    none = admin_client.get(f"{ERRORS}?severity=WARNING")
    assert "No errors match these filters" in page_text(none)
    assert 'data-testid="chart-empty"' in page_text(none)


def test_dashboard_filtered_by_username_or_ip_address_counts_only_those_errors(app, admin_client, errors_sample):
    """The rollup knows neither: these filters must count the events (else the group would show 3 + 2)."""
    insert_events(app, [error_event(f"zde-by-pat-{i}", username="pat", ip_address="2001:db8::23", minutes_ago=i)
                        for i in range(2)])
    everyone = _group_rows(page_text(admin_client.get(ERRORS)))
    assert 'data-testid="group-count">5<' in everyone["f" * 32]
    for query in ("username=pat", "ip_address=2001:DB8::23"):
        body = page_text(admin_client.get(f"{ERRORS}?{query}"))
        rows = _group_rows(body)
        assert list(rows) == ["f" * 32] and 'data-testid="group-count">2<' in rows["f" * 32], query
        assert 'data-total="2"' in body, query


def test_dashboard_chart_is_an_svg_with_the_right_total(admin_client, errors_sample):
    body = page_text(admin_client.get(ERRORS))
    chart = body[body.index('data-testid="error-chart"'):body.index("</figure>")]
    assert 'data-total="4"' in chart and "4 errors in 31 days" in chart
    assert "<svg" in chart and 'role="img"' in chart
    counts = [int(n) for n in re.findall(r'<rect [^>]*data-count="(\d+)"', chart)]
    assert sum(counts) == 4
    assert re.search(r'<rect [^>]*fill="#dc3545" data-severity="CRITICAL" data-count="1"', chart)


@pytest.mark.parametrize("limit, status", [(1, 200), (200, 200), (201, 422), (0, 422)])
def test_dashboard_page_size_is_at_most_200(admin_client, errors_sample, limit, status):
    response = admin_client.get(f"{ERRORS}?limit={limit}")
    assert response.status_code == status
    if status == 200:
        assert len(_group_rows(page_text(response))) == min(limit, 2)
    else:
        assert "<strong>limit</strong>: Must be a whole number from 1 to 200." in page_text(response)


def test_dashboard_pages_through_groups(admin_client, errors_sample):
    first = page_text(admin_client.get(f"{ERRORS}?limit=1"))
    assert list(_group_rows(first)) == ["f" * 32] and "1–1 of 2 groups" in first
    second = page_text(admin_client.get(f"{ERRORS}?limit=1&skip=1"))
    assert list(_group_rows(second)) == ["k" * 32] and "2–2 of 2 groups" in second
    past = page_text(admin_client.get(f"{ERRORS}?limit=1&skip=5"))
    assert "No errors match these filters on this page" in past


def test_dashboard_bad_filter_is_422(admin_client):
    response = admin_client.get(f"{ERRORS}?severity=fatal")
    assert response.status_code == 422
    assert "WARNING, ERROR, CRITICAL" in page_text(response)


# -- the HTML export ------------------------------------------------------------------------------


def test_export_downloads_exactly_the_filtered_set(admin_client, sample):
    response = admin_client.get(f"{EXPORT}?format=csv&search=zz-&status=ERROR")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [r["description"] for r in rows] == ["zz-critical", "zz-warning"]
    assert {r["status"] for r in rows} == {"ERROR"}


def test_export_json_uses_the_same_filters(admin_client, sample):
    response = admin_client.get(f"{EXPORT}?format=json&search=zz-&action_type=login")
    assert [item["description"] for item in response.json] == ["zz-login"]


def test_export_over_the_limit_answers_the_viewer_with_a_message(app, admin_client, sample):
    app.config["AUDIT_EXPORT_MAX_ROWS"] = 3
    response = admin_client.get(f"{EXPORT}?format=csv&search=zz-")
    assert response.status_code == 422
    assert response.headers["Content-Type"].startswith("text/html")
    body = page_text(response)
    message = body[body.index('data-testid="export-error"'):]
    assert "6 events match these filters, more than the export limit of 3" in message[:message.index("</div>")]
    assert 'data-testid="audit-table"' in body  # the viewer, with the filtered events, is still there
    assert sample_shown(response) == ALL_SAMPLE


@pytest.mark.parametrize("query, parameter", [("format=xml", "format"), ("format=csv&status=nope", "status"),
                                              ("format=csv&foo=1", "foo")])
def test_export_with_bad_parameters_is_422(admin_client, query, parameter):
    response = admin_client.get(f"{EXPORT}?{query}")
    assert response.status_code == 422
    assert f"<strong>{parameter}</strong>" in page_text(response)


def test_export_is_recorded(admin_client, sample, audit_rows):
    admin_client.get(f"{EXPORT}?format=csv&search=zz-login")
    [export] = audit_rows(action_type="EXPORT")
    assert export.is_sensitive and export.event_metadata["channel"] == "ui"
    assert export.event_metadata["filters"] == {"search": "zz-login"} and export.event_metadata["row_count"] == 1
    listed = page_text(admin_client.get(f"{VIEWER}?action_type=EXPORT"))
    assert 'title="Sensitive action: passwords, tokens, exports">sensitive</span>' in listed


# -- access ---------------------------------------------------------------------------------------


PAGES = [VIEWER, f"{VIEWER}1", ERRORS, f"{ERRORS}?fingerprint={'f' * 32}", f"{EXPORT}?format=csv"]


@pytest.mark.parametrize("url", PAGES)
def test_anonymous_users_go_to_the_login_page(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login?next=")


@pytest.mark.parametrize("url", PAGES)
def test_non_admins_get_403_and_the_refusal_is_audited(client, auth, alice_id, audit_rows, url):
    auth.login("alice")
    response = client.get(url)
    assert response.status_code == 403
    assert "This page is for administrators only." in page_text(response)
    [denied] = audit_rows(action_type="PERMISSION_DENIED")
    assert denied.username == "alice" and denied.status == "FAILURE"
    assert url.split("?")[0] in denied.description


def test_viewing_the_pages_is_recorded_as_request_events(admin_client, sample, audit_rows):
    admin_client.get(f"{VIEWER}?status=FAILURE")
    admin_client.get(f"{VIEWER}{sample['zz-fail']}")
    admin_client.get(ERRORS)
    paths = [row.path for row in audit_rows(action_type="REQUEST", http_method="GET", username="admin")]
    assert paths[-3:] == [f"{VIEWER}?status=FAILURE", f"{VIEWER}{sample['zz-fail']}", ERRORS]


def test_the_user_page_shows_recent_events_and_links_to_the_viewer(admin_client, sample, alice_id):
    body = page_text(admin_client.get(f"/admin/users/{alice_id}"))
    assert "zz-login" in body
    assert f'href="/admin/audit-logs/?user_id={alice_id}"' in body


def test_navigation_reaches_the_viewer_the_dashboard_and_users(admin_client):
    body = page_text(admin_client.get(VIEWER))
    nav = body[body.index('aria-label="Main navigation"'):body.index("</nav>")]
    for href in ('href="/admin/audit-logs/"', 'href="/admin/audit-logs/errors"', 'href="/admin/users/"'):
        assert href in nav


# -- escaping -------------------------------------------------------------------------------------


@pytest.fixture
def hostile(app):
    """An error event whose every free-text field carries a script tag."""
    return insert_events(app, [
        event(XSS, ActionType.EXCEPTION_RAISED, ResourceType.SYSTEM, status=Status.ERROR, severity=ErrorSeverity.ERROR,
              error_type=XSS, fingerprint="x" * 32, stack_trace=XSS, username=XSS, user_agent_=XSS, path=f"/{XSS}",
              http_method="GET", status_code=500, request_id_="req-xss-0001",
              metadata={"location": XSS, "old": {"name": XSS}, "new": {"name": "ok"}, XSS: [XSS]}),
    ])[XSS]


@pytest.mark.parametrize("url", [VIEWER, "{detail}", ERRORS, f"{ERRORS}?fingerprint={'x' * 32}",
                                 f"{VIEWER}?search={XSS}"])
def test_text_from_events_is_escaped(admin_client, hostile, url):
    body = page_text(admin_client.get(url.format(detail=f"{VIEWER}{hostile}")))
    assert XSS_ESCAPED in body
    assert XSS not in body
    assert "<script>" not in body.replace('<script src="', "")


def test_large_results_show_a_lower_bound_and_page_by_cursor(app, admin_client):
    app.config["AUDIT_COUNT_LIMIT"] = 15
    insert_events(app, [event(f"many-{i:02d}", minutes_ago=i) for i in range(30)])
    first = admin_client.get(f"{VIEWER}?search=many-&limit=10")
    body = page_text(first)
    assert "1–10 of 15+ events" in re.sub(r"<[^>]+>", "", body)
    assert '<span class="page-link" aria-disabled="true">Last »</span>' in body
    seen = descriptions(first)
    href = re.search(r'href="([^"]+)" rel="next"', body).group(1).replace("&amp;", "&")
    while True:
        page = admin_client.get(href)
        seen += descriptions(page)
        match = re.search(r'href="([^"]+)" rel="next"', page_text(page))
        if not match:
            break
        href = match.group(1).replace("&amp;", "&")
    assert seen == [f"many-{i:02d}" for i in range(30)]


def test_a_tampered_cursor_is_a_422_with_a_way_back(admin_client):
    response = admin_client.get(f"{VIEWER}?cursor=forged")
    assert response.status_code == 422
    assert "start again from the first page" in page_text(response)


def test_a_filter_given_twice_is_a_422_in_the_viewer(admin_client):
    response = admin_client.get(f"{VIEWER}?status=SUCCESS&status=FAILURE")
    assert response.status_code == 422
    assert "<strong>status</strong>: Give status once; it was given 2 times." in page_text(response)


def test_the_chart_counts_each_error_on_its_utc_day(app, audit_rows):
    from datetime import UTC, datetime

    from audit_portal.audit.read.dashboard import errors_per_day
    from audit_portal.audit.read.query import AuditFilters
    from audit_portal.audit.record.events import build_event
    from audit_portal.audit.write.store import store_events
    from audit_portal.extensions import db

    moments = [datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=UTC), datetime(2026, 3, 2, 0, 0, 0, tzinfo=UTC),
               datetime(2026, 3, 2, 12, 0, tzinfo=UTC), datetime(2026, 3, 3, 0, 0, 1, tzinfo=UTC)]
    with app.app_context():
        store_events(lambda: db.engine.begin(), [
            build_event("ERROR_OCCURRED", "SYSTEM", None, "boom", timestamp=when, status="ERROR",
                        severity="CRITICAL" if i == 2 else "ERROR", error_type="ValueError", fingerprint="f" * 64)
            for i, when in enumerate(moments)])
        counts = errors_per_day(AuditFilters(date_from=datetime(2026, 3, 1, tzinfo=UTC),
                                             date_to=datetime(2026, 3, 4, tzinfo=UTC)))
    assert [day.isoformat() for day in counts.days] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert counts.series["ERROR"] == [1, 1, 1]
    assert counts.series["CRITICAL"] == [0, 1, 0]
    assert counts.total == 4


@pytest.mark.parametrize("status", ["SUCCESS", "FAILURE"])
def test_the_dashboard_refuses_a_status_other_than_error(admin_client, errors_sample, status):
    """The same rule and message as the API's error list (it once showed errors for any status)."""
    response = admin_client.get(f"{ERRORS}?status={status}")
    assert response.status_code == 422
    assert ("<strong>status</strong>: This list holds only ERROR events: leave status out, or give ERROR."
            in page_text(response))
    assert 'data-testid="error-groups"' not in page_text(response)


def test_the_dashboard_takes_status_error(admin_client, errors_sample):
    response = admin_client.get(f"{ERRORS}?status=error")
    assert response.status_code == 200
    assert len(_group_rows(page_text(response))) == 2


def test_the_dashboard_refuses_a_cursor(admin_client, errors_sample):
    """Its groups page by skip: a cursor would be ignored, so it is an unknown parameter there."""
    response = admin_client.get(f"{ERRORS}?cursor=abc")
    assert response.status_code == 422
    message = re.search(r"<strong>cursor</strong>: ([^<]+)", page_text(response)).group(1)
    assert message.startswith("Unknown parameter; the parameters are: date_from,")
    assert "skip, limit" in message and "cursor" not in message


@pytest.mark.parametrize("path", [VIEWER, ERRORS])
def test_a_422_page_keeps_the_valid_page_size_and_user(admin_client, make_user, path):
    """Re-submitting the form after fixing the bad filter keeps what was right."""
    bob_id = make_user("bob")
    response = admin_client.get(f"{path}?limit=100&severity=FATAL&user_id={bob_id}")
    assert response.status_code == 422
    body = page_text(response)
    assert '<option value="100" selected>' in body
    assert "bob" in body[body.index('data-testid="active-filters"'):]


def test_the_viewer_and_the_api_give_the_same_messages(app, admin_client, client, admin_id):
    """One set of input rules: the viewer parses its query string with the API's schema."""
    token = make_token(app, admin_id)
    for query in ("skip=-1", "status=nope", "date_from=yesterday", "bogus=1", "skip=1&cursor=x&limit=10"):
        api = client.get(f"/api/v1/audit-logs/?{query}", headers=bearer(token))
        page = html.unescape(page_text(admin_client.get(f"{VIEWER}?{query}")))
        if query.startswith("skip=1&cursor"):  # the viewer's Next link carries skip beside the cursor
            assert api.status_code == 422 and "Give either skip or cursor" in api.json["errors"]["cursor"][0]
            assert "Not a valid cursor" in page
            continue
        assert api.status_code == 422, query
        for name, messages in api.json["errors"].items():
            # The API alone takes the live tail's since_id and tail (the viewer's tail polls the API).
            text = " ".join(messages).replace(", since_id, tail.", ".")
            assert f"<strong>{name}</strong>: {text}" in page, query
