"""Redis connections and the TimeSeries layout (retention, duplicate policy, labels, compaction rules)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from headwater import retention
from headwater.keys import BAR_FIELDS, TICK_FIELDS, Keys
from headwater.settings import RedisSettings, StreamSettings
from headwater.timeframes import TIMEFRAMES

log = logging.getLogger("headwater.storage.redis")

# Every client retries a command on connection errors and timeouts (a Redis restart, a failover; "LOADING" while a
# restarted server reads its AOF is a ConnectionError too) with exponential backoff and full jitter: 5 retries,
# 50 ms doubling to at most 1 s (~1.5 s in all). Longer outages surface as ConnectionError to the loops, which
# back off and resume on their own (streamer/reader.py, streamer/processor.py, the flows' task retries), and to
# the feature API, which answers 503.
RETRY_ERRORS = (RedisConnectionError, RedisTimeoutError)


def retry_policy() -> Retry:
    """A fresh retry policy for one sync client (redis-py copies it per connection)."""
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=5, supported_errors=RETRY_ERRORS)


def async_retry_policy() -> AsyncRetry:
    return AsyncRetry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=5, supported_errors=RETRY_ERRORS)
# Server-side compactions of the tick series into bars: (source tick field, aggregation) per bar field.
BAR_RULES: dict[str, tuple[str, str]] = {
    "open": ("price", "first"),
    "high": ("price", "max"),
    "low": ("price", "min"),
    "close": ("price", "last"),
    "volume": ("volume", "sum"),
}


def resolve_redis_url(settings: RedisSettings | None = None) -> str:
    """The Redis URL: ``REDIS_URL``/``HEADWATER_REDIS_URL`` if set, else the embedded Redis Stack's."""
    settings = settings or RedisSettings()
    if settings.url is not None:
        return settings.url.get_secret_value()
    from headwater.services import resolve  # the embedded default; imported lazily (it knows about processes)

    return resolve().redis_url


def is_cluster(url: str) -> bool:
    """Whether the server at ``url`` runs in Redis Cluster mode (then keys are routed by hash slot)."""
    probe = redis.Redis.from_url(url, socket_timeout=10)
    try:
        return int(probe.info("cluster").get("cluster_enabled", 0)) == 1
    finally:
        probe.close()


def connect(settings: RedisSettings | None = None, *, url: str | None = None, **kwargs: object) -> redis.Redis:
    """A client for the configured Redis (the password comes from the URL, never from code or logs).

    A Redis Cluster (OSS cluster API) is detected and gets a ``RedisCluster`` client; the key schema is
    cluster-safe (per-ticker hash tags), and the stream processors switch to per-slot commits.
    """
    settings = settings or RedisSettings()
    url = url or resolve_redis_url(settings)
    options = {"socket_timeout": settings.socket_timeout_s, "socket_connect_timeout": settings.socket_timeout_s, **kwargs}
    if is_cluster(url):  # the cluster client's own retry also refreshes the slot map
        return RedisCluster.from_url(url, **options)  # type: ignore[return-value]
    return redis.Redis.from_url(url, health_check_interval=30, **{"retry": retry_policy(), **options})


def connect_async(url: str) -> aioredis.Redis:
    """An asyncio client (cluster-aware like ``connect``) for the streamer."""
    if is_cluster(url):
        return AsyncRedisCluster.from_url(url)  # type: ignore[return-value]
    return aioredis.Redis.from_url(url, retry=async_retry_policy())


class TimeSeriesLayout:
    """Creates the per-ticker series and compaction rules once, idempotently and race-safely.

    Retention comes from ``config/retention.yaml`` (``headwater.retention``): tick series the "ticks" kind,
    every bar series the "bars" kind (hot window + grace, so the archive flow copies bars to warm storage
    before Redis drops them).
    Tick series use ``DUPLICATE_POLICY LAST`` (a replay rewrites the same value), except volume, which is
    ``SUM`` because two prints can share a millisecond; exactly-once for volume is the writer's job (trade
    high-water marks committed with the writes, see ``streamer.processor``).
    """

    def __init__(self, client: redis.Redis, keys: Keys, streams: StreamSettings | None = None) -> None:
        streams = streams or StreamSettings()
        self.client = client
        self.keys = keys
        self.tick_retention_ms = retention.retention_ms("ticks")
        self.bar_retention_ms = retention.retention_ms("bars")
        self._ready: set[str] = set()

    def ensure(self, tickers: Iterable[str]) -> None:
        """Create whatever series/rules of these tickers do not exist yet (cached per process)."""
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
