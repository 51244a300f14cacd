"""Redis contents the archive/restore tests start from, shaped the way the pipeline's writers store them."""

from __future__ import annotations

import time

import redis

from headwater import retention
from headwater.keys import AGG_FIELDS, BAR_FIELDS, Keys
from headwater.storage.timeseries import ensure_series
from headwater.timeframes import DAY_MS

NOW_MS = int(time.time() * 1000)
TODAY_MS = NOW_MS - NOW_MS % DAY_MS
OLD_DAYS = [100, 99, 98, 97, 96, 95]  # outside the 90-day hot window of bars
RECENT_DAYS = [10, 9, 8]


def _value(field: str, day: int) -> float:
    return round(100 + day * 1.25 + BAR_FIELDS.index(field) * 0.5, 4) if field in BAR_FIELDS else 101.5 + day


def seed_bars(r: redis.Redis, k: Keys, ticker: str = "AAPL") -> dict[str, list[list[float]]]:
    """Daily bars (compacted and Alpha Vantage) and a sentiment series, old and recent, as the writers make them."""
    written: dict[str, list[list[float]]] = {}
    series = [(k.bar(ticker, "1d", f), f) for f in BAR_FIELDS]
    series += [(k.provider_bar(ticker, "alphavantage", "1d", f), f) for f in AGG_FIELDS]
    for key, field in series:
        ensure_series(r, key, retention.retention_ms("bars"), {"ticker": ticker, "field": field, "kind": "bar"})
        points = [[TODAY_MS - d * DAY_MS, _value(field, d)] for d in OLD_DAYS + RECENT_DAYS]
        r.execute_command("TS.MADD", *[x for t, v in points for x in (key, int(t), v)])
        written[key] = points
    sentiment = k.sentiment(ticker, "news")
    ensure_series(r, sentiment, retention.retention_ms("bars"), {"ticker": ticker})
    points = [[TODAY_MS - d * DAY_MS + 3_600_000, 0.1 * (d % 7) - 0.3] for d in OLD_DAYS + RECENT_DAYS]
    r.execute_command("TS.MADD", *[x for t, v in points for x in (sentiment, int(t), v)])
    written[sentiment] = points
    return written


def ts_range(r: redis.Redis, key: str, a: int | str = "-", b: int | str = "+") -> list[list[float]]:
    return [[int(t), float(v)] for t, v in r.execute_command("TS.RANGE", key, a, b)]


def seed_posts(r: redis.Redis, k: Keys) -> dict[str, dict[bytes, bytes]]:
    """Articles as the news processor stores them: a hash per article and a per-ticker index by publish time."""
    articles = {
        "old1": (["AAPL", "MSFT"], TODAY_MS - 40 * DAY_MS + 5_000),
        "old2": (["AAPL"], TODAY_MS - 35 * DAY_MS),
        "new1": (["AAPL"], TODAY_MS - 5 * DAY_MS),
    }
    stored = {}
    pipe = r.pipeline(transaction=True)
    for article_id, (tickers, published) in articles.items():
        fields = {b"title": f"Title {article_id}".encode(), b"url": f"https://example.com/{article_id}".encode(),
                  b"published_ms": str(published).encode(), b"tickers": ",".join(tickers).encode(),
                  b"blob": b"\xff\xfe binary"}  # fmt: skip
        pipe.hset(k.article(article_id), mapping=fields)
        retention.expire(pipe, "news", k.article(article_id))
        for t in tickers:
            pipe.zadd(k.news_index(t), {article_id: published})
        stored[article_id] = fields
    pipe.zadd(k.news_index("AAPL"), {"gone": TODAY_MS - 45 * DAY_MS})  # its hash already expired
    pipe.execute()
    return stored
