"""Page through the audit log with a token, then export the same filtered set as CSV.

Usage: AUDIT_PORTAL_URL=http://127.0.0.1:5000 AUDIT_PORTAL_TOKEN=ap_... python fetch_audit_log.py [status]
Only the standard library is needed.
"""

import json
import os
import sys
import urllib.parse
import urllib.request

BASE = os.environ.get("AUDIT_PORTAL_URL", "http://127.0.0.1:5000").rstrip("/")
TOKEN = os.environ["AUDIT_PORTAL_TOKEN"]


def get(path: str, params: dict) -> urllib.request.addinfourl:
    url = f"{BASE}{path}?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})  # noqa: S310
    return urllib.request.urlopen(request, timeout=60)  # noqa: S310 - the URL is the portal's own


def all_events(**filters):
    """Every matching event, newest first, following next_cursor from page to page."""
    params = {**filters, "limit": 500}
    while True:
        with get("/api/v1/audit-logs/", params) as response:
            page = json.load(response)["data"]
        yield from page["items"]
        if not page["next_cursor"]:
            return
        params["cursor"] = page["next_cursor"]


def export_csv(path: str, **filters) -> None:
    with get("/api/v1/audit-logs/export", {**filters, "format": "csv"}) as response, open(path, "wb") as out:
        while chunk := response.read(1 << 16):
            out.write(chunk)


if __name__ == "__main__":
    filters = {"status": sys.argv[1]} if len(sys.argv) > 1 else {}
    count = 0
    for event in all_events(**filters):
        count += 1
        if count <= 5:
            print(event["timestamp"], event["actor"], event["action_type"], event["description"])
    print(f"{count} events")
    export_csv("audit-export.csv", **filters)
    print("exported to audit-export.csv")
