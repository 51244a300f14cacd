"""flows.restore reloads exactly the asked date range from warm storage into Redis (replay namespace by default)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import redis

from flows import restore as restore_module
from flows.archive import archive_dataset
from flows.context import FlowContext
from flows.restore import restore
from headwater import audit, retention
from headwater.keys import Keys
from headwater.timeframes import DAY_MS

from .conftest import CountingBlobStore
from .seed import NOW_MS, OLD_DAYS, TODAY_MS, seed_bars, seed_posts, ts_range


def _labels(info: dict) -> dict:
    labels = info[b"labels"]
    return labels if isinstance(labels, dict) else {k: v for k, v in labels}


def _day(days_ago: int) -> date:
    return datetime.fromtimestamp((TODAY_MS - days_ago * DAY_MS) / 1000, UTC).date()


@pytest.fixture
def archived(r: redis.Redis, keys: Keys, store: CountingBlobStore) -> dict[str, list[list[float]]]:
    written = seed_bars(r, keys)
    seed_posts(r, keys)
    ctx = FlowContext(r, keys, store, now_ms=lambda: NOW_MS)
    for dataset in ("bars", "signals", "news"):
        archive_dataset(ctx, dataset)
    return written


def test_restore_reloads_a_date_range_exactly(r: redis.Redis, keys: Keys, store: CountingBlobStore,
                                              archived: dict[str, list[list[float]]]) -> None:  # fmt: skip
    start, end = _day(99), _day(97)  # 3 of the 6 archived days
    report = restore(r, keys, store, "bars", "AAPL", start, end)
    replay = keys.replay()
    lo = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp() * 1000)
    hi = int(datetime(end.year, end.month, end.day, tzinfo=UTC).timestamp() * 1000) + DAY_MS
    assert report.keys == 11 and report.rows == report.verified == 33 and report.rejected == 0 and not report.errors
    for key, points in archived.items():
        parsed = keys.parse(key)
        assert parsed is not None
        if parsed.family == "sentiment":
            continue
        replay_key = replay.build(parsed)
        assert ts_range(r, replay_key) == [p for p in points if lo <= p[0] < hi]
        assert 0 < r.ttl(replay_key) <= 7 * 86_400
    info = r.execute_command("TS.INFO", replay.bar("AAPL", "1d", "close"))
    assert info[b"retentionTime"] == 0 and info[b"duplicatePolicy"] == b"last"
    assert _labels(info)[b"replay"] == b"1" and _labels(info)[b"kind"] == b"bar"
    # the live series only hold the hot window; nothing was written there
    assert ts_range(r, keys.bar("AAPL", "1d", "close"), "-", retention.cutoff_ms("bars", NOW_MS) - 1) == []
    again = restore(r, keys, store, "bars", "AAPL", start, end)  # idempotent
    assert again.rows == report.rows
    assert ts_range(r, replay.bar("AAPL", "1d", "close")) == [p for p in archived[keys.bar("AAPL", "1d", "close")] if lo <= p[0] < hi]
    events = [f for _, f in r.xrange(audit.audit_log_key(keys)) if f[b"event"] == b"restored"]
    assert len(events) == 2 and events[0][b"dataset"] == b"bars"


def test_restore_news_and_signals(r: redis.Redis, keys: Keys, store: CountingBlobStore,
                                  archived: dict[str, list[list[float]]]) -> None:  # fmt: skip
    replay = keys.replay()
    news = restore(r, keys, store, "news", "AAPL", _day(45), _day(30))
    assert news.rows == news.verified == 2
    assert r.hget(replay.article("old1"), "title") == b"Title old1" and r.hget(replay.article("old1"), "blob") == b"\xff\xfe binary"
    assert [m.decode() for m in r.zrange(replay.news_index("AAPL"), 0, -1)] == ["old1", "old2"]
    assert not r.exists(keys.article("old1"))  # the live namespace is untouched
    only_one_day = restore(r, keys, store, "news", "AAPL", _day(35), _day(35))
    assert only_one_day.rows == 1
    signals = restore(r, keys, store, "signals", "AAPL", _day(100), _day(95))
    sentiment = archived[keys.sentiment("AAPL", "news")][: len(OLD_DAYS)]
    assert signals.rows == len(OLD_DAYS) and ts_range(r, replay.sentiment("AAPL", "news")) == sentiment


def test_restore_into_live_counts_what_timeseries_rejects(r: redis.Redis, keys: Keys, store: CountingBlobStore,
                                                          archived: dict[str, list[list[float]]]) -> None:  # fmt: skip
    """Live series measure RETENTION from their newest sample: history older than that is refused, and said so."""
    r.execute_command("TS.ALTER", keys.bar("AAPL", "1d", "close"), "RETENTION", 30 * DAY_MS)
    report = restore(r, keys, store, "bars", "AAPL", _day(100), _day(95), timeframe="1d", into="live")
    assert report.rejected == len(OLD_DAYS) and report.rows == 10 * len(OLD_DAYS) and report.errors


def test_cli(r: redis.Redis, keys: Keys, ops_env: None, archived: dict[str, list[list[float]]],
             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    args = ["--dataset", "bars", "--ticker", "aapl", "--from", _day(100).isoformat(), "--to", _day(90).isoformat(),
            "--timeframe", "1d", "--json"]  # fmt: skip
    assert restore_module.main(args) == 0
    out = capsys.readouterr().out
    assert '"rows":66' in out and '"rejected":0' in out
    with pytest.raises(SystemExit):
        restore_module.main(["--dataset", "bars", "--ticker", "AAPL", "--from", "2024-13-01", "--to", "2024-01-02"])
