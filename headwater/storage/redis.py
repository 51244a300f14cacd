"""Redis connections and their retry policy (the TimeSeries layout and writes are in ``headwater.storage.timeseries``)."""

from __future__ import annotations

import logging
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from headwater.log import redact_url
from headwater.settings import START_THE_STACK, NotConfiguredError, RedisSettings, ServiceUnavailableError

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
    if is_cluster(url):  # the cluster client's own retry also refreshes the slot map
        return RedisCluster.from_url(url, **options)  # type: ignore[return-value]
    return redis.Redis.from_url(url, health_check_interval=30, **{"retry": retry_policy(), **options})


def connect_async(url: str) -> aioredis.Redis:
    """An asyncio client (cluster-aware like ``connect``) for the streamer."""
    if is_cluster(url):
        return AsyncRedisCluster.from_url(url)  # type: ignore[return-value]
    return aioredis.Redis.from_url(url, retry=async_retry_policy())


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
