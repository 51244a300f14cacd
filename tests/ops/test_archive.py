"""The archive flow: data past its hot window ends up in warm Blob, verified, before Redis lets go of it."""

from __future__ import annotations

import io
import time

import orjson
import pyarrow.parquet as pq
import pytest
import redis

from flows.archive import ArchiveVerificationError, archive_dataset, posts_partition, record_to_hash
from flows.context import FlowContext
from headwater import audit, retention
from headwater.keys import AGG_FIELDS, BAR_FIELDS, Keys
from headwater.metrics import counters_key
from headwater.storage.blob import PutResult
from headwater.timeframes import DAY_MS

from .conftest import CountingBlobStore
from .seed import NOW_MS, OLD_DAYS, TODAY_MS, seed_bars, seed_posts, ts_range


def _parquet_rows(store: CountingBlobStore, path: str) -> list[dict]:
    return pq.read_table(io.BytesIO(store.get(store.settings.warm_container, path))).to_pylist()


def _audit_events(r: redis.Redis, k: Keys) -> list[dict]:
    return [{f.decode(): v.decode() for f, v in fields.items()} for _, fields in r.xrange(audit.audit_log_key(k))]


@pytest.fixture
def ctx(r: redis.Redis, keys: Keys, store: CountingBlobStore) -> FlowContext:
    return FlowContext(r, keys, store, actor="test:archive", now_ms=lambda: NOW_MS)


def test_old_bars_move_to_parquet_and_only_then_leave_redis(r: redis.Redis, keys: Keys, ctx: FlowContext,
                                                            store: CountingBlobStore) -> None:  # fmt: skip
    written = seed_bars(r, keys)
    cutoff = retention.cutoff_ms("bars", NOW_MS)
    report = archive_dataset(ctx, "bars")
    n_bar_series = len(BAR_FIELDS) + len(AGG_FIELDS)
    assert report.read == report.verified == report.deleted == len(OLD_DAYS) * n_bar_series
    assert report.errors == [] and report.skipped_changed == 0
    # Redis keeps exactly the hot window ...
    for key, points in written.items():
        if ":sentiment:" in key:
            continue
        assert ts_range(r, key) == [p for p in points if p[0] >= cutoff]
    # ... and the rest is in Blob, one Parquet file per ticker-month, values intact.
    paths = sorted(store.list(store.settings.warm_container, "bars/"))
    assert paths == sorted(report.paths)
    assert {p.rsplit("/", 2)[0] for p in paths} == {"bars/alphavantage/1d/AAPL", "bars/ticks/1d/AAPL"}
    rows = [row for p in paths for row in _parquet_rows(store, p)]
    assert len(rows) == 2 * len(OLD_DAYS)  # one row per (source, day): "ticks" (compacted) and "alphavantage"
    by_id = {(row["source"], row["ts"]): row for row in rows}
    for key, points in written.items():
        parsed = keys.parse(key)
        assert parsed is not None
        if parsed.family == "sentiment":
            continue
        source, field = parsed.source or "ticks", parsed.field
        for t, v in points:
            if t < cutoff:
                assert by_id[(source, t)][field] == v
                assert by_id[(source, t)]["ticker"] == "AAPL" and by_id[(source, t)]["timeframe"] == "1d"
    assert all(row["vwap"] is None for row in rows if row["source"] == "ticks")
    # the sentiment series is the "signals" dataset: untouched by a bars run
    assert ts_range(r, keys.sentiment("AAPL", "news")) == written[keys.sentiment("AAPL", "news")]
    events = _audit_events(r, keys)
    assert [(e["event"], e["dataset"], int(e["count"])) for e in events] == [
        ("archived", "bars", report.verified), ("deleted", "bars", report.deleted)]
    assert all(e["actor"] == "test:archive" for e in events)
    assert r.hlen(counters_key(keys)) == 2


def test_signals_archive_to_their_own_partitions(r: redis.Redis, keys: Keys, ctx: FlowContext,
                                                 store: CountingBlobStore) -> None:  # fmt: skip
    written = seed_bars(r, keys)
    report = archive_dataset(ctx, "signals")
    assert report.read == report.deleted == len(OLD_DAYS)
    rows = [row for p in store.list(store.settings.warm_container, "signals/") for row in _parquet_rows(store, p)]
    assert {(row["ts"], row["value"]) for row in rows} == {tuple(p) for p in written[keys.sentiment("AAPL", "news")][: len(OLD_DAYS)]}
    assert {(row["signal"], row["source"], row["ticker"]) for row in rows} == {("sentiment", "news", "AAPL")}


def test_rerun_writes_nothing_new(r: redis.Redis, keys: Keys, ctx: FlowContext, store: CountingBlobStore) -> None:
    written = seed_bars(r, keys)
    first = archive_dataset(ctx, "bars")
    assert first.blobs_written == len(store.writes) > 0
    store.writes.clear()
    second = archive_dataset(ctx, "bars")
    assert (second.read, second.blobs_written, second.deleted, store.writes) == (0, 0, 0, [])
    # A crash after the upload and before the delete leaves the samples in Redis: the next run finds its blobs
    # already identical (nothing rewritten), verifies them and deletes.
    for key, points in written.items():
        if ":sentiment:" not in key:
            old = [p for p in points if p[0] < retention.cutoff_ms("bars", NOW_MS)]
            r.execute_command("TS.MADD", *[x for t, v in old for x in (key, int(t), v)])
    third = archive_dataset(ctx, "bars")
    assert third.read == first.read and third.blobs_written == 0 and third.blobs_unchanged == first.partitions
    assert third.deleted == first.read and store.writes == []


class LosingBlobStore(CountingBlobStore):
    """Acknowledges uploads it never made -- what verification exists to catch."""

    def put(self, container: str, path: str, data: bytes, **kwargs: object) -> PutResult:  # type: ignore[override]
        return PutResult(url="lost", content_hash="0" * 64, written=True)


def test_failed_verification_deletes_nothing(r: redis.Redis, keys: Keys, store: CountingBlobStore,
                                             blob_connection_string: str) -> None:  # fmt: skip
    written = seed_bars(r, keys)
    losing = LosingBlobStore(store.settings, connection_string=blob_connection_string)
    ctx = FlowContext(r, keys, losing, actor="test:archive", now_ms=lambda: NOW_MS)
    with pytest.raises(ArchiveVerificationError) as failure:
        archive_dataset(ctx, "bars")
    assert failure.value.report.deleted == 0 and "missing" in str(failure.value)
    for key, points in written.items():
        assert ts_range(r, key) == points  # every sample still in Redis
    assert r.xlen(audit.audit_log_key(keys)) == 0
    # With a store that works, the next run archives everything.
    good = archive_dataset(FlowContext(r, keys, store, now_ms=lambda: NOW_MS), "bars")
    assert good.deleted == good.read > 0


def test_samples_written_meanwhile_are_not_deleted(r: redis.Redis, keys: Keys, ctx: FlowContext,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A series that changes between read and delete is left alone (WATCH); the next run archives the change."""
    import flows.archive as archive_module

    seed_bars(r, keys)
    changed_key = keys.bar("AAPL", "1d", "close")
    late_t = TODAY_MS - 97 * DAY_MS + 60_000  # a late sample, inside the archived range
    real_verify_read = archive_module._get_or_none
    calls = {"n": 0}

    def late_writer(*args: object) -> bytes | None:  # runs during verification: after the read, before the delete
        calls["n"] += 1
        if calls["n"] == 1:
            r.execute_command("TS.ADD", changed_key, late_t, 42.0)
        return real_verify_read(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(archive_module, "_get_or_none", late_writer)
    report = archive_dataset(ctx, "bars")
    assert report.skipped_changed == 1
    assert [42.0] == [v for t, v in ts_range(r, changed_key) if t == late_t]
    assert len(ts_range(r, changed_key, "-", retention.cutoff_ms("bars", NOW_MS) - 1)) == len(OLD_DAYS) + 1
    monkeypatch.undo()
    follow_up = archive_dataset(ctx, "bars")
    assert follow_up.read == len(OLD_DAYS) + 1 and follow_up.deleted == follow_up.read
    assert ts_range(r, changed_key, "-", retention.cutoff_ms("bars", NOW_MS) - 1) == []


def test_old_news_moves_to_jsonl_per_ticker_and_day(r: redis.Redis, keys: Keys, ctx: FlowContext,
                                                    store: CountingBlobStore) -> None:  # fmt: skip
    stored = seed_posts(r, keys)
    report = archive_dataset(ctx, "news")
    assert report.missing == 1 and report.read == report.verified == report.deleted == 3  # old1 x2 tickers, old2
    assert not r.exists(keys.article("old1")) and not r.exists(keys.article("old2")) and r.exists(keys.article("new1"))
    assert [m.decode() for m in r.zrange(keys.news_index("AAPL"), 0, -1)] == ["new1"]
    assert r.zcard(keys.news_index("MSFT")) == 0
    path = posts_partition("news", "MSFT", TODAY_MS - 40 * DAY_MS)
    lines = [orjson.loads(x) for x in store.get(store.settings.warm_container, path).splitlines()]
    assert [x["id"] for x in lines] == ["old1"] and lines[0]["fields"]["title"] == "Title old1"
    assert record_to_hash(lines[0]) == stored["old1"]
    assert len(store.list(store.settings.warm_container, "news/AAPL/")) == 2
    store.writes.clear()
    assert archive_dataset(ctx, "news").read == 0 and store.writes == []


def test_dry_run_changes_nothing(r: redis.Redis, keys: Keys, ctx: FlowContext, store: CountingBlobStore) -> None:
    written = seed_bars(r, keys)
    seed_posts(r, keys)
    bars = archive_dataset(ctx, "bars", dry_run=True)
    news = archive_dataset(ctx, "news", dry_run=True)
    assert bars.read == len(OLD_DAYS) * 11 and bars.blobs_written == bars.partitions > 0
    assert news.read == 3 and store.writes == [] and store.list(store.settings.warm_container) == []
    assert all(ts_range(r, key) == points for key, points in written.items())
    assert r.exists(keys.article("old1")) and r.xlen(audit.audit_log_key(keys)) == 0


def test_old_raw_documents_move_to_the_cool_tier(r: redis.Redis, keys: Keys, store: CountingBlobStore) -> None:
    raw = store.settings.raw_container
    store.put(raw, "sec/AAPL/10-K/0000320193-24-000123/aapl.htm", b"<html>10-K</html>")
    # 92 days after the upload (the blob's Last-Modified is Azurite's clock, not the seed's): past the 90 hot days
    # whatever the time of day
    later = int(time.time() * 1000) + 92 * DAY_MS
    ctx = FlowContext(r, keys, store, now_ms=lambda: later)
    report = archive_dataset(ctx, "documents")
    assert report.blobs_written == 1
    props = store.service.get_blob_client(raw, "sec/AAPL/10-K/0000320193-24-000123/aapl.htm").get_blob_properties()
    assert props.blob_tier == "Cool"
    assert store.get(raw, "sec/AAPL/10-K/0000320193-24-000123/aapl.htm") == b"<html>10-K</html>"  # still online
    assert archive_dataset(ctx, "documents").blobs_written == 0


def test_one_warm_layout_with_the_historical_backfiller(r: redis.Redis, keys: Keys, ctx: FlowContext,
                                                        store: CountingBlobStore, ops_env: None) -> None:  # fmt: skip
    """The archive merges into the partitions the backfiller writes (same paths, columns, session months)."""
    import pandas as pd

    from headwater.warm import bars_partition, bars_path, write_bars

    backfilled = pd.DataFrame([{"ticker": "AAPL", "timeframe": "1m", "source": "alphavantage", "ts": 1_706_734_800_000,
                                "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 100.0}])  # 2024-01-31 16:00 NY
    write_bars(ctx.store, ctx.warm, backfilled)  # what the backfiller's commit_history does with old history
    late = 1_706_761_800_000  # 2024-01-31 23:30 New York = 2024-02-01 04:30 UTC: still the January session
    path = bars_partition("alphavantage", "1m", "AAPL", late)
    assert path == bars_path("alphavantage", "1m", "AAPL", "2024/01") == "bars/alphavantage/1m/AAPL/2024/01.parquet"
    for field in AGG_FIELDS:
        key = keys.provider_bar("AAPL", "alphavantage", "1m", field)
        r.execute_command("TS.CREATE", key, "RETENTION", 0, "DUPLICATE_POLICY", "LAST")
        r.execute_command("TS.ADD", key, late, 7.0)
    report = archive_dataset(ctx, "bars")
    assert report.paths == [path] and report.deleted == len(AGG_FIELDS)
    rows = _parquet_rows(store, path)
    assert [(row["ts"], row["close"], row["vwap"]) for row in rows] == [(1_706_734_800_000, 1.5, None), (late, 7.0, 7.0)]


@pytest.mark.slow
def test_the_prefect_flow_archives_and_counts_its_outcome(r: redis.Redis, keys: Keys, store: CountingBlobStore,
                                                          ops_env: None, prefect_api_url: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from prefect.settings import PREFECT_API_URL, PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    import flows.archive as archive_module
    from flows.archive import archive

    monkeypatch.setattr(archive_module, "wall_clock_ms", lambda: NOW_MS)
    seed_bars(r, keys)
    seed_posts(r, keys)
    with temporary_settings(updates={PREFECT_API_URL: prefect_api_url, PREFECT_LOGGING_TO_API_ENABLED: False}):
        results = archive(datasets=["bars", "news"])
        rerun = archive(datasets=["bars", "news"])
    assert results["bars"]["deleted"] == len(OLD_DAYS) * 11 and results["news"]["deleted"] == 3
    assert store.list(store.settings.warm_container, "news/AAPL/")
    counters = {tuple(orjson.loads(k)[1][1]): float(v) for k, v in r.hgetall(counters_key(keys)).items()
                if orjson.loads(k)[0] == "flow_runs"}  # fmt: skip
    assert counters == {("state", "Completed"): 2.0}
    assert rerun["bars"]["read"] == rerun["bars"]["blobs_written"] == 0


def test_cli(r: redis.Redis, keys: Keys, store: CountingBlobStore, ops_env: None, capsys: pytest.CaptureFixture[str],
             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import flows.archive as archive_module

    monkeypatch.setattr(archive_module, "wall_clock_ms", lambda: NOW_MS)  # the seed's day, even across midnight
    seed_bars(r, keys)
    assert archive_module.main(["--no-prefect", "--dataset", "bars", "--dry-run", "--json"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out["bars"]["dry_run"] and out["bars"]["read"] == len(OLD_DAYS) * 11 and out["bars"]["deleted"] == 0
    assert store.list(store.settings.warm_container) == []
    assert archive_module.main(["--no-prefect", "--dataset", "bars", "--older-than-days", "98"]) == 0
    text = capsys.readouterr().out
    assert "22 read" in text and "22 deleted" in text  # days 100 and 99 x 11 series
    assert r.xlen(audit.audit_log_key(keys)) == 2
