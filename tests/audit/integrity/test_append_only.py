"""Append-only storage: no route edits or deletes an event, and on PostgreSQL the triggers created by the
migrations refuse UPDATE, DELETE and TRUNCATE on the audit tables, except the retention purge and the
ON DELETE SET NULL of a deleted user."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from audit_portal import create_app
from audit_portal.audit.record.enums import ActionType
from audit_portal.extensions import db
from audit_portal.users import services as user_services
from audit_portal.users.models import User

from ..chain_support import CHAIN, LOGS, count_rows, record_events, row, seal, tamper

EDITING_METHODS = {"PUT", "PATCH", "DELETE"}
PERSONAL = ("username", "ip_address", "user_agent", "description", "metadata")
AUDIT_PREFIXES = ("/api/v1/audit-logs", "/admin/audit-logs")


# -- no route edits an event (every database) --------------------------------------------------


def test_no_route_under_the_audit_log_accepts_put_patch_or_delete(app):
    rules = [r for r in app.url_map.iter_rules() if r.rule.startswith(AUDIT_PREFIXES)]
    assert len(rules) >= 8, [r.rule for r in rules]  # the viewer, detail, errors, export, API, integrity
    assert [(r.rule, sorted(r.methods & EDITING_METHODS)) for r in rules if r.methods & EDITING_METHODS] == []
    # The state-changing routes there run a verification and place or release legal holds (they write new events and
    # holds, and edit none), and decide an erasure request (four eyes: the one change of stored events besides the
    # purge, test_erasure.py).
    assert sorted(r.rule for r in rules if "POST" in r.methods) == [
        "/admin/audit-logs/integrity/erasure-requests/<int:request_id>/approve",
        "/admin/audit-logs/integrity/erasure-requests/<int:request_id>/reject",
        "/admin/audit-logs/integrity/holds", "/admin/audit-logs/integrity/holds/<int:hold_id>/release",
        "/admin/audit-logs/integrity/verify", "/api/v1/audit-logs/holds/",
        "/api/v1/audit-logs/holds/<int:hold_id>/release"]


def test_an_admin_cannot_edit_or_delete_an_event_through_the_api(app, admin_client):
    [audit_id] = record_events(app, 1)
    before = row(app, audit_id)
    for method in ("put", "patch", "delete"):
        for url in (f"/api/v1/audit-logs/{audit_id}", f"/admin/audit-logs/{audit_id}"):
            response = getattr(admin_client, method)(url, json={"description": "edited"})
            assert response.status_code == 405, (method, url, response.status_code)
    assert row(app, audit_id) == before


# -- PostgreSQL: the migrations' triggers ------------------------------------------------------


@pytest.fixture(scope="module")
def migrated_app(postgres_url, tmp_path_factory):
    """An app on a fresh PostgreSQL database built by the real migrations (`flask db upgrade`)."""
    if not postgres_url:
        pytest.skip("needs PostgreSQL (TEST_DATABASE_URL)")
    base = make_url(postgres_url)
    name = f"{base.database}_migrated"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    app = create_app({"APP_ENV": "testing", "SECRET_KEY": "test-secret-key-that-is-long-enough-000000",
                      "SQLALCHEMY_DATABASE_URI": base.set(database=name).render_as_string(hide_password=False),
                      "AUDIT_DATA_DIR": str(tmp_path_factory.mktemp("migrated-audit-data"))})
    upgrade = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert upgrade.exit_code == 0, upgrade.output
    yield app
    app.extensions["audit_writer"].close()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def app_sql(app, statement: str, purge: bool = False, erasure: bool = False, **params) -> int:
    """Run one statement on the application's own connection, in its own transaction (with the purge's or the
    erasure's switch on, if asked)."""
    with app.app_context(), db.engine.begin() as conn:
        if purge:
            conn.execute(text("SET LOCAL audit_portal.purge = 'on'"))
        if erasure:
            conn.execute(text("SET LOCAL audit_portal.erasure = 'on'"))
        return conn.execute(text(statement), params).rowcount


@pytest.mark.postgres_only
class TestPostgresTriggers:
    def test_update_of_an_event_is_refused(self, migrated_app):
        [audit_id] = record_events(migrated_app, 1)
        before = row(migrated_app, audit_id)
        with pytest.raises(DBAPIError, match="audit_logs is append-only: UPDATE refused"):
            app_sql(migrated_app, "UPDATE audit_logs SET description = 'edited' WHERE id = :id", id=audit_id)
        # Nulling the user together with another change is not a user deletion: refused as well.
        with pytest.raises(DBAPIError, match="UPDATE refused"):
            app_sql(migrated_app, "UPDATE audit_logs SET user_id = NULL, status = 'FAILURE' WHERE id = :id",
                    id=audit_id)
        assert row(migrated_app, audit_id) == before

    def test_delete_and_truncate_are_refused(self, migrated_app):
        [audit_id] = record_events(migrated_app, 1)
        with pytest.raises(DBAPIError, match="audit_logs is append-only: DELETE refused"):
            app_sql(migrated_app, "DELETE FROM audit_logs WHERE id = :id", id=audit_id)
        with pytest.raises(DBAPIError, match="audit_logs is append-only: TRUNCATE refused"):
            app_sql(migrated_app, "TRUNCATE audit_logs")
        assert count_rows(migrated_app, LOGS, LOGS.c.id == audit_id) == 1

    def test_delete_is_allowed_only_inside_a_purge_transaction(self, migrated_app):
        first, second = record_events(migrated_app, 2)
        assert app_sql(migrated_app, "DELETE FROM audit_logs WHERE id = :id", purge=True, id=first) == 1
        # SET LOCAL ends with its transaction: the next one on a pooled connection is refused again.
        with pytest.raises(DBAPIError, match="DELETE refused"):
            app_sql(migrated_app, "DELETE FROM audit_logs WHERE id = :id", id=second)
        assert count_rows(migrated_app, LOGS, LOGS.c.id.in_([first, second])) == 1

    def test_the_triggers_refuse_changes_on_every_partition(self, migrated_app):
        """Each month of audit_logs is a table of its own that can be named directly: the one the migration made
        and one made on demand later (an event 800 days old) refuse UPDATE, DELETE and TRUNCATE alike, with
        messages naming audit_logs."""
        [old] = record_events(migrated_app, 1, days_ago=800, label="old-month")
        [new] = record_events(migrated_app, 1, label="this-month")
        with migrated_app.app_context(), db.engine.connect() as conn:
            months = dict(conn.execute(text(
                "SELECT tableoid::regclass::text, id FROM audit_logs WHERE id IN (:old, :new)"),
                {"old": old, "new": new}).all())
        assert len(months) == 2 and all(name.startswith("audit_logs_") for name in months)
        for month, audit_id in months.items():
            with pytest.raises(DBAPIError, match="audit_logs is append-only: UPDATE refused"):
                app_sql(migrated_app, f"UPDATE {month} SET description = 'edited' WHERE id = :id", id=audit_id)  # noqa: S608
            with pytest.raises(DBAPIError, match="audit_logs is append-only: DELETE refused"):
                app_sql(migrated_app, f"DELETE FROM {month} WHERE id = :id", id=audit_id)  # noqa: S608
            with pytest.raises(DBAPIError, match="audit_logs is append-only: TRUNCATE refused"):
                app_sql(migrated_app, f"TRUNCATE {month}")
        assert count_rows(migrated_app, LOGS, LOGS.c.id.in_([old, new])) == 2
        assert row(migrated_app, old)["description"] == "Changed old-month 0"

    def test_the_chain_table_refuses_update_delete_and_truncate(self, migrated_app):
        record_events(migrated_app, 2)
        assert seal(migrated_app).sealed >= 2  # INSERT is how sealing works: allowed
        with pytest.raises(DBAPIError, match="audit_chain is append-only: UPDATE refused"):
            app_sql(migrated_app, "UPDATE audit_chain SET link_hash = repeat('0', 64)")
        with pytest.raises(DBAPIError, match="audit_chain is append-only: DELETE refused"):
            app_sql(migrated_app, "DELETE FROM audit_chain")
        with pytest.raises(DBAPIError, match="audit_chain is append-only: TRUNCATE refused"):
            app_sql(migrated_app, "TRUNCATE audit_chain")

    def test_only_an_erasure_may_change_the_personal_columns(self, migrated_app):
        """With the erasure's switch on, an UPDATE may blank username, IP address and user agent and rewrite the
        description and metadata (on every partition), and change a link's salts and commitments; nothing else.
        Without the switch, or after its transaction, every UPDATE is refused as before."""
        [audit_id] = record_events(migrated_app, 1)
        seal(migrated_app)
        before = row(migrated_app, audit_id)
        for statement in ("UPDATE audit_logs SET username = NULL WHERE id = :id",
                          "UPDATE audit_chain SET erased = '{}'::jsonb WHERE audit_log_id = :id"):
            with pytest.raises(DBAPIError, match="append-only: UPDATE refused"):
                app_sql(migrated_app, statement, id=audit_id)
        refused = {
            "UPDATE audit_logs SET status = 'FAILURE', description = 'x' WHERE id = :id": "audit_logs",
            "UPDATE audit_logs SET resource_id = 'other' WHERE id = :id": "audit_logs",
            "UPDATE audit_logs SET ip_address = '192.0.2.1' WHERE id = :id": "audit_logs",  # only to NULL
            "UPDATE audit_chain SET link_hash = repeat('0', 64) WHERE audit_log_id = :id": "audit_chain",
            "UPDATE audit_chain SET row_hash = repeat('0', 64), salts = NULL WHERE audit_log_id = :id": "audit_chain",
        }
        for statement, table in refused.items():
            with pytest.raises(DBAPIError, match=f"{table} is append-only: UPDATE refused \\(an erasure may change "
                                                 "only the personal columns\\)"):
                app_sql(migrated_app, statement, erasure=True, id=audit_id)
        with pytest.raises(DBAPIError, match="DELETE refused"):
            app_sql(migrated_app, "DELETE FROM audit_logs WHERE id = :id", erasure=True, id=audit_id)
        assert row(migrated_app, audit_id) == before
        with migrated_app.app_context(), db.engine.connect() as conn:
            link = conn.execute(select(CHAIN.c.salts, CHAIN.c.erased).where(CHAIN.c.audit_log_id == audit_id)).one()
        try:
            self._erase_by_hand(migrated_app, audit_id, before)
        finally:  # the other tests of this module share the database, and verify it (with the old chain's rules)
            tamper(migrated_app, update(LOGS).where(LOGS.c.id == audit_id).values(
                       **{k: before[k] for k in PERSONAL}),
                   update(CHAIN).where(CHAIN.c.audit_log_id == audit_id).values(salts=link.salts, erased=link.erased))

    @staticmethod
    def _erase_by_hand(migrated_app, audit_id: int, before: dict) -> None:
        """What ``integrity/erasure.py`` does, by hand: allowed inside the switch."""
        assert app_sql(migrated_app, "UPDATE audit_logs SET username = NULL, ip_address = NULL, user_agent = NULL, "
                       "description = '[erased] did it', metadata = '{}'::jsonb WHERE id = :id",
                       erasure=True, id=audit_id) == 1
        assert app_sql(migrated_app, "UPDATE audit_chain SET salts = '{}'::jsonb, erased = '{\"metadata\": \"ab\"}'"
                       "::jsonb WHERE audit_log_id = :id", erasure=True, id=audit_id) == 1
        with migrated_app.app_context(), db.engine.connect() as conn:
            month = conn.scalar(text("SELECT tableoid::regclass::text FROM audit_logs WHERE id = :id"), {"id": audit_id})
        assert app_sql(migrated_app, f"UPDATE {month} SET description = 'partition' WHERE id = :id",  # noqa: S608
                       erasure=True, id=audit_id) == 1
        after = row(migrated_app, audit_id)
        assert (after["username"], after["description"], after["metadata"]) == (None, "partition", {})
        assert {k: v for k, v in after.items() if k not in PERSONAL} == \
            {k: v for k, v in before.items() if k not in PERSONAL}
        with pytest.raises(DBAPIError, match="UPDATE refused"):  # the switch ended with its transaction
            app_sql(migrated_app, "UPDATE audit_logs SET description = 'again' WHERE id = :id", id=audit_id)

    def test_deleting_a_user_still_works_and_verifies(self, migrated_app):
        with migrated_app.app_context():
            boss = user_services.create_user(None, username="boss", email="boss@example.com",
                                             password="s3cure-Passw0rd!", role="admin")
            carol = user_services.create_user(None, username="carol", email="carol@example.com",
                                              password="s3cure-Passw0rd!", role="user")
            db.session.commit()
            boss_id, carol_id = boss.id, carol.id
        ids = record_events(migrated_app, 2, user_id=carol_id)
        seal(migrated_app)
        with migrated_app.app_context():
            user_services.delete_user(db.session.get(User, boss_id), db.session.get(User, carol_id))
            db.session.commit()
        assert [row(migrated_app, i)["user_id"] for i in ids] == [None, None]
        assert [row(migrated_app, i)["username"] for i in ids] == ["carol", "carol"]
        result = migrated_app.test_cli_runner().invoke(args=["audit", "verify"])
        assert result.exit_code == 0, result.output

    def test_purge_and_verify_work_through_the_triggers(self, migrated_app):
        old = record_events(migrated_app, 3, days_ago=4000, label="ancient")
        runner = migrated_app.test_cli_runner()
        # Everything recorded by earlier tests in this module is recent, and chained before these: make the
        # purge reach them by purging the prefix up to now.
        purged = runner.invoke(args=["audit", "purge", "--older-than-days", "0", "--yes"])
        assert purged.exit_code == 0, purged.output
        assert count_rows(migrated_app, LOGS, LOGS.c.id.in_(old)) == 0
        assert count_rows(migrated_app, LOGS, LOGS.c.action_type == ActionType.RETENTION_PURGE.value) >= 1
        verified = runner.invoke(args=["audit", "verify"])
        assert verified.exit_code == 0, verified.output

    def test_a_superuser_who_switches_the_triggers_off_is_still_caught_by_verify(self, migrated_app):
        [audit_id] = record_events(migrated_app, 1)
        seal(migrated_app)
        original = row(migrated_app, audit_id)["description"]
        tamper(migrated_app, update(LOGS).where(LOGS.c.id == audit_id).values(description="edited"))
        assert row(migrated_app, audit_id)["description"] == "edited"
        try:
            result = migrated_app.test_cli_runner().invoke(args=["audit", "verify"])
        finally:  # the other tests of this module share the database
            tamper(migrated_app, update(LOGS).where(LOGS.c.id == audit_id).values(description=original))
        assert result.exit_code == 1, result.output
        assert f"Event {audit_id}" in result.output and "was changed" in result.output
        with migrated_app.app_context(), db.engine.connect() as conn:
            assert conn.scalar(select(CHAIN.c.seq).where(CHAIN.c.audit_log_id == audit_id)) is not None
