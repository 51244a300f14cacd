"""Cold storage: Archive tier makes blobs unreadable until an explicit rehydrate; warm data expires by its date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis

from flows.cold_storage import (
    REHYDRATED_PREFIX,
    BlobArchivedError,
    blob_status,
    prune_warm,
    read_blob,
    rehydrate,
    tier_to_archive,
)
from headwater import audit
from headwater.keys import Keys

from .conftest import CountingBlobStore


@pytest.fixture
def archived_audit_blob(r: redis.Redis, keys: Keys, store: CountingBlobStore) -> tuple[str, bytes]:
    audit.record(r, keys, "deleted", actor="flow:archive", dataset="bars", count=66)
    path = audit.flush(r, keys, store).blobs[0]
    store.put(store.settings.cold_container, "compliance/2024/attestation.json", b'{"ok": true}')
    content = store.get(store.settings.cold_container, path)
    young = tier_to_archive(store)  # default: after 30 days -- these are seconds old
    assert young.moved == [] and young.examined == 2
    report = tier_to_archive(store, older_than_days=0)
    assert sorted(report.moved) == sorted([path, "compliance/2024/attestation.json"])
    assert tier_to_archive(store, older_than_days=0).already_archived == 2
    return path, content


def test_archived_blobs_are_unreadable_until_rehydrated(store: CountingBlobStore, archived_audit_blob: tuple[str, bytes]) -> None:
    path, content = archived_audit_blob
    cold = store.settings.cold_container
    assert blob_status(store, path)["tier"] == "Archive"
    with pytest.raises(BlobArchivedError, match="rehydrate"):
        read_blob(store, cold, path)
    with pytest.raises(audit.AuditError, match="rehydrate"):
        audit.read_events(store)
    result = rehydrate(store, path, priority="High")
    assert result.done and result.destination == f"{REHYDRATED_PREFIX}{path}" and result.tier == "Hot"
    assert read_blob(store, cold, result.destination) == content
    assert blob_status(store, path)["tier"] == "Archive"  # the archived original is untouched


def test_rehydrate_in_place(store: CountingBlobStore, archived_audit_blob: tuple[str, bytes]) -> None:
    path, content = archived_audit_blob
    result = rehydrate(store, path, in_place=True)
    assert result.done and result.destination == path
    assert read_blob(store, store.settings.cold_container, path) == content


def test_prune_warm_goes_by_the_date_of_the_data(store: CountingBlobStore) -> None:
    warm = store.settings.warm_container
    now = datetime(2026, 6, 15, tzinfo=UTC)
    for path in ("bars/1d/AAPL/2024/05.parquet", "bars/1d/AAPL/2024/06.parquet", "bars/1d/AAPL/2024/07.parquet",
                 "news/AAPL/2024-06-14.jsonl", "news/AAPL/2024-06-16.jsonl", "README.txt"):  # fmt: skip
        store.put(warm, path, b"x")
    dry = prune_warm(store, now=now, dry_run=True)
    assert sorted(dry.deleted) == ["bars/1d/AAPL/2024/05.parquet", "news/AAPL/2024-06-14.jsonl"]
    assert len(store.list(warm)) == 6
    report = prune_warm(store, now=now)  # 730 days before 2026-06-15 is 2024-06-15
    assert sorted(report.deleted) == sorted(dry.deleted)
    assert sorted(store.list(warm)) == ["README.txt", "bars/1d/AAPL/2024/06.parquet", "bars/1d/AAPL/2024/07.parquet",
                                        "news/AAPL/2024-06-16.jsonl"]  # fmt: skip
    assert prune_warm(store, now=now + timedelta(days=1)).deleted == []


def test_cli(r: redis.Redis, keys: Keys, store: CountingBlobStore, ops_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    import orjson

    from flows import cold_storage

    audit.record(r, keys, "ingested", actor="flow:news_scraper", dataset="news", count=3)
    assert cold_storage.main(["flush-audit"]) == 0
    path = orjson.loads(capsys.readouterr().out)["blobs"][0]
    assert cold_storage.main(["tier", "--older-than-days", "0"]) == 0
    assert orjson.loads(capsys.readouterr().out)["moved"] == [path]
    assert cold_storage.main(["status", path]) == 0
    assert orjson.loads(capsys.readouterr().out)["tier"] == "Archive"
    assert cold_storage.main(["rehydrate", path, "--priority", "High"]) == 0
    result = orjson.loads(capsys.readouterr().out)
    assert result["done"] and result["destination"] == f"{REHYDRATED_PREFIX}{path}"
    restored = [f for _, f in r.xrange(audit.audit_log_key(keys)) if f[b"event"] == b"restored"]
    assert len(restored) == 1 and restored[0][b"actor"] == b"cli:rehydrate"
    assert cold_storage.main(["run", "--no-prefect", "--older-than-days", "0"]) == 0
    run = orjson.loads(capsys.readouterr().out)
    assert run["audit"]["events"] == 1 and run["prune"]["deleted"] == []
