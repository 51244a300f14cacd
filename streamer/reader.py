"""The thin socket-side writer: raw frames -> partitioned Redis Streams, pipelined, with bounded memory.

Work per frame is only what routing needs: decode the JSON array, look at ``ev``/``sym``, append to the
partition that owns the ticker, and remember the last event time per (channel, ticker) for gap fill.
Validation and storage happen in the stream processors. When every event of a frame belongs to one partition
(the usual case when connections are sharded by partition) the original bytes are forwarded untouched.

Batching without a timer on the latency path: a frame is sent at once when no pipeline is in flight; while
one is, new entries collect in the next batch (so batches grow exactly when Redis is busy), up to
``max_pending_events``. Past that the reader waits for Redis (so the socket is read no faster than Redis
absorbs), and counts the wait in ``backpressure_waits`` / ``backpressure_s``, which the status command and
the log show. Nothing is ever dropped here: an entry either reaches Redis or the streamer stops with an error.
While Redis is down (a restart, a failover) a batch is retried with capped backoff for up to ``max_outage_s``
(5 minutes), its entries and the ones arriving meanwhile held in memory (bounded as above).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from headwater.keys import Keys, last_event_field, partition_of

log = logging.getLogger("headwater.streamer.reader")


@dataclass
class ReaderStats:
    frames: int = 0
    events: int = 0
    entries: int = 0
    dead_letters: int = 0
    flushes: int = 0
    backpressure_waits: int = 0
    backpressure_s: float = 0.0
    redis_retries: int = 0


class PartitionedStreamWriter:
    """Routes frames of one connection to ``stream:raw_market_data:{p}`` and flushes them pipelined."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        partitions: int,
        *,
        maxlen: int = 2_000_000,
        connection: int = 0,
        source: str = "polygon",
        flush_interval_s: float = 0.005,
        max_batch_entries: int = 256,
        max_pending_events: int = 100_000,
        max_outage_s: float = 300.0,
    ) -> None:
        self.client = client
        self.keys = keys
        self.partitions = partitions
        self.streams = [keys.raw_market_data(p) for p in range(partitions)]
        self.maxlen = maxlen
        self.connection = str(connection).encode()
        self.source = source.encode()
        self.flush_interval_s = flush_interval_s
        self.max_batch_entries = max_batch_entries
        self.max_pending_events = max_pending_events
        self.max_outage_s = max_outage_s
        self.stats = ReaderStats()
        self.last_event: dict[str, int] = {}  # "T.AAPL" -> ms of the newest event seen
        self._dirty_last: set[str] = set()
        self._partition_of: dict[str, int] = {}
        self._batch: list[tuple[str, dict[bytes, bytes]]] = []
        self._batch_events = 0
        self._inflight: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None

    # -- frames ----------------------------------------------------------------------------------------
    def partition(self, ticker: str) -> int:
        p = self._partition_of.get(ticker)
        if p is None:
            p = self._partition_of[ticker] = partition_of(ticker, self.partitions)
        return p

    async def handle_frame(self, frame: bytes, recv_ms: int) -> None:
        """Route one WebSocket frame (a JSON array of events)."""
        self.stats.frames += 1
        try:
            events = orjson.loads(frame)
            if not isinstance(events, list):
                raise ValueError(f"frame is a JSON {type(events).__name__}, not an array")
        except ValueError as exc:
            self._dead_letter(frame, f"malformed frame: {exc}", recv_ms)
            await self._maybe_flush()
            return
        by_partition: dict[int, list[object]] = {}
        has_status = False
        last_event = self.last_event
        for event in events:
            if not isinstance(event, dict):
                by_partition.setdefault(0, []).append(event)  # the worker dead-letters it with the reason
                continue
            ev = event.get("ev")
            if ev == "status":
                has_status = True  # the WebSocket client logs (or raises on) statuses; they are not market data
                continue
            sym = event.get("sym")
            if not isinstance(sym, str):
                by_partition.setdefault(0, []).append(event)
                continue
            stamp = event.get("s") if ev in ("A", "AM") else event.get("t")
            if isinstance(stamp, int):
                channel_key = last_event_field(ev, sym)
                if stamp > last_event.get(channel_key, 0):
                    last_event[channel_key] = stamp
                    self._dirty_last.add(channel_key)
            by_partition.setdefault(self.partition(sym), []).append(event)
        if len(by_partition) == 1 and not has_status:
            (p, part_events), = by_partition.items()
            self._append(p, frame, len(part_events), recv_ms)
        else:
            for p, part_events in by_partition.items():
                self._append(p, orjson.dumps(part_events), len(part_events), recv_ms)
        await self._maybe_flush()

    async def add_events(self, events: list[dict[str, object]], recv_ms: int, origin: str) -> None:
        """Append synthetic events (gap fill from REST) the same way frames are routed."""
        by_partition: dict[int, list[dict[str, object]]] = {}
        for event in events:
            by_partition.setdefault(self.partition(str(event["sym"])), []).append(event)
        for p, part_events in by_partition.items():
            self._append(p, orjson.dumps(part_events), len(part_events), recv_ms, origin=origin)
        await self._maybe_flush()

    def _append(self, partition: int, payload: bytes, n_events: int, recv_ms: int, origin: str = "ws") -> None:
        fields = {b"d": payload, b"rt": str(recv_ms).encode(), b"c": self.connection, b"src": self.source, b"o": origin.encode()}
        self._batch.append((self.streams[partition], fields))
        self._batch_events += n_events
        self.stats.events += n_events

    def _dead_letter(self, raw: bytes, reason: str, recv_ms: int) -> None:
        self.stats.dead_letters += 1
        log.warning("dead letter (connection %s): %s", self.connection.decode(), reason)
        fields = {
            b"reason": reason.encode()[:1000],
            b"raw": raw[:1_000_000],
            b"stage": b"streamer",
            b"source": self.source,
            b"rt": str(recv_ms).encode(),
        }
        self._batch.append((self.keys.dead_letter, fields))

    # -- flushing ----------------------------------------------------------------------------------------
    async def _maybe_flush(self) -> None:
        """Send now if Redis is idle (no added latency); while a flush is in flight, frames batch up."""
        idle = self._inflight is None or self._inflight.done()
        if idle or len(self._batch) >= self.max_batch_entries or self._batch_events >= self.max_pending_events:
            await self.flush(wait_if_busy=self._batch_events >= self.max_pending_events)

    async def flush(self, wait_if_busy: bool = True) -> None:
        """Send the current batch (and the changed last-event times) unless a flush is in flight."""
        if self._inflight is not None and not self._inflight.done():
            if not wait_if_busy:
                return
            started = time.perf_counter()
            self.stats.backpressure_waits += 1
            await self._inflight
            waited = time.perf_counter() - started
            self.stats.backpressure_s += waited
            if waited > 0.1:
                log.warning("back-pressure: waited %.0f ms for Redis with %d events pending", waited * 1000, self._batch_events)
        if self._inflight is not None and self._inflight.done():
            self._inflight.result()  # re-raise a failed flush: the streamer must stop loudly, not drop data
        if not self._batch and not self._dirty_last:
            return
        batch, self._batch, self._batch_events = self._batch, [], 0
        last = {k: self.last_event[k] for k in self._dirty_last}
        self._dirty_last = set()
        self._inflight = asyncio.create_task(self._send(batch, last))

    async def _send(self, batch: list[tuple[str, dict[bytes, bytes]]], last: dict[str, int]) -> None:
        """Write one batch; while Redis is down (restart, failover) retry with capped backoff and jitter.

        Meanwhile new frames collect in the next batch up to ``max_pending_events``, then the socket is not
        read (back-pressure). Only an outage longer than ``max_outage_s`` stops the streamer, with an error.
        """
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for stream, fields in batch:
                        pipe.xadd(stream, fields, maxlen=self.maxlen, approximate=True)
                    if last:
                        pipe.hset(self.keys.last_event, mapping=last)
                    await pipe.execute()
                self.stats.entries += len(batch)
                self.stats.flushes += 1
                if attempt:
                    log.warning("Redis answers again: wrote %d entries after %.1f s", len(batch), time.monotonic() - started)
                return
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # A retried pipeline may repeat XADDs that landed before the error: the processors skip
                # trades at or below their per-ticker sequence high-water mark, and quotes/bars are LAST.
                self.stats.redis_retries += 1
                waited = time.monotonic() - started
                if waited > self.max_outage_s:
                    raise RuntimeError(
                        f"could not write {len(batch)} stream entries to Redis for {waited:.0f} s: {exc}; stopping"
                    ) from exc
                delay = random.uniform(0.5, 1.0) * min(5.0, 0.05 * 2**attempt)
                attempt += 1
                log.warning("Redis unavailable while flushing %d entries (%s); retry %d in %.2fs", len(batch), exc, attempt, delay)
                await asyncio.sleep(delay)

    async def run_flusher(self) -> None:
        """Flush on a timer too: entries that arrived while a flush was in flight go out within ``flush_interval``."""
        while True:
            await asyncio.sleep(self.flush_interval_s)
            await self.flush(wait_if_busy=False)

    async def close(self) -> None:
        """Flush everything still pending and wait for it."""
        await self.flush(wait_if_busy=True)
        if self._inflight is not None:
            await self._inflight
        await self.flush(wait_if_busy=True)
        if self._inflight is not None:
            await self._inflight
