"""Redis connections and the TimeSeries layout (retention, duplicate policy, labels, compaction rules)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import ResponseError
from redis.retry import Retry

from headwater import retention
from headwater.keys import BAR_FIELDS, TICK_FIELDS, Keys
from headwater.log import redact_url
from headwater.settings import (
    START_THE_STACK, NotConfiguredError, RedisSettings, ServiceUnavailableError, StreamSettings,
)
from headwater.timeframes import TIMEFRAMES

log = logging.getLogger("headwater.storage.redis")

# Server-side compactions of the tick series into bars: (source tick field, aggregation) per bar field.
BAR_RULES: dict[str, tuple[str, str]] = {
    "open": ("price", "first"),
    "high": ("price", "max"),
    "low": ("price", "min"),
    "close": ("price", "last"),
    "volume": ("volume", "sum"),
}


#: Modules Headwater needs -> (names MODULE LIST may use, a command the module provides).
REDIS_MODULES: dict[str, tuple[frozenset[str], str]] = {
    "timeseries": (frozenset({"timeseries"}), "TS.ADD"),
    "search": (frozenset({"search", "ft"}), "FT.CREATE"),
    "ReJSON": (frozenset({"rejson"}), "JSON.SET"),
    "bf": (frozenset({"bf"}), "BF.ADD"),
}


class MissingRedisModuleError(ServiceUnavailableError):
    """The Redis server lacks modules Headwater needs; ``missing`` names them."""

    def __init__(self, missing: list[str], where: str) -> None:
        self.missing = missing
        super().__init__(
            f"Redis at {where} is missing the module(s) {', '.join(missing)} "
            f"(Headwater needs {', '.join(REDIS_MODULES)}). Use Redis Stack or Redis 8 (modules built in), "
            f"or unset REDIS_URL/HEADWATER_REDIS_URL to use the embedded Redis Stack ({START_THE_STACK})."
        )


def resolve_redis_url(settings: RedisSettings | None = None) -> str:
    """The Redis URL: ``REDIS_URL``/``HEADWATER_REDIS_URL``, else the embedded Redis Stack's (services.env)."""
    settings = settings or RedisSettings()
    if settings.url is None:
        raise NotConfiguredError("Redis", ("REDIS_URL", "HEADWATER_REDIS_URL"))
    return settings.url.get_secret_value()


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
    if is_cluster(url):
        return RedisCluster.from_url(url, **options)  # type: ignore[return-value]
    return redis.Redis.from_url(url, health_check_interval=30, **options)


def connect_async(url: str) -> aioredis.Redis:
    """An asyncio client (cluster-aware like ``connect``) for the streamer."""
    if is_cluster(url):
        return AsyncRedisCluster.from_url(url)  # type: ignore[return-value]
    return aioredis.Redis.from_url(url)


def probe_client(url: str, timeout: float) -> redis.Redis:
    """A client for one-shot checks: no retries (redis-py 8 retries 10x by default, auth errors included)."""
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))


def check_redis_modules(client_or_url: redis.Redis | str) -> dict[str, str]:
    """Check the server has timeseries, search, ReJSON and bf; return ``{module: version}``.

    Uses MODULE LIST (Redis Stack and Redis 8 both list their modules); where MODULE is not permitted
    (managed services, restricted ACL users) it falls back to COMMAND INFO of one command per module.
    Raises :class:`MissingRedisModuleError` naming exactly what is missing.
    """
    if isinstance(client_or_url, str):
        client, where, own = probe_client(client_or_url, 10.0), redact_url(client_or_url), True
    else:
        client, where, own = client_or_url, _client_location(client_or_url), False
    found: dict[str, str] = {}
    try:
        try:
            loaded = {
                _text(m.get(b"name", m.get("name"))).lower(): _module_version(m.get(b"ver", m.get("ver")))
                for m in client.module_list()
            }
            for name, (aliases, _) in REDIS_MODULES.items():
                version = next((loaded[a] for a in aliases if a in loaded), None)
                if version is not None:
                    found[name] = version
        except redis.ResponseError:  # MODULE not allowed here: probe one command per module instead
            probes = [probe for _, probe in REDIS_MODULES.values()]
            infos = client.execute_command("COMMAND", "INFO", *probes)
            known = {_text(i[0]).lower() for i in infos if i} if isinstance(infos, list) else set()
            if isinstance(infos, dict):
                known = {_text(k).lower() for k, v in infos.items() if v}
            for name, (_, probe) in REDIS_MODULES.items():
                if probe.lower() in known:
                    found[name] = "unknown"
    except (redis.ConnectionError, redis.TimeoutError, redis.AuthenticationError) as exc:
        raise ServiceUnavailableError(f"cannot reach Redis at {where}: {exc}") from exc
    finally:
        if own:
            client.close()
    missing = [name for name in REDIS_MODULES if name not in found]
    if missing:
        raise MissingRedisModuleError(missing, where)
    return found


def _module_version(ver: Any) -> str:
    try:
        n = int(ver)
    except (TypeError, ValueError):
        return str(ver)
    return f"{n // 10000}.{n // 100 % 100}.{n % 100}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _client_location(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"


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
