"""Redis connections and their retry policy (the TimeSeries layout and writes are in ``headwater.storage.timeseries``)."""

from __future__ import annotations

import logging

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from headwater.settings import RedisSettings

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
