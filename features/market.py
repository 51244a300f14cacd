"""Market features from RedisTimeSeries: last price, returns, session VWAP, realized volatility, volume
z-score and quoted spread.

Every read ends at the point in time ``t`` (``TS.RANGE``/``TS.REVRANGE`` with ``end = t``), so nothing is
computed from samples after ``t``. Per-minute aggregates are taken at query time from the tick series
(``AGGREGATION ... ALIGN``), not from the compacted bars: a compacted bar only appears once a later sample
arrives, and a bar that starts before ``t`` may contain trades after it. Minute buckets are aligned so that the
last one ends exactly at ``t``: bucket ``i`` covers ``(t - (i+1) min, t - i min]``.

The computations are pure functions over arrays (``simple_return``, ``typical_price_vwap``,
``realized_volatility``, ``volume_zscore``, ``spread_bps``); ``compute`` plans the reads for many tickers and
sends them in one pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import redis

from features import WINDOW_MS, FeatureSpec, FeatureValue, Job, Value, run_jobs, samples
from headwater.keys import Keys
from headwater.timeframes import MINUTE_MS, NEW_YORK_TZ


# -- pure computations -----------------------------------------------------------------------------------
def simple_return(last_price: float, base_price: float) -> float | None:
    """p(t) / p(t - w) - 1, or None without a positive base price."""
    if base_price <= 0:
        return None
    return last_price / base_price - 1.0


def typical_price_vwap(high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray) -> float | None:
    """Volume-weighted mean of per-bucket typical prices (high + low + close) / 3; None without volume."""
    total = float(np.sum(volume))
    if total <= 0:
        return None
    typical = (high + low + close) / 3.0
    return float(np.dot(typical, volume) / total)


def realized_volatility(prices: np.ndarray) -> float | None:
    """sqrt(sum of squared log returns) of consecutive prices; None with fewer than two positive prices."""
    prices = prices[prices > 0]
    if prices.size < 2:
        return None
    returns = np.diff(np.log(prices))
    return float(np.sqrt(np.dot(returns, returns)))


def volume_zscore(volumes: np.ndarray) -> float | None:
    """Z-score of the last bucket against the buckets before it (sample std); None if they do not vary."""
    if volumes.size < 3:
        return None
    baseline = volumes[:-1]
    std = float(np.std(baseline, ddof=1))
    if std == 0.0:
        return None
    return float((volumes[-1] - np.mean(baseline)) / std)


def spread_bps(bid: float, ask: float) -> float | None:
    """(ask - bid) / mid in basis points; None if a side is missing (zero) or the pair is crossed (bid > ask).

    The stream processors keep crossed quotes out of the bid/ask series (they go to ``ts:{T}:crossed_*``), so
    the last stored pair is the last valid quote; the check here guards data written any other way.
    A locked quote (bid == ask) has a spread of 0.
    """
    if bid <= 0 or ask <= 0 or bid > ask:
        return None
    return (ask - bid) / ((ask + bid) / 2.0) * 10_000.0


def dense_buckets(timestamps: np.ndarray, values: np.ndarray, first_start: int, n: int, bucket_ms: int) -> np.ndarray:
    """Place sparse bucket values (by bucket start time) into ``n`` consecutive buckets; empty buckets are 0."""
    out = np.zeros(n)
    idx = (timestamps - first_start) // bucket_ms
    ok = (idx >= 0) & (idx < n)
    out[idx[ok].astype(int)] = values[ok]
    return out


def session_start_ms(t_ms: int, tz: str = NEW_YORK_TZ) -> int:
    """Epoch ms of 00:00 (in ``tz``) of the day that contains ``t_ms``."""
    local = datetime.fromtimestamp(t_ms / 1000, ZoneInfo(tz))
    return int(local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)


# -- reply parsing -----------------------------------------------------------------------------------------
def last_sample(reply: list) -> tuple[int, float] | None:
    """(timestamp, value) of a ``TS.REVRANGE ... COUNT 1`` reply, or None."""
    if not reply:
        return None
    return int(reply[0][0]), float(reply[0][1])


def _last(key: str, end: int | str, start: int | str = "-") -> tuple:
    return ("TS.REVRANGE", key, start, end, "COUNT", 1)


def _buckets(key: str, start: int, end: int, aggregation: str, bucket_ms: int, align: int) -> tuple:
    return ("TS.RANGE", key, start, end, "ALIGN", align, "AGGREGATION", aggregation, bucket_ms)


# -- one job per (feature, ticker) -------------------------------------------------------------------------
def _last_price_job(keys: Keys, spec: FeatureSpec, ticker: str, t: int) -> Job:
    def finish(replies: list) -> tuple[Value, int] | None:
        last = last_sample(replies[0])
        return None if last is None else (last[1], last[0])

    return Job(spec, ticker, [_last(keys.tick(ticker, "price"), t)], finish)


def _return_job(keys: Keys, spec: FeatureSpec, ticker: str, t: int) -> Job:
    window = WINDOW_MS[spec.properties["window"]]
    price = keys.tick(ticker, "price")

    def finish(replies: list) -> tuple[Value, int] | None:
        last, base = last_sample(replies[0]), last_sample(replies[1])
        if last is None or base is None:
            return None
        value = simple_return(last[1], base[1])
        return None if value is None else (value, last[0])

    return Job(spec, ticker, [_last(price, t), _last(price, t - window)], finish)


def _vwap_job(keys: Keys, spec: FeatureSpec, ticker: str, t: int) -> Job:
    start = session_start_ms(t, spec.properties.get("session_tz", NEW_YORK_TZ))
    price, volume = keys.tick(ticker, "price"), keys.tick(ticker, "volume")
    commands = [
        _buckets(price, start, t, "max", MINUTE_MS, start),
        _buckets(price, start, t, "min", MINUTE_MS, start),
        _buckets(price, start, t, "last", MINUTE_MS, start),
        _buckets(volume, start, t, "sum", MINUTE_MS, start),
        _last(price, t, start),
    ]

    def finish(replies: list) -> tuple[Value, int] | None:
        last = last_sample(replies[4])
        if last is None:
            return None
        (ts_h, high), (_, low), (_, close), (ts_v, vol) = (samples(r) for r in replies[:4])
        by_bucket = dict(zip(ts_v.tolist(), vol.tolist()))
        weights = np.array([by_bucket.get(ts, 0.0) for ts in ts_h.tolist()])
        value = typical_price_vwap(high, low, close, weights)
        return None if value is None else (value, last[0])

    return Job(spec, ticker, commands, finish)


def _realized_vol_job(keys: Keys, spec: FeatureSpec, ticker: str, t: int) -> Job:
    window = WINDOW_MS[spec.properties.get("window", "1h")]
    bucket = WINDOW_MS[spec.properties.get("bucket", "1m")]
    price = keys.tick(ticker, "price")
    start = t - window + 1
    commands = [_last(price, start - 1), _buckets(price, start, t, "last", bucket, t + 1), _last(price, t, start)]

    def finish(replies: list) -> tuple[Value, int] | None:
        last = last_sample(replies[2])
        if last is None:
            return None
        base = last_sample(replies[0])
        _, closes = samples(replies[1])
        prices = closes if base is None else np.concatenate(([base[1]], closes))
        value = realized_volatility(prices)
        return None if value is None else (value, last[0])

    return Job(spec, ticker, commands, finish)


def _volume_zscore_job(keys: Keys, spec: FeatureSpec, ticker: str, t: int) -> Job:
    bucket = WINDOW_MS[spec.properties.get("bucket", "1m")]
    n = int(spec.properties.get("baseline", "60")) + 1
    first_start = t + 1 - n * bucket
    volume = keys.tick(ticker, "volume")
    commands = [_buckets(volume, first_start, t, "sum", bucket, t + 1), _last(volume, t, first_start)]

    def finish(replies: list) -> tuple[Value, int] | None:
        last = last_sample(replies[1])
        if last is None:
            return None
        ts, vols = samples(replies[0])
        value = volume_zscore(dense_buckets(ts, vols, first_start, n, bucket))
        return None if value is None else (value, last[0])

    return Job(spec, ticker, commands, finish)


def _spread_job(keys: Keys, spec: FeatureSpec, ticker: str, t: int) -> Job:
    def finish(replies: list) -> tuple[Value, int] | None:
        bid, ask = last_sample(replies[0]), last_sample(replies[1])
        if bid is None or ask is None:
            return None
        value = spread_bps(bid[1], ask[1])
        return None if value is None else (value, max(bid[0], ask[0]))

    return Job(spec, ticker, [_last(keys.tick(ticker, "bid"), t), _last(keys.tick(ticker, "ask"), t)], finish)


JOBS: dict[str, Callable[[Keys, FeatureSpec, str, int], Job]] = {
    "last_price": _last_price_job,
    "return": _return_job,
    "vwap": _vwap_job,
    "realized_vol": _realized_vol_job,
    "volume_zscore": _volume_zscore_job,
    "spread_bps": _spread_job,
}


def compute(
    client: redis.Redis, keys: Keys, specs: Sequence[FeatureSpec], tickers: Sequence[str], as_of_ms: int,
    *, time_basis: str = "knowledge",
) -> list[FeatureValue]:
    """Market feature values of ``tickers`` at ``as_of_ms`` (one pipelined round trip).

    Both time bases read the same samples: ticks reach TimeSeries from the real-time stream within
    milliseconds of their trade time, so what was known at ``t`` is what had traded by ``t``."""
    jobs = [JOBS[_computation(spec)](keys, spec, ticker, as_of_ms) for ticker in tickers for spec in specs]
    return run_jobs(client, jobs, as_of_ms)


def _computation(spec: FeatureSpec) -> str:
    kind = spec.properties.get("computation", "")
    if kind not in JOBS:
        raise ValueError(f"market feature {spec.name}:{spec.variant}: unknown computation {kind!r}")
    return kind
