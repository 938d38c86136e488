"""The latency cases of ``bench/scale.py``: the filters each case sends to the JSON list API and the HTML viewer,
and the cases only one side has (the error dashboard, the histogram API).

The query-language cases (``q``, issue 18) pick values the demo seed (``flask demo seed``) fills, so that each
selects a realistic share of the log: the seed spreads events over 18 addresses (16 in ``10.0.0.0/16``, one IPv6,
``192.0.2.9``), so ``10.0.1.0/24`` holds 4 of them (about 22% of the events); ``/admin/users*`` is two of its 8
paths, which only request and error events carry (about 10%); ``-action:request`` keeps about 70%; a failed
login has no actor and types one of ``admin``, ``root``, ``administrator``, ``guest`` or a user's name, so the
three-term query keeps about three quarters of the failed logins (about 5% of the log).
"""

from __future__ import annotations

from datetime import timedelta

from _common import query

SEARCH_WORD = "password"
#: The search language (``q``): one case per new filter kind (docs/scaling.md, "The search language").
QUERY_CASES = {
    "q: ip range /24": "ip:10.0.1.0/24",
    "q: path prefix": "path:/admin/users*",
    "q: negation": "-action:request",
    "q: three terms": "action:login_failed ip:10.0.0.0/8 -user:root",
}
#: The error dashboard (HTML only): the unfiltered page and a severity, answered from the error rollup. A rolling
#: 24 hours and a user filter need the events themselves (partial indexes of ERROR events serve them; their
#: cost follows the errors in the window or of the user, not the log's size alone): measured for information,
#: not held to the target.
DASHBOARD_CASES = {"errors: dashboard": {}, "errors: CRITICAL": {"severity": "CRITICAL"},
                   "errors: last 24 hours": {"date_from": "24h"},  # replaced by the time 24 hours before now
                   "errors: a user (info)": {"user_id": "5"}}
#: The histogram API (the viewer draws the same histogram above its list, so every viewer case includes it):
#: the default 50 buckets over the last 30 days, unfiltered and for one action.
HISTOGRAM_CASES = {"histogram: no filter": {}, "histogram: q action": {"q": "action:login_failed"}}
INFO_ONLY = {"errors: last 24 hours", "errors: a user (info)"}


def filter_cases(database_url: str) -> dict[str, dict]:
    """The filters of each case. The date range is the 7 days ending 3 days before the newest event."""
    newest = query(database_url, "SELECT max(timestamp) FROM audit_logs")[0][0]
    end = (newest - timedelta(days=3)).date()
    return {
        "no filter": {},
        "user": {"user_id": "5"},
        "action + 7 days": {"action_type": "LOGIN_FAILED", "date_from": (end - timedelta(days=7)).isoformat(),
                            "date_to": end.isoformat()},
        f"search '{SEARCH_WORD}'": {"search": SEARCH_WORD},
        **{name: {"q": q} for name, q in QUERY_CASES.items()},
    }
