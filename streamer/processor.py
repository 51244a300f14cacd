"""Stream processors: consumer-group workers that turn raw frames into RedisTimeSeries samples.

Ownership: ``stream:raw_market_data`` is split into partitions by ticker; each partition is owned by exactly
one worker at a time through a lease key (``lease:raw_market_data:{p}``), so every series has one writer
(two writers interleaving the same series are slower than one: out-of-order inserts). Workers share the
partitions fairly (ceil(partitions / live workers)) and take over the partitions of a worker whose lease
expired, claiming its pending entries (XAUTOCLAIM) first.

Exactly once: per batch, the TimeSeries writes, the trade high-water marks and the dead letters go in one
MULTI/EXEC guarded by WATCH on the leases, and the entries are acked only after it succeeded. A worker
killed mid-batch leaves its entries pending for the next owner; a redelivered trade at or below its ticker's
high-water mark (day, sequence) is skipped, quotes and bars are LAST-policy, so nothing is written twice.
A worker that lost its lease while working gets an aborted EXEC and drops the partition instead of writing.

Series: trades -> ``ts:{T}:price`` (LAST) and ``ts:{T}:volume`` (SUM: two prints in one millisecond add up);
quotes -> bid/ask/bid_size/ask_size (LAST); minute aggregates -> ``ts:{T}:agg:polygon:1m:*`` (LAST, so
bars re-fetched by gap fill overwrite themselves with the same value). 1m/5m/1h/1d bars are compacted on the
server from the tick series (see ``headwater.storage.redis``).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import redis
from pydantic import ValidationError
from redis.exceptions import ResponseError, WatchError

from headwater.keys import TICK_FIELDS, Keys
from headwater.models import MARKET_EVENT, MARKET_EVENTS, Bar, Quote, Trade
from headwater.settings import StreamSettings
from headwater.storage.redis import DAY_MS, TimeSeriesLayout, ensure_series

log = logging.getLogger("headwater.streamer.processor")

AGG_FIELDS = ("open", "high", "low", "close", "volume", "vwap")
MADD_CHUNK = 30_000  # args per TS.MADD (3 per sample)

_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end"
_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end"


CARRY_FLUSH_S = 0.01  # a ticker's held-back millisecond is written after this long without a newer one


def _partition(stream: bytes) -> int:
    """``b"...stream:raw_market_data:{3}"`` -> 3."""
    return int(stream.rsplit(b"{", 1)[1].rstrip(b"}"))


def _carry_value(row: list) -> str:
    return f"{row[0]}:{row[1]!r}:{row[2]!r}"


@dataclass
class _Batch:
    """What one commit writes."""

    samples: list[object] = field(default_factory=list)  # flat TS.MADD arguments
    trades: dict[int, dict[str, list[list]]] = field(default_factory=dict)  # partition -> ticker -> [[t, price, size]]
    hwm: dict[int, dict[str, str]] = field(default_factory=dict)
    carry: dict[int, dict[str, str | None]] = field(default_factory=dict)  # None = flushed (HDEL)
    dead: list[dict[bytes, bytes]] = field(default_factory=list)
    acks: dict[bytes, list[bytes]] = field(default_factory=dict)
    latencies: list[int] = field(default_factory=list)
    now_ms: int = field(default_factory=lambda: int(time.time() * 1000))


def default_consumer_name() -> str:
    """``<host>-<pid>``: unique per process, readable in XPENDING/XINFO output (the pod name on Kubernetes)."""
    return f"{os.environ.get('HOSTNAME') or socket.gethostname()}-{os.getpid()}"


@dataclass
class ProcessorStats:
    batches: int = 0
    entries: int = 0
    events: int = 0
    trades: int = 0
    quotes: int = 0
    bars: int = 0
    duplicates_skipped: int = 0
    dead_letters: int = 0
    rejected_samples: int = 0
    reclaimed: int = 0
    aborted_batches: int = 0
    latency_ms_hist: dict[int, int] = field(default_factory=dict)  # bucket (ms, capped) -> count

    def as_dict(self) -> dict[str, object]:
        out = {k: v for k, v in self.__dict__.items() if k != "latency_ms_hist"}
        out["latency_ms_hist"] = self.latency_ms_hist
        return out


class MarketProcessor:
    """One consumer in ``processing_group`` working the partitions it holds leases for."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        settings: StreamSettings | None = None,
        *,
        consumer: str | None = None,
        lease_ms: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.keys = keys
        self.settings = settings or StreamSettings()
        self.consumer = consumer or default_consumer_name()
        self._me = self.consumer.encode()
        self.clock = clock
        self.partitions = self.settings.partitions
        self.lease_ms = lease_ms or self.settings.lease_ms
        self.layout = TimeSeriesLayout(client, keys, self.settings)
        self.stats = ProcessorStats()
        self.owned: set[int] = set()
        self._hwm: dict[int, dict[str, tuple[int, int]]] = {}
        self._carry: dict[int, dict[str, list]] = {}  # partition -> ticker -> [t, price, size, held_since]
        self._series_keys: dict[str, tuple[str, ...]] = {}
        self._agg_ready: set[str] = set()
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)
        self._next_rebalance = 0.0
        self._next_sweep = 0.0
        self._next_metrics = 0.0
        self._next_carry_flush = 0.0
        self.stopping = False

    # -- ownership ---------------------------------------------------------------------------------------
    def rebalance(self) -> None:
        """Heartbeat, renew leases, release extras beyond the fair share, acquire free partitions."""
        now_ms = int(self.clock() * 1000)
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self.keys.workers_alive, {self.consumer: now_ms})
        pipe.zremrangebyscore(self.keys.workers_alive, "-inf", now_ms - 3 * self.lease_ms)
        pipe.zcard(self.keys.workers_alive)
        alive = max(1, pipe.execute()[2])
        share = math.ceil(self.partitions / alive)
        for p in sorted(self.owned):
            if not self._renew(keys=[self.keys.partition_lease(p)], args=[self.consumer, self.lease_ms]):
                log.warning("%s: lost the lease of partition %d", self.consumer, p)
                self._drop(p)
        for p in sorted(self.owned, reverse=True)[: max(0, len(self.owned) - share)]:
            self.release(p)
        for p in range(self.partitions):
            if len(self.owned) >= share:
                break
            if p not in self.owned and self.client.set(self.keys.partition_lease(p), self.consumer, nx=True, px=self.lease_ms):
                self._acquire(p)

    def _acquire(self, p: int) -> None:
        stream = self.keys.raw_market_data(p)
        try:
            self.client.xgroup_create(stream, self.keys.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._load_state(p)
        self.owned.add(p)
        log.info("%s: owns partition %d (%s)", self.consumer, p, stream)
        self._reclaim(p, min_idle_ms=0)  # the lease proves the previous owner is gone: take its pending now

    def _load_state(self, p: int) -> None:
        """Trade high-water marks and held-back milliseconds of a partition, as last committed."""
        marks = self.client.hgetall(self.keys.trade_hwm(p))
        self._hwm[p] = {k.decode(): (int(v.split(b":")[0]), int(v.split(b":")[1])) for k, v in marks.items()}
        carries = self.client.hgetall(self.keys.trade_carry(p))
        now = time.monotonic()
        self._carry[p] = {}
        for ticker, value in carries.items():
            t, price, size = value.split(b":")
            self._carry[p][ticker.decode()] = [int(t), float(price), float(size), now]

    def release(self, p: int) -> None:
        """Give a partition back (rebalance, shutdown); its pending entries stay for the next owner."""
        if self._carry.get(p):
            self.flush_carries()
        self._release(keys=[self.keys.partition_lease(p)], args=[self.consumer])
        self._drop(p)
        log.info("%s: released partition %d", self.consumer, p)

    def _drop(self, p: int) -> None:
        self.owned.discard(p)
        self._hwm.pop(p, None)
        self._carry.pop(p, None)

    # -- reclaiming ----------------------------------------------------------------------------------------
    def _reclaim(self, p: int, min_idle_ms: int) -> None:
        """Process entries pending in partition ``p`` (any consumer), dead-lettering the ones that keep failing."""
        stream = self.keys.raw_market_data(p)
        while p in self.owned:
            pending = self.client.xpending_range(stream, self.keys.group, min="-", max="+", count=self.settings.batch_size, idle=min_idle_ms)
            if not pending:
                return
            ids = [e["message_id"] for e in pending]
            poison = {e["message_id"] for e in pending if e["times_delivered"] >= self.settings.max_deliveries}
            claimed = self.client.xclaim(stream, self.keys.group, self.consumer, min_idle_time=min_idle_ms, message_ids=ids)
            self.stats.reclaimed += len(claimed)
            if claimed:
                log.info("%s: reclaimed %d pending entries of partition %d", self.consumer, len(claimed), p)
                self.process({stream.encode(): [(i, f) for i, f in claimed if f is not None]}, poison=poison)
            if len(pending) < self.settings.batch_size:
                return

    # -- the loop ------------------------------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool] = lambda: False, max_batches: int | None = None) -> None:
        """Work until ``should_stop()`` (checked between batches: a batch in progress always finishes)."""
        log.info("%s: started (partitions=%d, batch=%d)", self.consumer, self.partitions, self.settings.batch_size)
        try:
            while not (should_stop() or self.stopping):
                if max_batches is not None and self.stats.batches >= max_batches:
                    break
                self.step()
        finally:
            for p in sorted(self.owned):
                self.release(p)
            self.client.zrem(self.keys.workers_alive, self.consumer)
            self.publish_metrics()
            log.info("%s: stopped after %d events (%d dead letters)", self.consumer, self.stats.events, self.stats.dead_letters)

    def step(self) -> int:
        """One read-process-commit cycle; returns the number of entries handled."""
        now = self.clock()
        if now >= self._next_rebalance:
            self.rebalance()
            self._next_rebalance = now + self.lease_ms / 3000
        if now >= self._next_sweep:
            for p in sorted(self.owned):
                self._reclaim(p, self.settings.claim_idle_ms)
            self._next_sweep = now + self.settings.claim_idle_ms / 2000
        if now >= self._next_metrics:
            self.publish_metrics()
            self._next_metrics = now + 1.0
        if not self.owned:
            time.sleep(min(0.5, self.lease_ms / 4000))
            return 0
        streams = {self.keys.raw_market_data(p): ">" for p in sorted(self.owned)}
        block = min(self.settings.block_ms, max(1, int(self.lease_ms / 3)))
        if any(self._carry.values()):
            if now >= self._next_carry_flush:
                self.flush_carries(older_than_s=CARRY_FLUSH_S)
                self._next_carry_flush = now + CARRY_FLUSH_S / 2
            block = max(1, int(CARRY_FLUSH_S * 1000))  # come back soon for the rest of the carries
        reply = self.client.xreadgroup(self.keys.group, self.consumer, streams, count=self.settings.batch_size, block=block)
        if not reply:
            return 0
        batch = {name: entries for name, entries in reply}
        return self.process(batch)

    # -- processing ------------------------------------------------------------------------------------
    def process(self, batch: dict[bytes, list[tuple[bytes, dict[bytes, bytes]]]], poison: set[bytes] | None = None) -> int:
        """Parse, validate and commit one batch (writes + marks + carries + dead letters atomically, then XACK)."""
        work = _Batch()
        n_entries = 0
        for stream, entries in batch.items():
            p = _partition(stream)
            if p not in self.owned:
                continue
            ids = work.acks.setdefault(stream, [])
            for entry_id, fields in entries:
                ids.append(entry_id)
                n_entries += 1
                payload = fields.get(b"d", b"")
                if poison and entry_id in poison:
                    work.dead.append(self._dead(stream, entry_id, payload, f"failed {self.settings.max_deliveries} deliveries"))
                    continue
                self._collect(p, self._validate(stream, entry_id, payload, work.dead), work)
        if not n_entries:
            return 0
        commit_ms = int(self.clock() * 1000)
        for p, by_ticker in work.trades.items():
            self._emit_trades(p, by_ticker, work, commit_ms)
        if self._commit(work):
            self.stats.batches += 1
            self.stats.entries += n_entries
            self._record_latencies(work.latencies)
        return n_entries

    def _validate(self, stream: bytes, entry_id: bytes, payload: bytes, dead: list[dict[bytes, bytes]]) -> list[object]:
        try:
            return MARKET_EVENTS.validate_json(payload)
        except ValidationError:
            pass
        try:  # isolate the bad events; the good ones of the frame are kept
            raw_events = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            dead.append(self._dead(stream, entry_id, payload, f"malformed JSON: {exc}"))
            return []
        if not isinstance(raw_events, list):
            dead.append(self._dead(stream, entry_id, payload, "payload is not a JSON array"))
            return []
        good = []
        for raw in raw_events:
            try:
                good.append(MARKET_EVENT.validate_python(raw))
            except ValidationError as exc:
                reason = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
                dead.append(self._dead(stream, entry_id, orjson.dumps(raw), f"invalid event: {reason}"))
        return good

    def _dead(self, stream: bytes, entry_id: bytes, raw: bytes, reason: str) -> dict[bytes, bytes]:
        self.stats.dead_letters += 1
        return {
            b"reason": reason.encode()[:2000],
            b"raw": raw[:1_000_000],
            b"stage": b"market_processor",
            b"stream": stream,
            b"entry": entry_id,
            b"consumer": self._me,
        }

    def _keys_for(self, ticker: str) -> tuple[str, ...]:
        ks = self._series_keys.get(ticker)
        if ks is None:
            self.layout.ensure([ticker])
            ks = self._series_keys[ticker] = tuple(self.keys.tick(ticker, f) for f in TICK_FIELDS)
        return ks

    def _collect(self, p: int, events: list[object], work: _Batch) -> None:
        """Sort one entry's events into the batch: trades merged per (ticker, ms), quotes/bars as samples."""
        stats = self.stats
        hwm = self._hwm.setdefault(p, {})
        trades = work.trades.setdefault(p, {})
        marks = work.hwm.setdefault(p, {})
        samples = work.samples
        for e in events:
            stats.events += 1
            if type(e) is Trade:
                if e.seq:
                    mark = (e.ts // DAY_MS, e.seq)
                    if mark <= hwm.get(e.ticker, (0, 0)):
                        stats.duplicates_skipped += 1
                        continue
                    hwm[e.ticker] = mark
                    marks[e.ticker] = f"{mark[0]}:{mark[1]}"
                stats.trades += 1
                merged = trades.get(e.ticker)
                if merged is None:
                    trades[e.ticker] = [[e.ts, e.price, e.size]]
                elif merged[-1][0] == e.ts:
                    merged[-1][1] = e.price  # the later print's price; sizes add up
                    merged[-1][2] += e.size
                else:
                    merged.append([e.ts, e.price, e.size])
            elif type(e) is Quote:
                ks = self._keys_for(e.ticker)
                samples.extend((ks[2], e.ts, e.bid, ks[3], e.ts, e.ask, ks[4], e.ts, e.bid_size, ks[5], e.ts, e.ask_size))
                work.latencies.append(work.now_ms - e.ts)
                stats.quotes += 1
            elif type(e) is Bar:
                self._collect_bar(e, samples)
                stats.bars += 1

    def _emit_trades(self, p: int, by_ticker: dict[str, list[list]], work: _Batch, commit_ms: int) -> None:
        """Write each ticker's merged trades except its newest millisecond, which becomes the carry.

        A millisecond is written once: rewriting a timestamp of a series with compaction rules makes
        RedisTimeSeries rescan the open buckets (measured: ~140x slower). The carry is committed with the
        batch, so a crash loses nothing; it is written when a later millisecond arrives or after
        ``CARRY_FLUSH_S`` without one.
        """
        carry = self._carry.setdefault(p, {})
        now = time.monotonic()
        for ticker, rows in by_ticker.items():
            held = carry.get(ticker)
            if held is not None:
                if held[0] == rows[0][0]:
                    rows[0][2] += held[2]
                else:
                    rows.insert(0, held[:3])
            newest = rows.pop()
            carry[ticker] = [*newest, now]
            work.carry.setdefault(p, {})[ticker] = _carry_value(newest)
            if rows:
                self._add_trade_samples(ticker, rows, work, commit_ms)

    def _add_trade_samples(self, ticker: str, rows: list[list], work: _Batch, commit_ms: int) -> None:
        ks = self._keys_for(ticker)
        extend = work.samples.extend
        for t, price, size in rows:
            extend((ks[0], t, price, ks[1], t, size))
            work.latencies.append(commit_ms - t)

    def flush_carries(self, older_than_s: float = 0.0) -> None:
        """Write held-back milliseconds older than ``older_than_s`` (idle tickers, shutdown, hand-over)."""
        now = time.monotonic()
        work = _Batch()
        commit_ms = int(self.clock() * 1000)
        for p in sorted(self.owned):
            carry = self._carry.get(p, {})
            due = [t for t, held in carry.items() if now - held[3] >= older_than_s]
            for ticker in due:
                self._add_trade_samples(ticker, [carry[ticker][:3]], work, commit_ms)
                work.carry.setdefault(p, {})[ticker] = None
            work.acks.setdefault(self.keys.raw_market_data(p).encode(), [])
        if any(work.carry.values()) and self._commit(work):
            for p, tickers in work.carry.items():
                for ticker in tickers:
                    self._carry.get(p, {}).pop(ticker, None)
            self._record_latencies(work.latencies)

    def _collect_bar(self, bar: Bar, samples: list[object]) -> None:
        timeframe = "1s" if bar.kind == "A" else bar.timeframe
        values = (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.vwap if bar.vwap is not None else bar.close)
        for name, value in zip(AGG_FIELDS, values):
            key = self.keys.provider_bar(bar.ticker, "polygon", timeframe, name)
            if key not in self._agg_ready:
                ensure_series(
                    self.client, key, self.layout.bar_retention_ms,
                    {"ticker": bar.ticker, "field": name, "kind": "bar", "timeframe": timeframe, "source": "polygon"},
                )  # fmt: skip
                self._agg_ready.add(key)
            samples.extend((key, bar.start, value))

    def _record_latencies(self, latencies: list[int]) -> None:
        hist = self.stats.latency_ms_hist
        for ms in latencies:
            bucket = ms if ms < 1000 else 1000
            hist[bucket] = hist.get(bucket, 0) + 1

    def _commit(self, work: _Batch) -> bool:
        """MULTI/EXEC (guarded by the leases) for writes + marks + carries + dead letters, then XACK.

        Redis does not roll a transaction back when one command fails, so the acks come only after every
        write is confirmed. A crash between EXEC and XACK redelivers the entries: trades at or below the
        high-water mark are skipped and quotes/bars are LAST-policy, so the series stay exact.
        Returns False (nothing written) when a lease moved to another worker.
        """
        partitions = sorted({_partition(s) for s in work.acks})
        leases = [self.keys.partition_lease(p) for p in partitions]
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.watch(*leases)
                if any(owner != self._me for owner in pipe.mget(leases)):
                    raise WatchError("lease moved before commit")
                pipe.multi()
                for i in range(0, len(work.samples), MADD_CHUNK):
                    pipe.execute_command("TS.MADD", *work.samples[i : i + MADD_CHUNK])
                for p, marks in work.hwm.items():
                    if marks:
                        pipe.hset(self.keys.trade_hwm(p), mapping=marks)
                for p, carries in work.carry.items():
                    held = {t: v for t, v in carries.items() if v is not None}
                    flushed = [t for t, v in carries.items() if v is None]
                    if held:
                        pipe.hset(self.keys.trade_carry(p), mapping=held)
                    if flushed:
                        pipe.hdel(self.keys.trade_carry(p), *flushed)
                for fields in work.dead:
                    pipe.xadd(self.keys.dead_letter, fields, maxlen=1_000_000, approximate=True)
                results = pipe.execute(raise_on_error=False)
        except WatchError:
            self.stats.aborted_batches += 1
            log.warning("%s: lease lost during a batch; nothing written, its entries stay pending", self.consumer)
            for p in partitions:
                self._drop(p)
            return False
        for result in results:
            if isinstance(result, ResponseError):
                for p in partitions:  # the in-memory state ran ahead of what was committed
                    self._load_state(p)
                raise result  # entries stay pending; after max_deliveries they are dead-lettered
            if isinstance(result, list):  # TS.MADD: per-sample errors (e.g. older than the retention)
                rejected = [r for r in result if isinstance(r, ResponseError)]
                if rejected:
                    self.stats.rejected_samples += len(rejected)
                    log.warning("%s: %d samples rejected by TimeSeries: %s", self.consumer, len(rejected), rejected[0])
        pipe = self.client.pipeline(transaction=False)
        for stream, ids in work.acks.items():
            if ids:
                pipe.xack(stream, self.keys.group, *ids)
        pipe.execute()
        return True

    # -- metrics ---------------------------------------------------------------------------------------------
    def publish_metrics(self) -> None:
        """Write this worker's counters where the status command and the benchmarks read them."""
        data = self.stats.as_dict()
        data["owned"] = sorted(self.owned)
        data["updated_ms"] = int(self.clock() * 1000)
        self.client.set(self.keys.worker_metrics(self.consumer), orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS), ex=3600)
