"""What every ingestion flow shares: clients with the shared quota, the retry policy, the GX gate, the writers.

**Clients** (``provider_client``) are built inside tasks from ``headwater.settings`` (environment) or, when a
key is not in the environment and the task runs under Prefect, from a Prefect Secret block named
``headwater-<provider>-api-key``: secrets never become flow parameters. Every client gets a
``SharedRateLimiter`` for its provider *and* key (``quota:{provider:keyid}:...`` in Redis) with the limits of
``config/data_sources.yaml``: per-minute/per-second rates and the daily budget, shared by every worker on every
machine. ``python -m flows.deploy`` mirrors the per-minute rates as Prefect global concurrency limits
(``headwater-<provider>``) for the UI; the Redis limiter is what enforces them, because a Prefect limit can
express neither a daily budget nor a per-key quota, and the real-time streamer shares these quotas too.
Provider tasks carry no Prefect tags on purpose: a tagged task run asks the API for tag concurrency slots, which
cost ~2 s per burst of task runs on an idle Prefect 3 server (measured here) and would limit nothing the Redis
limiter does not already limit.

**Retries** (``IO_RETRIES`` on every task that does I/O): 3 retries, exponential backoff 1-2-4 s with 50 % jitter
(the base is ``HEADWATER_FLOW_RETRY_BASE_S``, read at import; the tests shorten it), only for what can get better
(``ProviderError.retryable``: 429 and Alpha Vantage's Note/Information bodies, 5xx, timeouts and resets,
malformed/cut-off bodies; Redis connection errors). When the provider named a
wait (Retry-After, ``x-rate-limit-reset``, ``X-Ratelimit-Reset``), ``retry_on_transient`` sleeps until Prefect's
scheduled backoff can no longer start the retry before it. A wait longer than ``MAX_HONOURED_WAIT_S`` and a
spent daily budget (``QuotaExhausted``) are not retried: the flow stops cleanly and says why (``stopped_reason``).

**Gate** (``gate``): every batch goes through its Great Expectations suite (``expectations/``); rejected rows go to
``stream:quarantine`` with the failed expectations, together with rows the client could not even parse.

**Summary**: each flow run ends with one log line of counts (``RunSummary.line``) and returns the summary as a
dict; a run with real failures (not a quota stop) ends Failed with that line as the message.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from itertools import chain, repeat
from typing import Any

import hiredis
import numpy as np
import pandas as pd
import redis
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.tasks import exponential_backoff
from prefect.utilities.math import lower_clamp_multiple
from pydantic import SecretStr
from redis.cluster import RedisCluster
from redis.exceptions import ResponseError

from expectations import Outcome, Quarantined
from headwater import metrics, retention
from headwater.config import load_tickers, provider_limits
from headwater.keys import BAR_FIELDS, Keys
from headwater.providers.alphavantage import AlphaVantageClient
from headwater.providers.http import HttpClient, ProviderError, QuotaExhausted, RateLimited, key_id
from headwater.providers.newsapi import NewsApiClient
from headwater.providers.reddit import RedditClient
from headwater.providers.x import XClient
from headwater.ratelimit import SharedRateLimiter
from headwater.settings import ProviderMode, RedisSettings, Settings, StreamSettings
from headwater.storage.redis import connect
from headwater.storage.timeseries import ensure_series

log = logging.getLogger("headwater.flows")

MAX_HONOURED_WAIT_S = 120.0  # a provider asking for longer stops the run instead of holding a worker
RETRIES = 3
RETRY_BASE_S = float(os.environ.get("HEADWATER_FLOW_RETRY_BASE_S") or 1.0)
RETRY_JITTER = 0.5
QUARANTINE_MAXLEN = 1_000_000


# -- settings, Redis, keys ---------------------------------------------------------------------------------
def settings() -> Settings:
    """Fresh settings from the environment (cheap; tests and workers may change the environment)."""
    return Settings()


_redis_lock = threading.Lock()
_redis_clients: dict[str, redis.Redis] = {}


def redis_client() -> redis.Redis:
    """One client per Redis URL per process (connection pool shared by the task threads)."""
    redis_settings = RedisSettings()
    from headwater.storage.redis import resolve_redis_url

    url = resolve_redis_url(redis_settings)
    with _redis_lock:
        if url not in _redis_clients:
            _redis_clients[url] = connect(redis_settings, url=url)
        return _redis_clients[url]


def keys() -> Keys:
    return Keys(RedisSettings().key_prefix)


def resolve_tickers(tickers: Iterable[str] | None, tickers_file: str | None) -> list[str]:
    """Explicit tickers, else the ones in ``tickers_file``, else ``config/tickers.txt``."""
    if tickers:
        from headwater.keys import check_ticker

        return list(dict.fromkeys(check_ticker(t.strip().upper()) for t in tickers))
    return load_tickers(tickers_file)


# -- provider clients ---------------------------------------------------------------------------------------
CLIENTS: dict[str, type[HttpClient]] = {
    "alphavantage": AlphaVantageClient, "newsapi": NewsApiClient, "reddit": RedditClient, "x": XClient,
}  # fmt: skip


@functools.lru_cache(maxsize=32)
def _secret_block(name: str) -> str | None:
    """The value of Prefect Secret block ``name`` when running under Prefect and it exists, else None."""
    try:
        from prefect.blocks.system import Secret
        from prefect.context import get_run_context

        get_run_context()  # raises outside a flow/task run: no API to ask
        return str(Secret.load(name).get())
    except Exception:  # noqa: BLE001 - no run context, no block, no API: the environment is the answer
        return None


def provider_settings(provider: str, all_settings: Settings | None = None) -> Any:
    """A provider's settings, with its key from a Prefect Secret block if the environment has none."""
    all_settings = all_settings or settings()
    ps = getattr(all_settings, provider)
    if ps.api_key is None and ps.mode is not ProviderMode.SIMULATED and not ps.base_url:
        secret = _secret_block(f"headwater-{provider}-api-key")
        if secret:
            ps = ps.model_copy(update={"api_key": SecretStr(secret)})
    return ps


_client_lock = threading.Lock()
_clients: dict[tuple[str, ...], HttpClient] = {}


def provider_client(provider: str, *, data_sources: str | None = None) -> HttpClient:
    """A client for ``provider`` with its shared limiter (cached per configuration, so tokens/sessions persist)."""
    all_settings = settings()
    ps = provider_settings(provider, all_settings)
    base_url = ps.resolved_base_url(all_settings.standins)
    api_key = ps.resolved_key(all_settings.standins)
    kid = key_id(api_key)
    cache_key = (provider, base_url, kid, all_settings.redis.key_prefix, str(data_sources), str(ps.timeout_s))
    with _client_lock:
        client = _clients.get(cache_key)
        if client is None:
            limiter = SharedRateLimiter(redis_client(), keys(), provider, kid, provider_limits(provider, data_sources))
            kwargs: dict[str, Any] = {"timeout_s": ps.timeout_s, "limiter": limiter}
            if provider == "reddit":
                live_hosts = ps.effective_mode is ProviderMode.LIVE and not ps.base_url
                kwargs.update(client_secret=ps.client_secret, user_agent=ps.user_agent,
                              auth_url=ps.LIVE_AUTH_URL if live_hosts else base_url)  # fmt: skip
            client = CLIENTS[provider](base_url, api_key, **kwargs)
            _clients[cache_key] = client
        return client


# -- retries ------------------------------------------------------------------------------------------------
def _exception(state: Any) -> BaseException | None:
    data = getattr(state, "data", None)
    if isinstance(data, BaseException):
        return data
    try:
        result = state.result(raise_on_failure=False)
    except Exception as exc:  # noqa: BLE001 - the result itself could not be read
        return exc
    return result if isinstance(result, BaseException) else None


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry what can get better; wait out a provider-named delay first."""
    exc = _exception(state)
    if isinstance(exc, ProviderError):
        if not exc.retryable:
            return False
        wait = getattr(exc, "retry_after_s", None)
        if wait is not None:
            if wait > MAX_HONOURED_WAIT_S:
                return False
            delays = task.retry_delay_seconds if isinstance(task.retry_delay_seconds, list) else [task.retry_delay_seconds or 0]
            index = min(max(0, (task_run.run_count or 1) - 1), len(delays) - 1)
            earliest = float(delays[index]) * (lower_clamp_multiple(1 + (task.retry_jitter_factor or 0))
                                               if task.retry_jitter_factor else 1.0)  # fmt: skip
            if wait > earliest:
                time.sleep(wait - earliest)
        return True
    return isinstance(exc, (redis.ConnectionError, redis.TimeoutError))


IO_RETRIES: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": exponential_backoff(backoff_factor=RETRY_BASE_S),
    "retry_jitter_factor": RETRY_JITTER,
    "retry_condition_fn": retry_on_transient,
    "cache_policy": NO_CACHE,
}


def stop_reason(exc: BaseException) -> str | None:
    """Why a run should stop cleanly (daily budget, a rate limit too long to wait out), or None (a real failure)."""
    if isinstance(exc, QuotaExhausted):
        return f"quota exhausted: {exc}"
    if isinstance(exc, RateLimited) and (exc.retry_after_s or 0) > MAX_HONOURED_WAIT_S:
        return f"rate limited for {exc.retry_after_s / 60:.0f} min: {exc}"
    return None


# -- run summary -------------------------------------------------------------------------------------------
class IngestionFailed(RuntimeError):
    """A flow run finished its work but some items failed for reasons other than a quota stop."""


@dataclass
class RunSummary:
    """What one flow run did: counts, failures, and why it stopped early (if it did)."""

    flow: str
    counts: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    stopped_reason: str | None = None

    def add(self, **counts: int) -> None:
        for name, value in counts.items():
            self.counts[name] = self.counts.get(name, 0) + int(value)

    def record_failure(self, item: str, exc: BaseException) -> None:
        reason = stop_reason(exc)
        if reason is not None:
            self.stopped_reason = self.stopped_reason or reason
            self.skipped.append(item)
        else:
            self.failed[item] = f"{type(exc).__name__}: {exc}"

    def line(self) -> str:
        parts = [f"{k}={v}" for k, v in self.counts.items()]
        if self.failed:
            items = list(self.failed)
            named = ", ".join(items[:5]) + (f", ... ({len(items) - 5} more)" if len(items) > 5 else "")
            parts.append(f"failed={len(items)} [{named}] (first: {items[0]}: {self.failed[items[0]][:200]})")
        if self.stopped_reason:
            parts.append(f"skipped={len(self.skipped)} stopped: {self.stopped_reason}")
        return f"{self.flow}: " + " ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except Exception:  # noqa: BLE001 - outside a run (unit use)
        return log


def collect(futures: Mapping[str, PrefectFuture[Any]], summary: RunSummary) -> dict[str, Any]:
    """Wait for per-item futures; return the results of those that succeeded, record the others."""
    results: dict[str, Any] = {}
    for item, future in futures.items():
        outcome = future.result(raise_on_failure=False)
        if isinstance(outcome, BaseException):
            summary.record_failure(item, outcome)
        else:
            results[item] = outcome
    return results


def finish(summary: RunSummary) -> dict[str, Any]:
    """Log the run's one summary line; raise if items failed for real, else return the summary."""
    logger = run_logger()
    line = summary.line()
    if summary.failed:
        logger.error(line)
        raise IngestionFailed(line)
    if summary.stopped_reason:
        logger.warning(line)
    else:
        logger.info(line)
    return summary.as_dict()


def run_name() -> str:
    """The current flow run's name (or host:pid outside Prefect), for quarantine records and consumers."""
    try:
        from prefect.runtime import flow_run

        return str(flow_run.name or flow_run.id)
    except Exception:  # noqa: BLE001
        return f"{socket.gethostname()}:{os.getpid()}"


# -- the GX gate and the quarantine --------------------------------------------------------------------------
def quarantine(dataset: str, items: Iterable[Quarantined], *, flow: str, source: str,
               pipe: redis.client.Pipeline | None = None) -> int:  # fmt: skip
    """XADD rejected rows to ``stream:quarantine`` with the failed expectations; returns how many.

    With ``pipe`` the entries are only queued on it (the caller executes it with its own writes).
    """
    own = pipe is None
    pipe = redis_client().pipeline(transaction=False) if pipe is None else pipe
    count, run, now, stream = 0, run_name(), str(int(time.time() * 1000)), keys().quarantine
    for item in items:
        fields = {"dataset": dataset, "expectation": "; ".join(item.failed)[:2000], "flow": flow, "source": source,
                  "run": run, "ts": now, "row": json.dumps(item.row, default=str)[:1_000_000]}  # fmt: skip
        pipe.xadd(stream, fields, maxlen=QUARANTINE_MAXLEN, approximate=True)
        count += 1
    if own and count:
        pipe.execute()
    return count


def rejected_rows(rejected: Iterable[tuple[dict[str, Any], str]], model: str) -> list[Quarantined]:
    """Entries a client could not parse into ``model``, as quarantine items."""
    return [Quarantined(row=raw, failed=(f"model:{model}: {reason}",)) for raw, reason in rejected]


def _gate(dataset: str, frame: pd.DataFrame, flow: str, source: str) -> Outcome:
    from expectations import articles, bars, posts

    suites = {"bars": bars, "articles": articles, "posts": posts}
    outcome = suites[dataset].validate_batch(frame)
    pipe, k = redis_client().pipeline(transaction=False), keys()  # quarantined rows and counters: one round trip
    count = quarantine(dataset, outcome.quarantined, flow=flow, source=source, pipe=pipe)
    metrics.count(pipe, k, "gx_validations", suite=dataset, flow=flow, outcome="fail" if count else "pass")
    metrics.count(pipe, k, "gx_rows", len(frame) - count, suite=dataset, outcome="accepted")
    metrics.count(pipe, k, "gx_rows", count, suite=dataset, outcome="quarantined")
    pipe.execute()
    if count:
        run_logger().warning("%s: quarantined %d of %d %s rows: %s", flow, count, outcome.checked, dataset,
                             outcome.failed_expectations)  # fmt: skip
    return outcome


@task(cache_policy=NO_CACHE)
def gate(dataset: str, frame: pd.DataFrame, flow: str, source: str) -> tuple[pd.DataFrame, int]:
    """Validate a batch with its GX suite; quarantine rejected rows; return (accepted rows, quarantined count)."""
    return gate_parts.fn(dataset, [frame], flow, source)[0]


@task(cache_policy=NO_CACHE)
def gate_parts(dataset: str, frames: list[pd.DataFrame], flow: str, source: str) -> list[tuple[pd.DataFrame, int]]:
    """``gate`` for several frames validated as ONE batch (a suite run has a fixed cost of ~0.1 s): per frame, in
    order, its accepted rows and its quarantined count."""
    sizes = [len(f) for f in frames]
    if not sum(sizes):
        return [(f, 0) for f in frames]
    present = [f for f in frames if len(f)]
    outcome = _gate(dataset, present[0] if len(present) == 1 else pd.concat(present, ignore_index=True), flow, source)
    if len(frames) == 1:
        return [(outcome.good, len(outcome.quarantined))]
    bounds = np.cumsum([0, *sizes])
    parts = []
    for i, size in enumerate(sizes):
        lo, hi = np.searchsorted(outcome.kept, bounds[i]), np.searchsorted(outcome.kept, bounds[i + 1])
        parts.append((outcome.good.iloc[lo:hi].reset_index(drop=True), size - int(hi - lo)))
    return parts


# -- bars into RedisTimeSeries -------------------------------------------------------------------------------
def bar_retention_ms(timeframe: str) -> int:
    """RETENTION of provider bar series, every timeframe: the "bars" kind of ``config/retention.yaml``."""
    return retention.retention_ms("bars")


_ensured: set[tuple[str, int]] = set()


def ensure_bar_series(client: redis.Redis, k: Keys, ticker: str, source: str, timeframe: str) -> None:
    """Create the five OHLCV series of one ticker/source/timeframe (LAST policy) once per process."""
    retention_ms = bar_retention_ms(timeframe)
    for name in BAR_FIELDS:
        key = k.provider_bar(ticker, source, timeframe, name)
        if (key, retention_ms) in _ensured:
            continue
        labels = {"ticker": ticker, "field": name, "kind": "bar", "timeframe": timeframe, "source": source}
        ensure_series(client, key, retention_ms, labels, duplicate_policy="LAST")
        _ensured.add((key, retention_ms))


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


def write_bars(frame: pd.DataFrame, *, chunk_bars: int = 2000) -> BarWrite:
    """Write validated bars (``ticker, timeframe, source, ts`` + OHLCV) with TS.MADD; idempotent (LAST policy)."""
    result = BarWrite()
    if frame.empty:
        return result
    client, k = redis_client(), keys()
    rejected_idx: list[int] = []
    for (ticker, timeframe, source), group in frame.groupby(["ticker", "timeframe", "source"], sort=False):
        ensure_bar_series(client, k, ticker, source, timeframe)
        ts = group["ts"].to_numpy(dtype=np.int64)
        close_key = k.provider_bar(ticker, source, timeframe, "close")
        span = int(ts.max() - ts.min() + 1)
        existing = client.execute_command("TS.RANGE", close_key, int(ts.min()), int(ts.max()), "AGGREGATION", "count", span)
        result.already_present += int(sum(float(v) for _, v in existing))
        field_keys = [k.provider_bar(ticker, source, timeframe, name) for name in BAR_FIELDS]
        values = [group[name].to_numpy(dtype=np.float64) for name in BAR_FIELDS]
        stamps = ts.tolist()
        commands, spans = [], []
        for start in range(0, len(stamps), chunk_bars):
            stop = min(start + chunk_bars, len(stamps))
            args: list[Any] = ["TS.MADD"]
            chunk = stamps[start:stop]
            for key, column in zip(field_keys, values):
                args.extend(chain.from_iterable(zip(repeat(key), chunk, column[start:stop].tolist())))
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
            for j, r in enumerate(reply):
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


# -- raw streams: publish, then drain ------------------------------------------------------------------------
@task(**IO_RETRIES)
def publish(stream: str, messages: list[dict[str, str]], checkpoints: dict[str, str]) -> int:
    """XADD messages to a raw stream, then advance the sources' checkpoints (a crash in between only re-fetches)."""
    client = redis_client()
    pipe = client.pipeline(transaction=False)
    maxlen = StreamSettings().maxlen
    for message in messages:
        pipe.xadd(stream, message, maxlen=maxlen, approximate=True)
    for key, value in checkpoints.items():
        pipe.set(key, value)
    pipe.execute()
    return len(messages)


@task(**IO_RETRIES)
def drain_stream(dataset: str) -> dict[str, int]:
    """Process what is waiting in the dataset's raw stream with its processor (a one-shot consumer)."""
    from headwater.processors import drain, news, social

    client, k = redis_client(), keys()
    module, stream = {"news": (news, k.raw_news), "social": (social, k.raw_social)}[dataset]
    handler = module.make_handler(client, k)
    stats = drain(client, k, stream, handler, stage=f"{dataset}_processor")
    return {"processed": stats.entries, "stored": handler.stats.stored, "duplicates": handler.stats.duplicates,
            "untagged": handler.stats.untagged, "dead_letters": stats.dead_letters}  # fmt: skip


@task(**IO_RETRIES)
def drop_duplicates(dataset: str, frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop rows found twice in this run or already stored (``seen:{dataset}``); return (new rows, duplicates)."""
    if frame.empty:
        return frame, 0
    once = frame.drop_duplicates(subset="id", keep="first")
    ids = once["id"].tolist()
    flags = redis_client().smismember(keys().seen(dataset), ids)
    fresh = once[[not flag for flag in flags]].reset_index(drop=True)
    return fresh, len(frame) - len(fresh)


@task(**IO_RETRIES)
def quarantine_unparsed(dataset: str, rejected: list[tuple[dict[str, Any], str]], model: str, flow: str,
                        source: str) -> int:  # fmt: skip
    """Quarantine entries the client could not parse into ``model`` (with the reason as the failed check)."""
    return quarantine(dataset, rejected_rows(rejected, model), flow=flow, source=source) if rejected else 0
