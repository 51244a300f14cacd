"""The audit log is append-only: Redis buffer -> a new blob per flush, never an overwrite."""

from __future__ import annotations

import time

import pytest
import redis

from headwater import audit
from headwater.keys import Keys

from .conftest import CountingBlobStore


def test_events_are_validated(r: redis.Redis, keys: Keys) -> None:
    with pytest.raises(ValueError, match="unknown audit event"):
        audit.record(r, keys, "edited", actor="me", dataset="news")
    with pytest.raises(ValueError, match="actor"):
        audit.record(r, keys, "ingested", actor="", dataset="news")
    assert r.xlen(audit.audit_log_key(keys)) == 0
    assert audit.audit_log_key(keys) == f"{keys.prefix}audit:log"


def test_two_flushes_make_two_blobs_and_the_first_never_changes(r: redis.Redis, keys: Keys, store: CountingBlobStore) -> None:
    cold = store.settings.cold_container
    audit.record(r, keys, "ingested", actor="flow:news_scraper", dataset="news", count=120, detail={"tickers": 3})
    audit.record(r, keys, "quarantined", actor="flow:market_data_fetcher", dataset="bars", count=2,
                 detail={"expectation": "expect_column_values_to_be_between"})  # fmt: skip
    first = audit.flush(r, keys, store)
    assert first.events == 2 and len(first.blobs) == 1 and r.xlen(audit.audit_log_key(keys)) == 0
    path = first.blobs[0]
    assert path.startswith(f"audit/{time.strftime('%Y/%m/%d/%H', time.gmtime())}-") and path.endswith(".jsonl")
    before = store.service.get_blob_client(cold, path).get_blob_properties()
    content = store.get(cold, path)

    audit.record(r, keys, "deleted", actor="flow:archive", dataset="news", count=120)
    second = audit.flush(r, keys, store)
    assert second.events == 1 and len(second.blobs) == 1 and second.blobs[0] != path
    after = store.service.get_blob_client(cold, path).get_blob_properties()
    assert store.get(cold, path) == content and after.etag == before.etag
    assert sorted(store.list(cold, "audit/")) == sorted([path, second.blobs[0]])
    assert audit.flush(r, keys, store).events == 0  # nothing buffered: no blob
    events = audit.read_events(store)
    assert [(e["event"], e["actor"], e["dataset"], e["count"]) for e in events] == [
        ("ingested", "flow:news_scraper", "news", 120),
        ("quarantined", "flow:market_data_fetcher", "bars", 2),
        ("deleted", "flow:archive", "news", 120),
    ]
    assert events[0]["detail"] == {"tickers": 3} and all(e["ts"] > 0 and e["id"] for e in events)


def test_a_flush_never_overwrites_an_existing_blob(r: redis.Redis, keys: Keys, store: CountingBlobStore) -> None:
    entry = audit.record(r, keys, "validated", actor="gx", dataset="bars", count=10).decode()
    path = audit.blob_path(audit._hour_of(entry), entry, entry)
    store.service.get_blob_client(store.settings.cold_container, path).upload_blob(b"someone else's line\n")
    with pytest.raises(audit.AuditError, match="refusing to overwrite"):
        audit.flush(r, keys, store)
    assert r.xlen(audit.audit_log_key(keys)) == 1  # still buffered: nothing lost
    assert store.get(store.settings.cold_container, path) == b"someone else's line\n"


def test_a_retried_flush_is_harmless(r: redis.Redis, keys: Keys, store: CountingBlobStore,
                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A flush that crashed after its upload (before trimming the stream) re-uploads the same blob: accepted."""
    audit.record(r, keys, "archived", actor="flow:archive", dataset="bars", count=5)
    monkeypatch.setattr(r, "xtrim", lambda *a, **k: (_ for _ in ()).throw(redis.ConnectionError("crash")))
    with pytest.raises(redis.ConnectionError):
        audit.flush(r, keys, store)
    monkeypatch.undo()
    result = audit.flush(r, keys, store)
    assert result.events == 1 and len(store.list(store.settings.cold_container, "audit/")) == 1
    assert len(audit.read_events(store)) == 1
