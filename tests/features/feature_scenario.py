"""The feature tests' scenario: known inputs around ``T``, the values expected from them, and writers.

The scenario (ticker ``AAA``, plus document-only tickers) has hand-checkable values at ``T`` and "traps"
after ``T`` (absurd prices, volumes, scores and a filing accepted later) that would change every feature if
anything read past the point in time.
"""

from __future__ import annotations

import hashlib

import math
from dataclasses import dataclass

import numpy as np
import redis

from features.online_store import OnlineLayout
from headwater.keys import Keys
from headwater.storage.timeseries import TimeSeriesLayout, ensure_series
from headwater.timeframes import DAY_MS as DAY
from headwater.timeframes import HOUR_MS as HOUR
from headwater.timeframes import MINUTE_MS as MIN

T = 1_714_577_400_000  # 2024-05-01T15:30:00Z = 11:30 New York (EDT); a whole minute
SESSION_START = 1_714_536_000_000  # 2024-05-01T04:00:00Z = 00:00 New York
DIMS = 384


def unit(*hot: int) -> np.ndarray:
    """A 384-d vector with ones at the given positions (an easy-to-reason-about embedding)."""
    v = np.zeros(DIMS, dtype=np.float32)
    v[list(hot)] = 1.0
    return v


def normalized(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


# Trades of AAA: (time, price, size). The 80 trade is yesterday's (New York) session.
TRADES = [
    (T - DAY - 5_000, 80.0, 100),
    (T - HOUR - 1_000, 95.0, 50),
    (T - 5 * MIN - 1_000, 98.0, 20),
    (T - MIN - 1, 99.0, 30),
    (T - 30_000, 100.0, 40),
    (T - 1_000, 101.0, 10),
]
FUTURE_TRADES = [(T + 1, 500.0, 1_000_000), (T + MIN, 1.0, 5_000_000)]
QUOTES = [(T - 2_000, 100.99, 101.01)]  # (time, bid, ask)
FUTURE_QUOTES = [(T + 5, 1.0, 1000.0)]
NEWS = [(T - 25 * HOUR, 0.9), (T - 23 * HOUR, 0.5), (T - 30 * MIN, -0.2), (T - 10 * MIN, 0.4)]
SOCIAL = [(T - 2 * HOUR, 0.3), (T - 5 * MIN, -0.6)]
MENTIONS = [(T - 20 * HOUR, 10), (T - 5 * HOUR, 14), (T - 30 * MIN, 3), (T - MIN, 5)]
FUTURE_SCORES = [(T + 1, -1.0)]
FUTURE_MENTIONS = [(T + 1, 1000)]


def _vwap() -> float:
    """VWAP at T by hand: per-minute typical price weighted by volume, today's New York session only."""
    buckets = {  # minute -> (high, low, close, volume)
        "14:29": (95.0, 95.0, 95.0, 50),
        "15:24": (98.0, 98.0, 98.0, 20),
        "15:28": (99.0, 99.0, 99.0, 30),
        "15:29": (101.0, 100.0, 101.0, 50),
    }
    num = sum((h + low + c) / 3 * v for h, low, c, v in buckets.values())
    return num / sum(v for *_, v in buckets.values())


def _volume_z() -> float:
    """Volume z-score at T by hand: bucket i covers (T - (i+1) min, T - i min]; last = 0, baseline = 1..60."""
    volumes = {0: 40.0 + 10.0, 1: 30.0, 5: 20.0, 60: 50.0}
    baseline = np.array([volumes.get(i, 0.0) for i in range(1, 61)])
    return float((volumes[0] - baseline.mean()) / baseline.std(ddof=1))


EXPECTED: dict[str, float] = {
    "last_price": 101.0,
    "return_1m": 101 / 99 - 1,
    "return_5m": 101 / 98 - 1,
    "return_1h": 101 / 95 - 1,
    "return_1d": 101 / 80 - 1,
    "vwap": _vwap(),
    "realized_vol_1h": math.sqrt(math.log(98 / 95) ** 2 + math.log(99 / 98) ** 2 + math.log(101 / 99) ** 2),
    "volume_zscore_1m": _volume_z(),
    "bid_ask_spread_bps": (101.01 - 100.99) / 101.0 * 10_000,
    "news_sentiment_1h": (-0.2 + 0.4) / 2,
    "news_sentiment_24h": (0.5 - 0.2 + 0.4) / 3,
    "social_sentiment_1h": -0.6,
    "mention_velocity_1h": 8 / (32 / 24),
}
EXPECTED_SOURCE_MS: dict[str, int] = {
    "last_price": T - 1_000, "return_1m": T - 1_000, "return_5m": T - 1_000, "return_1h": T - 1_000,
    "return_1d": T - 1_000, "vwap": T - 1_000, "realized_vol_1h": T - 1_000, "volume_zscore_1m": T - 1_000,
    "bid_ask_spread_bps": T - 2_000, "news_sentiment_1h": T - 10 * MIN, "news_sentiment_24h": T - 10 * MIN,
    "social_sentiment_1h": T - 5 * MIN, "mention_velocity_1h": T - MIN,
}  # fmt: skip

# Documents: (doc_id, ticker, source, public_ms, chunk vectors)
DOCS = [
    ("sec:0000000001-24-000001", "AAA", "sec", T - 10 * DAY, [unit(0), unit(1)]),
    ("sec:0000000001-24-000002", "AAA", "sec", T - DAY, [unit(2), unit(3)]),
    ("transcript:AAA:2024Q1", "AAA", "transcript", T - 5 * DAY, [unit(4)]),
    ("sec:0000000002-24-000001", "BRK.B", "sec", T - 2 * DAY, [unit(2)]),
    ("sec:0000000003-24-000001", "CCC", "sec", T - 3 * DAY, [unit(7)]),
]
FUTURE_DOCS = [("sec:0000000001-24-000003", "AAA", "sec", T + HOUR, [unit(9)])]
EXPECTED_FILING = {"AAA": normalized(unit(2, 3)), "BRK.B": unit(2), "CCC": unit(7)}
EXPECTED_TRANSCRIPT = {"AAA": unit(4)}


@dataclass
class Store:
    """A Redis namespace for one test: client, Headwater keys and Featureform layout."""

    r: redis.Redis
    keys: Keys
    layout: OnlineLayout


def madd(r: redis.Redis, key: str, samples: list[tuple[int, float]]) -> None:
    r.execute_command("TS.MADD", *[x for t, v in samples for x in (key, t, v)])


def _until(items: list, until: int | None) -> list:
    """The items (time first) at or before ``until`` (all of them for None), in time order."""
    return sorted(item for item in items if until is None or item[0] <= until)


def write_market(store: Store, ticker: str = "AAA", until: int | None = None) -> None:
    """Trades and quotes of the scenario up to ``until`` (default: all, with the after-T traps), in time order."""
    TimeSeriesLayout(store.r, store.keys).ensure([ticker])
    trades = _until(TRADES + FUTURE_TRADES, until)
    quotes = _until(QUOTES + FUTURE_QUOTES, until)
    for t, price, size in trades:
        madd(store.r, store.keys.tick(ticker, "price"), [(t, price)])
        madd(store.r, store.keys.tick(ticker, "volume"), [(t, size)])
    for t, bid, ask in quotes:
        madd(store.r, store.keys.tick(ticker, "bid"), [(t, bid)])
        madd(store.r, store.keys.tick(ticker, "ask"), [(t, ask)])


def write_sentiment(store: Store, ticker: str = "AAA", until: int | None = None) -> None:
    """News/social scores and mention counts of the scenario up to ``until``."""
    keys = store.keys
    series = {
        keys.sentiment(ticker, "news"): NEWS + FUTURE_SCORES,
        keys.sentiment(ticker, "social"): SOCIAL + FUTURE_SCORES,
        keys.mentions(ticker, "social"): MENTIONS + FUTURE_MENTIONS,
    }
    for key, samples in series.items():
        ensure_series(store.r, key, 0, {"ticker": ticker})
        if _until(samples, until):
            madd(store.r, key, _until(samples, until))


def create_documents_index(store: Store) -> None:
    """``idx:documents`` as docs/redis-keys.md specifies it (the document processor owns the real one)."""
    store.r.execute_command(
        "FT.CREATE", store.keys.documents_index, "ON", "HASH", "PREFIX", 1, store.keys.chunk_prefix,
        "SCHEMA", "doc_id", "TAG", "ticker", "TAG", "form", "TAG", "source", "TAG", "section", "TAG",
        "position", "NUMERIC", "public_ms", "NUMERIC", "SORTABLE", "stored_ms", "NUMERIC", "period", "NUMERIC", "text", "TEXT",
        "embedding", "VECTOR", "HNSW", 6, "TYPE", "FLOAT32", "DIM", DIMS, "DISTANCE_METRIC", "COSINE",
    )  # fmt: skip


def write_documents(store: Store, until: int | None = None) -> None:
    """Chunk hashes of the scenario's filings and transcripts public up to ``until``."""
    pipe = store.r.pipeline(transaction=False)
    for doc_id, ticker, source, public_ms, vectors in DOCS + FUTURE_DOCS:
        if until is not None and public_ms > until:
            continue
        for n, vector in enumerate(vectors):
            pipe.hset(store.keys.chunk(doc_id, n), mapping={
                "doc_id": doc_id, "ticker": ticker, "source": source, "form": "10-K" if source == "sec" else "transcript",
                "section": "Item 7", "position": n, "public_ms": public_ms, "stored_ms": public_ms,  # known when public
                "text": f"chunk {n} of {doc_id}",
                "embedding": vector.astype("<f4").tobytes(),
            })  # fmt: skip
    pipe.execute()


def write_scenario(store: Store, until: int | None = None) -> None:
    """All inputs of the scenario up to ``until`` (default: all, with the after-T traps)."""
    write_market(store, until=until)
    write_sentiment(store, until=until)
    create_documents_index(store)
    write_documents(store, until=until)  # hashes written after FT.CREATE are indexed synchronously


def sub_store(store: Store, name: str) -> Store:
    """Another namespace inside the test's own (cleaned up with it)."""
    prefix = f"{store.keys.prefix}{name}:"
    return Store(store.r, Keys(prefix), OnlineLayout.for_namespace(prefix))


class HashEmbedder:
    """Any text -> a unit 384-d vector seeded by its hash (the real model takes ~20 s to load; search's wiring
    is what is under test here)."""

    name = "test-hash"

    def encode_one(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        vector = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
        return vector / np.linalg.norm(vector)
