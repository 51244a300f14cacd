"""A consumer-group worker for the batch-side streams (news, social, documents).

``StreamWorker`` reads ``stream`` as one consumer of ``processing_group`` and hands each batch of entries
to a handler. The handler returns, per entry, ``None`` (done) or a reason string (bad input: the entry
goes to the dead-letter stream with the reason and its raw fields). Entries are acked only after the
handler returned -- the handler must make its own writes idempotent (content hashes, LAST-policy series),
because an entry whose worker died before the ack is delivered again. If the handler raises on a batch,
its entries are retried one by one; an entry that still fails is not acked: it stays pending, is claimed
again after ``claim_idle_ms`` (by this or any other worker) and is dead-lettered after ``max_deliveries``
attempts, so one poison message never blocks a stream or its batch-mates, and nothing is dropped silently.

The real-time market stream has its own partitioned processor (``streamer.processor``); this one is for
streams whose order does not matter and whose volume is minutes-scale.
"""

from __future__ import annotations

import logging
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

import redis
from redis.exceptions import ResponseError

from headwater.keys import Keys
from headwater.storage.redis import RETRY_ERRORS

log = logging.getLogger("headwater.streams")

Entry = tuple[bytes, dict[bytes, bytes]]
Handler = Callable[[list[Entry]], list[str | None]]


@dataclass
class WorkerStats:
    batches: int = 0
    entries: int = 0
    done: int = 0
    dead_letters: int = 0
    failures: int = 0
    reclaimed: int = 0
    redis_outages: int = 0


class StreamWorker:
    """One consumer of ``processing_group`` on one stream."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        stream: str,
        handler: Handler,
        *,
        consumer: str,
        stage: str,
        batch_size: int = 100,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        max_deliveries: int = 5,
    ) -> None:
        self.client = client
        self.keys = keys
        self.stream = stream
        self.handler = handler
        self.consumer = consumer
        self.stage = stage
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.stats = WorkerStats()
        self.stopping = False
        self._next_claim = 0.0

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, self.keys.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def step(self) -> int:
        """Reclaim due pending entries, else read new ones; handle one batch. Returns entries handled."""
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self.claim_idle_ms / 2000
            handled = self._reclaim()
            if handled:
                return handled
        reply = self.client.xreadgroup(self.keys.group, self.consumer, {self.stream: ">"}, count=self.batch_size, block=self.block_ms)
        if not reply:
            return 0
        entries = [(i, f) for i, f in reply[0][1] if f is not None]
        return self._handle(entries)

    def _reclaim(self) -> int:
        pending = self.client.xpending_range(self.stream, self.keys.group, "-", "+", self.batch_size, idle=self.claim_idle_ms)
        if not pending:
            return 0
        poison = {p["message_id"] for p in pending if p["times_delivered"] >= self.max_deliveries}
        claimed = self.client.xclaim(self.stream, self.keys.group, self.consumer, self.claim_idle_ms, [p["message_id"] for p in pending])
        claimed = [(i, f) for i, f in claimed if f is not None]
        self.stats.reclaimed += len(claimed)
        if poison:
            bad = [(i, f) for i, f in claimed if i in poison]
            self._dead_letter([(i, f, f"failed {self.max_deliveries} deliveries") for i, f in bad])
            claimed = [(i, f) for i, f in claimed if i not in poison]
        if claimed:
            log.info("%s: retrying %d pending entries of %s", self.consumer, len(claimed), self.stream)
            return self._handle(claimed) + len(poison)
        return len(poison)

    def _handle(self, entries: list[Entry]) -> int:
        if not entries:
            return 0
        self.stats.batches += 1
        self.stats.entries += len(entries)
        try:
            outcomes = self.handler(entries)
        except RETRY_ERRORS:
            raise  # Redis is away: the whole batch stays pending; ``run`` waits for Redis and goes on
        except Exception:
            self.stats.failures += 1
            if len(entries) > 1:  # isolate the culprit: the others of the batch should not share its fate
                log.warning("%s: handler failed on a batch of %d; retrying them one by one", self.consumer, len(entries))
                for entry in entries:
                    self.stats.batches -= 1
                    self.stats.entries -= 1
                    self._handle([entry])
                return len(entries)
            log.exception("%s: handler failed on entry %s of %s; it stays pending for a retry",
                          self.consumer, entries[0][0].decode(), self.stream)  # fmt: skip
            return 1
        if len(outcomes) != len(entries):
            raise RuntimeError(f"handler returned {len(outcomes)} outcomes for {len(entries)} entries")
        bad = [(i, f, reason) for (i, f), reason in zip(entries, outcomes) if reason is not None]
        self._dead_letter(bad)
        good = [i for (i, _), reason in zip(entries, outcomes) if reason is None]
        if good:
            self.client.xack(self.stream, self.keys.group, *good)
        self.stats.done += len(good)
        return len(entries)

    def _dead_letter(self, bad: list[tuple[bytes, dict[bytes, bytes], str]]) -> None:
        """XADD the dead letters and XACK them (and nothing else) atomically."""
        pipe = self.client.pipeline(transaction=True)
        for entry_id, fields, reason in bad:
            letter = {b"reason": reason.encode()[:2000], b"stage": self.stage.encode(), b"stream": self.stream.encode(),
                      b"entry": entry_id, b"consumer": self.consumer.encode()}  # fmt: skip
            letter.update({b"raw." + k: v[:1_000_000] for k, v in fields.items()})
            pipe.xadd(self.keys.dead_letter, letter, maxlen=1_000_000, approximate=True)
            pipe.xack(self.stream, self.keys.group, entry_id)
            log.warning("%s: dead letter %s: %s", self.consumer, entry_id.decode(), reason)
        self.stats.dead_letters += len(bad)
        if bad:
            pipe.execute()

    def run(self, should_stop: Callable[[], bool] = lambda: False, idle_exit_s: float | None = None) -> WorkerStats:
        """Work until ``should_stop()``, SIGTERM, or (with ``idle_exit_s``) that long without entries."""
        self.ensure_group()
        previous = signal.getsignal(signal.SIGTERM)

        def stop(signum: int, _frame: FrameType | None) -> None:
            self.stopping = True

        if _main_thread():
            signal.signal(signal.SIGTERM, stop)
        idle_since = time.monotonic()
        backoff_s = 0.0
        try:
            while not (self.stopping or should_stop()):
                try:
                    handled = self.step()
                except RETRY_ERRORS as exc:  # past the client's own retries: a restart or failover in progress
                    backoff_s = self._wait_for_redis(exc, backoff_s, should_stop)
                    continue
                if backoff_s:
                    log.info("%s: Redis is back; resuming %s", self.consumer, self.stream)
                    backoff_s = 0.0
                if handled:
                    idle_since = time.monotonic()
                elif idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                    break
        finally:
            if _main_thread():
                signal.signal(signal.SIGTERM, previous)
        return self.stats


    def _wait_for_redis(self, exc: BaseException, backoff_s: float, should_stop: Callable[[], bool]) -> float:
        """Sleep out one step of a Redis outage (0.5 s doubling to 30 s, jittered); return the next backoff.
        Nothing is lost meanwhile: entries not acknowledged stay pending and are reclaimed after it."""
        if not backoff_s:
            self.stats.redis_outages += 1
        backoff_s = min(30.0, max(0.5, backoff_s * 2))
        delay = backoff_s * random.uniform(0.5, 1.0)
        log.warning("%s: Redis unavailable (%s); retrying in %.1fs (unacknowledged entries stay pending)",
                    self.consumer, exc, delay)  # fmt: skip
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not (self.stopping or should_stop()):
            time.sleep(min(0.1, delay))
        return backoff_s


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
