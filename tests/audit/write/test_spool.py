"""The local spool: events that could not reach the database survive on disk until they are replayed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from audit_portal.audit.record.enums import ActionType, ResourceType
from audit_portal.audit.record.events import build_event
from audit_portal.audit.write.spool import SPOOL_NAME, Spool


def _events(count: int) -> list[dict]:
    return [
        build_event(ActionType.REQUEST, ResourceType.REQUEST, None, f"POST /x/{i} answered 201",
                    timestamp=datetime(2026, 5, 1, 12, 0, i, 123456, tzinfo=UTC), metadata={"n": i},
                    http_method="POST", path=f"/x/{i}", status_code=201, duration_ms=i)
        for i in range(count)
    ]


def test_spooled_events_come_back_exactly_as_they_were(tmp_path):
    spool = Spool(tmp_path / "data", max_bytes=1_000_000)
    events = _events(3)
    assert spool.append(events) == 3
    assert (tmp_path / "data" / SPOOL_NAME).exists()
    replayed: list[dict] = []
    assert spool.replay(replayed.extend) == 3
    assert replayed == events  # timestamps come back as the same timezone-aware datetimes
    assert spool.pending_bytes() == 0


def test_replay_writes_in_batches(tmp_path):
    spool = Spool(tmp_path, max_bytes=1_000_000)
    spool.append(_events(7))
    batches: list[int] = []
    assert spool.replay(lambda batch: batches.append(len(batch)), batch_size=3) == 7
    assert batches == [3, 3, 1]


def test_a_failed_replay_keeps_every_event(tmp_path):
    spool = Spool(tmp_path, max_bytes=1_000_000)
    spool.append(_events(2))

    def database_down(batch):
        raise ConnectionError("database unavailable")

    with pytest.raises(ConnectionError):
        spool.replay(database_down)
    replayed: list[dict] = []
    assert spool.replay(replayed.extend) == 2


def test_an_unreadable_line_does_not_block_the_others(tmp_path):
    spool = Spool(tmp_path, max_bytes=1_000_000)
    spool.append(_events(1))
    with open(spool.path, "a", encoding="utf-8") as fh:
        fh.write('{"half an event\n')
    spool.append(_events(2)[1:])
    replayed: list[dict] = []
    assert spool.replay(replayed.extend) == 2
    assert [e["path"] for e in replayed] == ["/x/0", "/x/1"]


def test_a_full_spool_refuses_new_events_and_keeps_the_old(tmp_path):
    spool = Spool(tmp_path, max_bytes=1500)
    assert spool.append(_events(2)) == 2
    size = spool.pending_bytes()
    assert spool.append(_events(5)) == 0
    assert spool.pending_bytes() == size


def test_every_append_and_every_replay_is_fsynced(tmp_path, monkeypatch):
    import audit_portal.audit.write.spool as spool_module

    synced: list[int] = []
    real_fsync = spool_module.os.fsync
    monkeypatch.setattr(spool_module.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    spool = Spool(tmp_path, max_bytes=1_000_000)
    spool.append(_events(2))
    assert len(synced) == 1  # the events are on disk before append returns
    spool.replay(lambda batch: None)
    assert len(synced) == 2  # and so is the emptied spool


def test_a_full_spool_says_so_in_the_log(tmp_path, caplog):
    spool = Spool(tmp_path, max_bytes=1500)
    spool.append(_events(2))
    with caplog.at_level("WARNING", logger="audit_portal.audit.write.spool"):
        assert spool.append(_events(5)) == 0
    [record] = [r for r in caplog.records if r.name == "audit_portal.audit.write.spool"]
    assert record.levelname == "WARNING"
    message = record.getMessage()
    assert "is full" in message and "AUDIT_SPOOL_MAX_BYTES=1500" in message and "5 events dropped" in message
