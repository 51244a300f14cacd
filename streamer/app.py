"""The always-running market-data streamer: N Polygon WebSocket connections -> partitioned Redis Streams.

Sharding: connection ``c`` of ``C`` owns the stream partitions ``p`` with ``p % C == c`` and subscribes
exactly the tickers of those partitions, so each frame it receives lands in its own partitions (usually one
XADD of the untouched frame). A wildcard subscription (``T.*``) uses one connection.

Gap fill: after every reconnect, the minute aggregates missed while the socket was down are fetched over
REST (through the shared rate limiter, in a background thread so the socket keeps being read) and appended
to the same streams as ``AM`` events; bars are LAST-policy series, so a bar that also arrives over the socket
is the same sample, never a second one.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict

import orjson
import redis.asyncio as aioredis

from headwater.config import provider_limits
from headwater.keys import Keys, last_event_field, parse_last_event_field, partition_of
from headwater.providers.http import ProviderError, call_with_retries, key_id
from headwater.providers.polygon import PolygonRest, PolygonStream, subscription_params
from headwater.ratelimit import SharedRateLimiter
from headwater.settings import Settings
from headwater.storage.redis import RETRY_ERRORS, connect, connect_async, resolve_redis_url
from headwater.timeframes import MINUTE_MS
from streamer.reader import PartitionedStreamWriter

log = logging.getLogger("headwater.streamer")


def shard_tickers(tickers: Sequence[str], partitions: int, connections: int) -> list[list[str]]:
    """Tickers of each connection: connection c gets the tickers whose partition p has p % connections == c."""
    shards: list[list[str]] = [[] for _ in range(connections)]
    for ticker in tickers:
        shards[partition_of(ticker, partitions) % connections].append(ticker)
    return shards


class Streamer:
    """Runs the connections, their stream writers, gap fill and metrics until stopped."""

    def __init__(
        self,
        settings: Settings,
        tickers: Sequence[str],
        *,
        keys: Keys | None = None,
        redis_url: str | None = None,
        clock_ms: Callable[[], float] = lambda: time.time() * 1000,
    ) -> None:
        self.settings = settings
        self.clock_ms = clock_ms
        self.keys = keys or Keys(settings.redis.key_prefix)
        self.redis_url = redis_url or resolve_redis_url(settings.redis)
        polygon = settings.polygon
        self.connections = 1 if polygon.wildcard else polygon.connections
        if self.connections > settings.streams.partitions:
            raise ValueError(
                f"{self.connections} connections but only {settings.streams.partitions} stream partitions: "
                "raise HEADWATER_STREAM_PARTITIONS or lower HEADWATER_POLYGON_CONNECTIONS"
            )
        self.shards = [list(tickers)] if polygon.wildcard else shard_tickers(tickers, settings.streams.partitions, self.connections)
        self.ws_url = polygon.resolved_ws_url(settings.standins)
        self.api_key = polygon.resolved_key(settings.standins)
        self.writers: list[PartitionedStreamWriter] = []
        self.streams: list[PolygonStream] = []
        self.gap_filled_bars = 0
        self._gap_tasks: set[asyncio.Task[None]] = set()
        self._client: aioredis.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None

    def request_stop(self) -> None:
        """Stop streaming (thread-safe; also wired to SIGTERM/SIGINT when run on the main thread)."""
        if self._loop is not None and self._stop_requested is not None:
            self._loop.call_soon_threadsafe(self._stop_requested.set)

    async def run(self, duration_s: float | None = None) -> None:
        """Stream until stopped, ``duration_s`` elapsed, or a connection fails fatally (then re-raise)."""
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._stop_requested.set)
        self._client = connect_async(self.redis_url)
        sync_client = connect(url=self.redis_url)
        limiter = SharedRateLimiter(sync_client, self.keys, "polygon", key_id(self.api_key), provider_limits("polygon"))
        self.rest = PolygonRest(
            self.settings.polygon.resolved_base_url(self.settings.standins), self.api_key, limiter=limiter,
            timeout_s=self.settings.polygon.timeout_s,
        )  # fmt: skip
        known_last = {k.decode(): int(v) for k, v in (await self._client.hgetall(self.keys.last_event)).items()}
        tasks: list[asyncio.Task[None]] = []
        for c, shard in enumerate(self.shards):
            if not shard:
                continue
            writer = PartitionedStreamWriter(
                self._client, self.keys, self.settings.streams.partitions,
                maxlen=self.settings.streams.maxlen, connection=c,
            )  # fmt: skip
            owned = set(shard)
            writer.last_event.update({k: v for k, v in known_last.items() if parse_last_event_field(k)[1] in owned})
            subs = subscription_params(shard, self.settings.polygon.channels, self.settings.polygon.wildcard)
            stream = PolygonStream(
                self.ws_url, self.api_key, subs, writer.handle_frame,
                on_reconnect=self._gap_filler(c, writer, shard),
                max_reconnects=self.settings.polygon.max_reconnects,
                backoff_base_s=self.settings.polygon.reconnect_base_s,
                backoff_max_s=self.settings.polygon.reconnect_max_s,
                name=f"polygon-{c}",
            )  # fmt: skip
            self.writers.append(writer)
            self.streams.append(stream)
            tasks += [asyncio.create_task(stream.run(), name=f"ws-{c}"), asyncio.create_task(writer.run_flusher())]
        tasks.append(asyncio.create_task(self._publish_metrics_forever()))
        log.info(
            "streaming %d tickers over %d connection(s) from %s into %d partitions",
            sum(map(len, self.shards)), len(self.streams), self.ws_url, self.settings.streams.partitions,
        )  # fmt: skip
        try:
            ws_tasks = [t for t in tasks if t.get_name().startswith("ws-")]
            stop_waiter = asyncio.create_task(self._stop_requested.wait())
            done, _ = await asyncio.wait([*ws_tasks, stop_waiter], timeout=duration_s, return_when=asyncio.FIRST_COMPLETED)
            stop_waiter.cancel()
            for task in done:
                if task is not stop_waiter:
                    task.result()  # auth failure / gave up: raise so a person sees it
        finally:
            for stream in self.streams:
                await stream.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._gap_tasks:
                await asyncio.gather(*self._gap_tasks, return_exceptions=True)
            for writer in self.writers:
                await writer.close()
            try:
                await self._publish_metrics()
            except RETRY_ERRORS as exc:
                log.warning("could not publish the final streamer metrics: %s", exc)
            await self._client.aclose()
            sync_client.close()
            log.info("stopped: %s", self.totals())

    def totals(self) -> dict[str, int]:
        events = sum(w.stats.events for w in self.writers)
        return {
            "frames": sum(w.stats.frames for w in self.writers),
            "events": events,
            "entries": sum(w.stats.entries for w in self.writers),
            "dead_letters": sum(w.stats.dead_letters for w in self.writers),
            "reconnects": sum(s.stats.reconnects for s in self.streams),
            "gap_filled_bars": self.gap_filled_bars,
            "backpressure_waits": sum(w.stats.backpressure_waits for w in self.writers),
            "redis_retries": sum(w.stats.redis_retries for w in self.writers),
        }

    # -- gap fill ----------------------------------------------------------------------------------------
    def _gap_filler(self, c: int, writer: PartitionedStreamWriter, shard: list[str]):  # noqa: ANN202
        async def on_reconnect(n: int) -> None:
            if "AM" not in self.settings.polygon.channels:
                return
            disconnected_ms = max(writer.last_event.values(), default=int(self.clock_ms()))
            # Where each ticker's bars stopped, taken now: the live socket may deliver a newer bar while earlier
            # tickers are being filled, and that must not hide the gap before it.
            last_bars = {t: writer.last_event.get(last_event_field("AM", t)) for t in shard}
            task = asyncio.create_task(self._fill_gaps(c, writer, shard, disconnected_ms, last_bars, reconnect=n))
            self._gap_tasks.add(task)
            task.add_done_callback(self._gap_tasks.discard)

        return on_reconnect

    async def _fill_gaps(self, c: int, writer: PartitionedStreamWriter, shard: list[str], disconnected_ms: int,
                         last_bars: dict[str, int | None], reconnect: int) -> None:  # fmt: skip
        now_ms = int(self.clock_ms())
        last_complete = (now_ms // MINUTE_MS) * MINUTE_MS - MINUTE_MS
        filled = 0
        for ticker in shard:
            last_am = last_bars.get(ticker)
            start = last_am + MINUTE_MS if last_am else (disconnected_ms // MINUTE_MS) * MINUTE_MS
            if start > last_complete:
                continue
            try:
                bars = await asyncio.to_thread(
                    call_with_retries,
                    lambda t=ticker, s=start: self.rest.aggregates(t, s, last_complete),
                    describe=f"gap fill {ticker}",
                )
            except (ProviderError, *RETRY_ERRORS) as exc:  # Redis errors: the shared rate limiter lives there
                log.error("polygon-%d: gap fill for %s failed, minutes %d..%d stay missing: %s", c, ticker, start, last_complete, exc)
                continue
            events = [
                {"ev": "AM", "sym": b.ticker, "o": b.open, "h": b.high, "l": b.low, "c": b.close, "v": b.volume,
                 "vw": b.vwap, "s": b.start, "e": b.start + MINUTE_MS}
                for b in bars if start <= b.start <= last_complete
            ]  # fmt: skip
            if events:
                await writer.add_events(events, now_ms, origin="rest")
                newest = max(e["s"] for e in events)
                field = last_event_field("AM", ticker)
                if newest > writer.last_event.get(field, 0):
                    writer.last_event[field] = newest
                filled += len(events)
        self.gap_filled_bars += filled
        log.info("polygon-%d: reconnect %d gap fill wrote %d minute bars over REST", c, reconnect, filled)

    # -- metrics -------------------------------------------------------------------------------------------
    async def _publish_metrics(self) -> None:
        if self._client is None:
            return
        pipe = self._client.pipeline(transaction=False)
        for c, (writer, stream) in enumerate(zip(self.writers, self.streams)):
            data = {**asdict(writer.stats), **{f"ws_{k}": v for k, v in asdict(stream.stats).items() if k != "statuses"}}
            data["updated_ms"] = int(time.time() * 1000)
            pipe.set(self.keys.streamer_metrics(c), orjson.dumps(data), ex=3600)
        await pipe.execute()

    async def _publish_metrics_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self._publish_metrics()
            except RETRY_ERRORS as exc:  # Redis restarting: the next second tries again
                log.debug("could not publish streamer metrics: %s", exc)
