"""The RedisTimeSeries layout (retention, duplicate policy, labels, compaction rules) and the bar writes.

Two kinds of writer use it, and both get their series from ``TimeSeriesLayout``:

* the streamer's market processor: tick series ``ts:{T}:tick:{field}`` with server-side compactions into
  ``ts:{T}:bar:{TF}:{field}`` (``TimeSeriesLayout.ensure``);
* whatever stores provider bars (the market and backfill flows): ``ts:{T}:agg:{SOURCE}:{TF}:{field}``
  (``TimeSeriesLayout.ensure_provider_bars``), written with ``write_bars`` -- TS.MADD packed with hiredis, the
  LAST duplicate policy, so a re-fetch rewrites the same samples and never doubles them. Beside them the bars'
  knowledge series ``ts:{T}:known:agg:{SOURCE}:{TF}`` gets, at each complete bar's timestamp, when the pipeline
  first stored it (MIN policy: a re-fetch keeps the first time), so ``as_of`` reads know what was known then.

Retention comes from ``config/retention.yaml`` (``headwater.retention``): tick series the "ticks" kind, every bar
series the "bars" kind (hot window + grace, so the archive flow copies bars to warm storage before Redis drops
them).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

import hiredis
import numpy as np
import pandas as pd
import redis
from redis.cluster import RedisCluster
from redis.exceptions import ResponseError

from headwater import retention
from headwater.keys import BAR_FIELDS, TICK_FIELDS, Keys
from headwater.settings import StreamSettings
from headwater.timeframes import TIMEFRAMES

# Server-side compactions of the tick series into bars: (source tick field, aggregation) per bar field.
BAR_RULES: dict[str, tuple[str, str]] = {
    "open": ("price", "first"),
    "high": ("price", "max"),
    "low": ("price", "min"),
    "close": ("price", "last"),
    "volume": ("volume", "sum"),
}


def bar_retention_ms(timeframe: str) -> int:
    """RETENTION of bar series, every timeframe: the "bars" kind of ``config/retention.yaml``."""
    return retention.retention_ms("bars")


class TimeSeriesLayout:
    """Creates series (and compaction rules) once per layout object, idempotently and race-safely.

    Tick series use ``DUPLICATE_POLICY LAST`` (a replay rewrites the same value), except volume, which is
    ``SUM`` because two prints can share a millisecond; exactly-once for volume is the writer's job (trade
    high-water marks committed with the writes, see ``streamer.processor``). Provider bar series use LAST.
    """

    def __init__(self, client: redis.Redis, keys: Keys, streams: StreamSettings | None = None) -> None:
        streams = streams or StreamSettings()
        self.client = client
        self.keys = keys
        self.tick_retention_ms = retention.retention_ms("ticks")
        self.bar_retention_ms = retention.retention_ms("bars")
        self._ready: set[str] = set()
        self._provider_ready: set[str] = set()

    def ensure(self, tickers: Iterable[str]) -> None:
        """Create whatever tick series/rules of these tickers do not exist yet (cached per layout)."""
        missing = [t for t in tickers if t not in self._ready]
        if not missing:
            return
        pipe = self.client.pipeline(transaction=False)
        for ticker in missing:
            self._queue_series(pipe, ticker)
        _run_ignoring_exists(pipe)
        pipe = self.client.pipeline(transaction=False)
        for ticker in missing:
            for timeframe, bucket_ms in TIMEFRAMES.items():
                for bar_field, (tick_field, aggregation) in BAR_RULES.items():
                    pipe.execute_command(
                        "TS.CREATERULE",
                        self.keys.tick(ticker, tick_field),
                        self.keys.bar(ticker, timeframe, bar_field),
                        "AGGREGATION",
                        aggregation,
                        bucket_ms,
                    )
        _run_ignoring_exists(pipe)
        self._ready.update(missing)

    def ensure_provider_bars(self, ticker: str, source: str, timeframe: str) -> None:
        """Create the five OHLCV series of one ticker/source/timeframe (LAST policy) once per layout."""
        for name in BAR_FIELDS:
            key = self.keys.provider_bar(ticker, source, timeframe, name)
            if key in self._provider_ready:
                continue
            labels = {"ticker": ticker, "field": name, "kind": "bar", "timeframe": timeframe, "source": source}
            ensure_series(self.client, key, bar_retention_ms(timeframe), labels, duplicate_policy="LAST")
            self._provider_ready.add(key)
        self.ensure_known_bars(ticker, source, timeframe)

    def ensure_known_bars(self, ticker: str, source: str, timeframe: str) -> None:
        """The knowledge series of one ticker/source/timeframe's provider bars (MIN policy: first stored)."""
        key = self.keys.known_bar(ticker, source, timeframe)
        if key not in self._provider_ready:
            labels = {"ticker": ticker, "kind": "known", "of": "agg", "timeframe": timeframe, "source": source}
            ensure_series(self.client, key, bar_retention_ms(timeframe), labels, duplicate_policy="MIN")
            self._provider_ready.add(key)

    def _queue_series(self, pipe: redis.client.Pipeline, ticker: str) -> None:
        for field in TICK_FIELDS:
            self._create(
                pipe, self.keys.tick(ticker, field), self.tick_retention_ms, ticker, field, "tick",
                duplicate_policy="SUM" if field == "volume" else "LAST",
            )  # fmt: skip
        for timeframe in TIMEFRAMES:
            for bar_field in BAR_FIELDS:
                self._create(
                    pipe, self.keys.bar(ticker, timeframe, bar_field), self.bar_retention_ms, ticker, bar_field, "bar",
                    timeframe,
                )  # fmt: skip

    @staticmethod
    def _create(
        pipe: redis.client.Pipeline,
        key: str,
        retention_ms: int,
        ticker: str,
        field: str,
        kind: str,
        timeframe: str = "tick",
        source: str = "polygon",
        duplicate_policy: str = "LAST",
    ) -> None:
        pipe.execute_command(
            "TS.CREATE", key,
            "RETENTION", retention_ms,
            "DUPLICATE_POLICY", duplicate_policy,
            "LABELS", "ticker", ticker, "field", field, "kind", kind, "timeframe", timeframe, "source", source,
        )  # fmt: skip


def ensure_series(
    client: redis.Redis, key: str, retention_ms: int, labels: dict[str, str], duplicate_policy: str = "LAST"
) -> None:
    """Create one series if it does not exist (any writer may call this; 'already exists' is fine)."""
    args: list[object] = ["TS.CREATE", key, "RETENTION", retention_ms, "DUPLICATE_POLICY", duplicate_policy, "LABELS"]
    for name, value in labels.items():
        args += [name, value]
    try:
        client.execute_command(*args)
    except ResponseError as exc:
        if "already exists" not in str(exc):
            raise


_ALREADY = ("already exists", "already has a src rule")


def _run_ignoring_exists(pipe: redis.client.Pipeline) -> None:
    for result in pipe.execute(raise_on_error=False):
        if isinstance(result, ResponseError) and not any(text in str(result) for text in _ALREADY):
            raise result


# -- provider bars ---------------------------------------------------------------------------------------------
@dataclass
class BarWrite:
    written: int = 0  # bars whose five samples were accepted
    already_present: int = 0  # samples in the batch's time range before the write (a re-fetch rewrites them)
    rejected: pd.DataFrame | None = None  # rows TimeSeries refused (e.g. older than the retention)


def ts_madd(client: redis.Redis, commands: list[list[Any]]) -> list[Any]:
    """Send TS.MADD commands packed with hiredis on one pooled connection; return each command's reply.

    (redis-py's own packing costs as much as Redis' work on a big TS.MADD.) On a Redis Cluster the commands go
    through a cluster pipeline instead: each one holds a single ticker's keys, hence a single hash slot.
    """
    if isinstance(client, RedisCluster):
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute(raise_on_error=False))
    pool = client.connection_pool
    conn = pool.get_connection()
    replies: list[Any] = []
    try:
        conn.send_packed_command([hiredis.pack_command(tuple(c)) for c in commands])
        for _ in commands:
            try:
                replies.append(conn.read_response())
            except ResponseError as exc:
                replies.append(exc)
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)
    return replies


def write_bars(layout: TimeSeriesLayout, frame: pd.DataFrame, *, chunk_bars: int = 2000,
               now_ms: int | None = None) -> BarWrite:  # fmt: skip
    """Write validated bars (``ticker, timeframe, source, ts`` + OHLCV) with TS.MADD; idempotent (LAST policy).
    Each bar complete by ``now_ms`` (default: the wall clock) is stamped known at ``now_ms`` unless it was known
    before; a bar still open (a provider's bar of the current day) gets its stamp from the fetch after it closes."""
    result = BarWrite()
    if frame.empty:
        return result
    client, k = layout.client, layout.keys
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    rejected_idx: list[int] = []
    for (ticker, timeframe, source), group in frame.groupby(["ticker", "timeframe", "source"], sort=False):
        layout.ensure_provider_bars(ticker, source, timeframe)
        ts = group["ts"].to_numpy(dtype=np.int64)
        close_key = k.provider_bar(ticker, source, timeframe, "close")
        span = int(ts.max() - ts.min() + 1)
        existing = client.execute_command("TS.RANGE", close_key, int(ts.min()), int(ts.max()), "AGGREGATION", "count", span)
        result.already_present += int(sum(float(v) for _, v in existing))
        field_keys = [k.provider_bar(ticker, source, timeframe, name) for name in BAR_FIELDS]
        values = [group[name].to_numpy(dtype=np.float64) for name in BAR_FIELDS]
        stamps = ts.tolist()
        known_key = k.known_bar(ticker, source, timeframe)
        complete = ts + TIMEFRAMES.get(timeframe, 0) <= now_ms
        commands, spans = [], []
        for start in range(0, len(stamps), chunk_bars):
            stop = min(start + chunk_bars, len(stamps))
            args: list[Any] = ["TS.MADD"]
            chunk = stamps[start:stop]
            for key, column in zip(field_keys, values):
                args.extend(chain.from_iterable(zip(repeat(key), chunk, column[start:stop].tolist())))
            # Last in the same command: a bar is stamped known only after its values (TS.MADD adds in order).
            args.extend(chain.from_iterable((known_key, t, now_ms) for t, done in zip(chunk, complete[start:stop]) if done))
            commands.append(args)
            spans.append((start, stop))
        bad_rows: set[int] = set()
        for (start, stop), reply in zip(spans, ts_madd(client, commands)):
            if isinstance(reply, ResponseError):
                raise reply
            try:
                sum(reply)  # every sample accepted: the replies are timestamps (summed in C, no per-sample loop)
                continue
            except TypeError:
                pass
            n = stop - start
            for j, r in enumerate(reply[: len(field_keys) * n]):  # the bars' own samples (the stamps follow)
                if isinstance(r, ResponseError):
                    bad_rows.add(start + j % n)
        index = group.index.to_numpy()
        rejected_idx += [int(index[i]) for i in sorted(bad_rows)]
        result.written += len(stamps) - len(bad_rows)
    if rejected_idx:
        result.rejected = frame.loc[rejected_idx]
    return result


def bars_to_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Exact copies dropped (same ticker/timeframe/ts and values): a provider repeating a row is not an error."""
    if len(frame) and frame["ticker"].nunique() == 1 and frame["timeframe"].nunique() == 1 and frame["ts"].is_unique:
        return frame.reset_index(drop=True)  # one series, no repeated stamp: nothing to compare (the usual case)
    return frame.drop_duplicates(subset=["ticker", "timeframe", "ts", *BAR_FIELDS], keep="last").reset_index(drop=True)
