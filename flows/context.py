"""The one thing a flow run gets its dependencies from: ``FlowContext``, built once at the start of the run.

    with flow_context(data_sources=data_sources) as ctx:      # Settings() -> Redis, keys, Blob, clients
        frame = fetch_intraday(ctx, "AAPL")                    # every task takes the context first
        write_bars(ctx.layout, frame)

``flow_context`` reads ``Settings`` from the environment once; a test builds ``FlowContext(client, keys, store)``
against its own Redis namespace and containers instead. Nothing is cached in module globals: the Redis client,
the Blob store (created on first use, containers ensured), the TimeSeries layout and the provider clients live
as long as the context, and ``close()`` (the ``with`` block) releases them.

**Provider clients** (``ctx.provider("alphavantage")``) are built on first use from ``settings.<provider>`` or, when
a key is not in the environment and the run is under Prefect, from a Prefect Secret block named
``headwater-<provider>-api-key``: secrets never become flow parameters. Every client gets a ``SharedRateLimiter``
for its provider *and* key (``quota:{provider:keyid}:...`` in Redis) with the limits of ``config/data_sources.yaml``
(or the context's ``data_sources`` file): per-minute/per-second rates and the daily budget, shared by every worker
on every machine. ``python -m flows.deploy`` mirrors the per-minute rates as Prefect global concurrency limits
(``headwater-<provider>``) for the UI; the Redis limiter is what enforces them, because a Prefect limit can
express neither a daily budget nor a per-key quota, and the real-time streamer shares these quotas too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import redis
from pydantic import SecretStr

from headwater.config import provider_limits
from headwater.keys import Keys
from headwater.providers.alphavantage import AlphaVantageClient
from headwater.providers.http import HttpClient, key_id
from headwater.providers.newsapi import NewsApiClient
from headwater.providers.reddit import RedditClient
from headwater.providers.x import XClient
from headwater.ratelimit import SharedRateLimiter
from headwater.settings import ProviderMode, Settings
from headwater.storage.blob import BlobStore
from headwater.storage.timeseries import TimeSeriesLayout

CLIENTS: dict[str, type[HttpClient]] = {
    "alphavantage": AlphaVantageClient, "newsapi": NewsApiClient, "reddit": RedditClient, "x": XClient,
}  # fmt: skip


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class FlowContext:
    """Settings, Redis client, key schema, Blob store, TimeSeries layout and provider clients of one flow run.

    A plain class on purpose (not a dataclass): Prefect walks dataclass task arguments looking for futures.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        store: BlobStore | None = None,
        *,
        settings: Settings | None = None,
        data_sources: str | None = None,
        actor: str = "flow",
        now_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.client = client
        self.keys = keys
        self.settings = settings if settings is not None else Settings()
        self.data_sources = data_sources  # a data_sources.yaml with other quotas (tests, benches)
        self.actor = actor  # who the audit log names
        self.now_ms = now_ms
        self._store = store
        self._layout: TimeSeriesLayout | None = None
        self._clients: dict[str, HttpClient] = {}
        self._lock = threading.Lock()

    @property
    def store(self) -> BlobStore:
        """The Blob store (built from ``settings.blob`` on first use, containers ensured)."""
        with self._lock:
            if self._store is None:
                store = BlobStore(self.settings.blob)
                store.ensure_containers()
                self._store = store
            return self._store

    @property
    def warm(self) -> str:
        """The warm container."""
        return self.store.settings.warm_container

    @property
    def layout(self) -> TimeSeriesLayout:
        """The TimeSeries layout (creates bar series once per run)."""
        with self._lock:
            if self._layout is None:
                self._layout = TimeSeriesLayout(self.client, self.keys, self.settings.streams)
            return self._layout

    def provider_settings(self, provider: str) -> Any:
        """A provider's settings, with its key from a Prefect Secret block if the environment has none."""
        ps = getattr(self.settings, provider)
        if ps.api_key is None and ps.mode is not ProviderMode.SIMULATED and not ps.base_url:
            secret = _secret_block(f"headwater-{provider}-api-key")
            if secret:
                ps = ps.model_copy(update={"api_key": SecretStr(secret)})
        return ps

    def provider(self, provider: str) -> HttpClient:
        """The run's client for ``provider`` with its shared limiter (one per run: tokens and sessions persist)."""
        with self._lock:
            client = self._clients.get(provider)
            if client is None:
                client = self._clients[provider] = self._build_client(provider)
            return client

    def _build_client(self, provider: str) -> HttpClient:
        ps = self.provider_settings(provider)
        base_url = ps.resolved_base_url(self.settings.standins)
        api_key = ps.resolved_key(self.settings.standins)
        kid = key_id(api_key)
        limiter = SharedRateLimiter(self.client, self.keys, provider, kid, provider_limits(provider, self.data_sources))
        kwargs: dict[str, Any] = {"timeout_s": ps.timeout_s, "limiter": limiter}
        if provider == "reddit":
            live_hosts = ps.effective_mode is ProviderMode.LIVE and not ps.base_url
            kwargs.update(client_secret=ps.client_secret, user_agent=ps.user_agent,
                          auth_url=ps.LIVE_AUTH_URL if live_hosts else base_url)  # fmt: skip
        return CLIENTS[provider](base_url, api_key, **kwargs)

    def close(self) -> None:
        """Release the provider sessions and the Redis connections."""
        for client in self._clients.values():
            client.session.close()
        self._clients.clear()
        self.client.close()

    def __enter__(self) -> FlowContext:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FlowContext(prefix={self.keys.prefix!r}, actor={self.actor!r})"


def flow_context(
    settings: Settings | None = None,
    *,
    data_sources: str | None = None,
    actor: str = "flow",
    now_ms: Callable[[], int] = wall_clock_ms,
) -> FlowContext:
    """The context of one flow run, from ``settings`` (default: the environment's)."""
    from headwater.storage.redis import connect

    settings = settings if settings is not None else Settings()
    return FlowContext(connect(settings.redis), Keys(settings.redis.key_prefix), settings=settings,
                       data_sources=data_sources, actor=actor, now_ms=now_ms)  # fmt: skip


def _secret_block(name: str) -> str | None:
    """The value of Prefect Secret block ``name`` when running under Prefect and it exists, else None."""
    try:
        from prefect.blocks.system import Secret
        from prefect.context import get_run_context

        get_run_context()  # raises outside a flow/task run: no API to ask
        return str(Secret.load(name).get())
    except Exception:  # noqa: BLE001 - no run context, no block, no API: the environment is the answer
        return None
