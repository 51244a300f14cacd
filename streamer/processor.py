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
quotes -> bid/ask/bid_size/ask_size (LAST) -- a crossed quote (bid > ask > 0; real feeds send them) is kept
raw in ``ts:{T}:crossed_*`` (label ``quality=crossed``) and counted in ``crossed_quotes`` instead, so the
top-of-book series and the spread features only see valid quotes (a locked quote, bid == ask, is valid);
minute aggregates -> ``ts:{T}:agg:polygon:1m:*`` (LAST, so
bars re-fetched by gap fill overwrite themselves with the same value). 1m/5m/1h/1d bars are compacted on the
server from the tick series (see ``headwater.storage.redis``).
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import orjson
import redis
from redis.cluster import RedisCluster
from pydantic import ValidationError
from redis.exceptions import ResponseError

from headwater.keys import AGG_FIELDS, CROSSED_QUOTE_FIELDS, TICK_FIELDS, TICKER_RE, Keys, partition_of
from headwater.models import MARKET_EVENT, Bar, Quote, Trade
from headwater.settings import StreamSettings
from headwater.storage.redis import RETRY_ERRORS
from headwater.storage.timeseries import TimeSeriesLayout, ensure_series
from headwater.storage.transaction import guarded_transaction
from headwater.timeframes import DAY_MS, TIMEFRAMES

log = logging.getLogger("headwater.streamer.processor")

MADD_CHUNK = 30_000  # args per TS.MADD (3 per sample)

# Cluster commit of one ticker. KEYS: state hash, then its series. ARGV: epoch, expected hwm ('*' = any),
# new hwm ('' = unchanged), carry ('' = unchanged, '-' = delete), then (key index, ts, value) triples.
# Returns the number of samples TimeSeries rejected, -1 when fenced off, -2 when the mark moved.
_COMMIT_TICKER = """
local epoch = tonumber(ARGV[1])
local fence = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
if epoch < fence then return -1 end
if ARGV[2] ~= '*' and (redis.call('HGET', KEYS[1], 'hwm') or '') ~= ARGV[2] then return -2 end
local rejected = 0
local args = {}
local function flush()
  if #args == 0 then return end
  local replies = redis.call('TS.MADD', unpack(args))
  for _, r in ipairs(replies) do
    if type(r) == 'table' and r.err then rejected = rejected + 1 end
  end
  args = {}
end
for i = 5, #ARGV, 3 do
  args[#args + 1] = KEYS[tonumber(ARGV[i])]
  args[#args + 1] = ARGV[i + 1]
  args[#args + 1] = ARGV[i + 2]
  if #args >= 6000 then flush() end
end
flush()
if epoch > fence then redis.call('HSET', KEYS[1], 'fence', epoch) end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'hwm', ARGV[3]) end
if ARGV[4] == '-' then redis.call('HDEL', KEYS[1], 'carry') elseif ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'carry', ARGV[4]) end
return rejected
"""
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end"
_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end"


MAX_MS = 4 * 10**13  # the models' EpochMs bound
INF = float("inf")
MAX_SEQ = 2**63  # the models' Sequence bound
SEQ_MASK = (1 << 64) - 1
REBALANCE_S = 0.25  # heartbeat / lease renewal / fair-share check interval (capped at a third of the lease)
CARRY_FLUSH_S = 0.01  # a ticker's held-back millisecond is written after this long without a newer one


def _mark_value(mark: int) -> str:
    return f"{mark >> 64}:{mark & SEQ_MASK}" if mark else ""


def _state_changes(work: _Batch) -> dict[str, tuple[int, str | None]]:
    """Per ticker: (new high-water mark or 0, new carry value, '' for unchanged or None to delete)."""
    out: dict[str, tuple[int, str | None]] = {}
    for marks in work.hwm.values():
        for ticker, mark in marks.items():
            out[ticker] = (mark, "")
    for carries in work.carry.values():
        for ticker, value in carries.items():
            out[ticker] = (out.get(ticker, (0, ""))[0], value)
    return out


def _flat(pairs: Iterable[tuple[object, object]]) -> list[object]:
    return [x for pair in pairs for x in pair]


def _carry_value(row: list) -> str:
    return f"{row[0]}:{row[1]!r}:{row[2]!r}"


@dataclass
class _Batch:
    """What one commit writes."""

    samples: list[object] = field(default_factory=list)  # flat TS.MADD arguments
    trades: dict[int, dict[str, list]] = field(default_factory=dict)  # partition -> ticker -> [t, price, size, ...]
    hwm: dict[int, dict[str, int]] = field(default_factory=dict)
    base_hwm: dict[str, int] = field(default_factory=dict)  # ticker -> mark as committed before this batch
    carry: dict[int, dict[str, str | None]] = field(default_factory=dict)  # None = flushed (HDEL)
    dead: list[dict[bytes, bytes]] = field(default_factory=list)
    acks: dict[bytes, list[bytes]] = field(default_factory=dict)
    oldest: list[tuple[int, int]] = field(default_factory=list)  # (oldest event ms, events) per entry


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
    fast_path_refusals: int = 0  # events the inline checks refused but the strict model accepted (kept)
    crossed_quotes: int = 0  # bid > ask > 0: stored in ts:{T}:crossed_*, not in the top-of-book series
    redis_outages: int = 0  # times Redis stopped answering mid-cycle (the worker waited and resumed)
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
        self._hwm: dict[int, dict[str, int]] = {}  # partition -> ticker -> (day << 64 | seq) of the newest trade
        self._valid_tickers: set[str] = set()  # tickers whose state is loaded (or known to be new)
        self._tickers_of: dict[int, set[str]] = {}  # partition -> its tickers seen/loaded by this worker
        self._carry: dict[int, dict[str, list]] = {}  # partition -> ticker -> [t, price, size, held_since]
        self._epoch: dict[int, int] = {}  # partition -> fencing token of our lease
        self.cluster = isinstance(client, RedisCluster)
        self._series_keys: dict[str, tuple[str, ...]] = {}
        self._crossed_keys: dict[str, tuple[str, ...]] = {}
        self._agg_ready: set[str] = set()
        self._release = client.register_script(_RELEASE)
        self._commit_ticker = client.register_script(_COMMIT_TICKER)
        self._renew = client.register_script(_RENEW)
        self._next_rebalance = 0.0
        self._next_sweep = 0.0
        self._next_metrics = 0.0
        self._next_carry_flush = 0.0
        self.stopping = False

    # -- ownership ---------------------------------------------------------------------------------------
    def rebalance(self) -> None:
        """Heartbeat, renew leases, release extras beyond the fair share, acquire free partitions.

        One pipelined round trip when nothing changes, so it runs often (every ``REBALANCE_S``) and a
        worker that joins gets its share within a fraction of a second.
        """
        now_ms = int(self.clock() * 1000)
        owned = sorted(self.owned)
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self.keys.workers_alive, {self.consumer: now_ms})
        pipe.zremrangebyscore(self.keys.workers_alive, "-inf", now_ms - 3 * self.lease_ms)
        pipe.zcard(self.keys.workers_alive)
        if self.cluster:  # cluster pipelines refuse scripts; a few direct calls
            replies = pipe.execute()
            replies += [self._renew(keys=[self.keys.partition_lease(p)], args=[self.consumer, self.lease_ms]) for p in owned]
        else:
            for p in owned:
                self._renew(keys=[self.keys.partition_lease(p)], args=[self.consumer, self.lease_ms], client=pipe)
            replies = pipe.execute()
        alive = max(1, replies[2])
        share = math.ceil(self.partitions / alive)
        for p, renewed in zip(owned, replies[3:]):
            if not renewed:
                log.warning("%s: lost the lease of partition %d", self.consumer, p)
                self._drop(p)
        for p in sorted(self.owned, reverse=True)[: max(0, len(self.owned) - share)]:
            self.release(p)
        if len(self.owned) < share:
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
        self._epoch[p] = int(self.client.incr(self.keys.partition_epoch(p)))
        self._load_state(p)
        self.owned.add(p)
        log.info("%s: owns partition %d (%s)", self.consumer, p, stream)
        self._reclaim(p, min_idle_ms=0)  # the lease proves the previous owner is gone: take its pending now

    def _load_state(self, p: int) -> None:
        """High-water marks and held-back milliseconds of a partition's tickers, as last committed."""
        tickers = sorted(t.decode() for t in self.client.smembers(self.keys.partition_tickers(p)))
        pipe = self.client.pipeline(transaction=False)
        for ticker in tickers:
            pipe.hgetall(self.keys.ticker_state(ticker))
        states = pipe.execute() if tickers else []
        now = time.monotonic()
        self._hwm[p], self._carry[p], self._tickers_of[p] = {}, {}, set(tickers)
        for ticker, state in zip(tickers, states):
            if b"hwm" in state:
                day, seq = state[b"hwm"].split(b":")
                self._hwm[p][ticker] = int(day) << 64 | int(seq)
            if b"carry" in state:
                t, price, size = state[b"carry"].split(b":")
                self._carry[p][ticker] = [int(t), float(price), float(size), now]
        self._valid_tickers.update(tickers)

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
        self._epoch.pop(p, None)
        self._valid_tickers -= self._tickers_of.pop(p, set())

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
                try:
                    self.step()
                except RETRY_ERRORS as exc:  # the client's own retries are spent: Redis is down or restarting
                    self.ride_out_outage(exc, should_stop)
        finally:
            try:
                for p in sorted(self.owned):
                    self.release(p)
                self.client.zrem(self.keys.workers_alive, self.consumer)
                self.publish_metrics()
            except RETRY_ERRORS as exc:
                log.warning("%s: Redis unavailable at shutdown (%s); my leases expire within %d ms", self.consumer, exc, self.lease_ms)
            log.info("%s: stopped after %d events (%d dead letters)", self.consumer, self.stats.events, self.stats.dead_letters)

    def ride_out_outage(self, exc: Exception, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Redis stopped answering mid-cycle: forget what is held in memory, wait for Redis with backoff, resume.

        The batch in flight was not acked. If its commit landed, the redelivered trades are at or below the
        committed marks and are skipped; if it did not, they are written then. The in-memory marks and carries
        may be ahead of what was committed, so every partition is dropped here and re-acquired by the next
        rebalance once Redis answers: state reloaded from Redis, pending entries (ours included) reclaimed.
        """
        self.stats.redis_outages += 1
        started = time.monotonic()
        held = sorted(self.owned)
        for p in held:
            self._drop(p)
        log.error("%s: Redis unavailable (%s); dropped partitions %s, waiting for Redis with backoff", self.consumer, exc, held)
        attempt = 0
        while not (should_stop() or self.stopping):
            time.sleep(random.uniform(0, min(5.0, 0.1 * 2**attempt)) + 0.05)  # full jitter: workers do not stampede
            try:
                self.client.ping()  # a restarted server answers LOADING (a ConnectionError) until its AOF is read
            except RETRY_ERRORS:
                attempt += 1
                continue
            for p in held:  # hand our leases back now rather than make everyone wait for them to expire
                try:
                    self._release(keys=[self.keys.partition_lease(p)], args=[self.consumer])
                except RETRY_ERRORS:
                    break
            self._next_rebalance = self._next_sweep = 0.0
            log.warning("%s: Redis answers again after %.1f s; re-acquiring partitions", self.consumer, time.monotonic() - started)
            return

    def step(self) -> int:
        """One read-process-commit cycle; returns the number of entries handled."""
        now = self.clock()
        if now >= self._next_rebalance:
            self.rebalance()
            self._next_rebalance = now + min(REBALANCE_S, self.lease_ms / 3000)
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
        count = max(1, -(-self.settings.batch_size // len(streams)))  # batch_size entries in all, not per stream
        block = min(self.settings.block_ms, max(1, int(self.lease_ms / 3)))
        if any(self._carry.values()):
            if now >= self._next_carry_flush:
                self.flush_carries(older_than_s=CARRY_FLUSH_S)
                self._next_carry_flush = now + CARRY_FLUSH_S / 2
            block = max(1, int(CARRY_FLUSH_S * 1000))  # come back soon for the rest of the carries
        if self.cluster:  # one stream per call: partitions live on different slots
            reply = []
            for stream in streams:
                part = self.client.xreadgroup(self.keys.group, self.consumer, {stream: ">"},
                                              count=count, block=max(1, block // len(streams)))  # fmt: skip
                reply += part or []
        else:
            reply = self.client.xreadgroup(self.keys.group, self.consumer, streams, count=count, block=block)
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
            p = self._partition(stream)
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
                self._collect(p, stream, entry_id, payload, work)
        if not n_entries:
            return 0
        commit_ms = int(self.clock() * 1000)
        for p, by_ticker in work.trades.items():
            self._emit_trades(p, by_ticker, work)
        if self._commit(work):
            self.stats.batches += 1
            self.stats.entries += n_entries
            self._record_latencies(work.oldest, commit_ms)
        return n_entries

    def _collect(self, p: int, stream: bytes, entry_id: bytes, payload: bytes, work: _Batch) -> None:
        """The hot path: parse one entry and sort its events into the batch, checking them inline.

        The checks are those of the strict ``Trade``/``Quote`` models on the fields that are stored (a ticker
        of the schema's form, finite prices > 0, sizes >= 0, integer ms timestamps, integer sequence numbers),
        without building model objects (~5x cheaper). An event that fails them is handed to the model, which
        gives the dead-letter reason -- or, should it accept what the fast check refused, the event is kept.
        Trades are merged per (ticker, ms); quotes and bars become samples directly.
        """
        try:
            events = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            work.dead.append(self._dead(stream, entry_id, payload, f"malformed JSON: {exc}"))
            return
        if type(events) is not list:
            work.dead.append(self._dead(stream, entry_id, payload, "payload is not a JSON array"))
            return
        stats = self.stats
        valid = self._valid_tickers
        series_keys = self._series_keys
        hwm = self._hwm.setdefault(p, {})
        marks = work.hwm.setdefault(p, {})
        base = work.base_hwm
        trades = work.trades.setdefault(p, {})
        samples = work.samples
        first_ts = 0
        n_trades = n_quotes = 0
        for e in events:
            if type(e) is dict:
                sym = e.get("sym")
                if type(sym) is str and (sym in valid or self._new_ticker(p, sym)):
                    ev = e.get("ev")
                    t = e.get("t")
                    if ev == "T":
                        price = e.get("p")
                        size = e.get("s")
                        seq = e.get("q", 0)
                        if (
                            type(t) is int and 0 < t < MAX_MS and type(seq) is int and 0 <= seq < MAX_SEQ
                            and (type(price) is float or type(price) is int) and 0 < price < INF
                            and (type(size) is float or type(size) is int) and 0 <= size < INF
                        ):  # fmt: skip
                            n_trades += 1
                            first_ts = first_ts or t
                            if seq:
                                mark = (t // DAY_MS) << 64 | seq
                                if mark <= hwm.get(sym, 0):
                                    stats.duplicates_skipped += 1
                                    continue
                                if sym not in marks:
                                    base[sym] = hwm.get(sym, 0)
                                hwm[sym] = marks[sym] = mark
                            flat = trades.get(sym)
                            if flat is None:
                                trades[sym] = [t, price, size]
                            elif flat[-3] == t:
                                flat[-2] = price  # the later print's price; sizes add up
                                flat[-1] += size
                            else:
                                flat += (t, price, size)
                            continue
                    elif ev == "Q":
                        bid, ask, bid_size, ask_size = e.get("bp"), e.get("ap"), e.get("bs", 0), e.get("as", 0)
                        seq = e.get("q", 0)
                        if (
                            type(t) is int and 0 < t < MAX_MS and type(seq) is int and 0 <= seq < MAX_SEQ
                            and (type(bid) is float or type(bid) is int) and 0 <= bid < INF
                            and (type(ask) is float or type(ask) is int) and 0 <= ask < INF
                            and (type(bid_size) is float or type(bid_size) is int) and 0 <= bid_size < INF
                            and (type(ask_size) is float or type(ask_size) is int) and 0 <= ask_size < INF
                        ):  # fmt: skip
                            n_quotes += 1
                            first_ts = first_ts or t
                            if bid > ask > 0:  # crossed
                                self._crossed(sym, t, bid, ask, bid_size, ask_size, samples)
                                continue
                            ks = series_keys.get(sym) or self._keys_for(sym)
                            samples += (ks[2], t, bid, ks[3], t, ask, ks[4], t, bid_size, ks[5], t, ask_size)
                            continue
            self._slow_path(p, stream, entry_id, e, work)
        stats.events += n_trades + n_quotes
        stats.trades += n_trades
        stats.quotes += n_quotes
        if first_ts:
            work.oldest.append((first_ts, n_trades + n_quotes))

    def _new_ticker(self, p: int, sym: str) -> bool:
        """First sight of a ticker: check its form and record it in the partition's ticker index."""
        if not TICKER_RE.match(sym):
            return False
        self.client.sadd(self.keys.partition_tickers(p), sym)  # before any of its state is written
        self._tickers_of.setdefault(p, set()).add(sym)
        self._valid_tickers.add(sym)
        return True

    def _slow_path(self, p: int, stream: bytes, entry_id: bytes, raw: object, work: _Batch) -> None:
        """Bars, and events the fast checks refused: the strict model decides (and says why)."""
        try:
            event = MARKET_EVENT.validate_json(orjson.dumps(raw))
        except ValidationError as exc:
            reason = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
            work.dead.append(self._dead(stream, entry_id, orjson.dumps(raw), f"invalid event: {reason}"))
            return
        self.stats.events += 1
        if type(event) is Bar:
            self._collect_bar(event, work.samples)
            self.stats.bars += 1
        elif type(event) is Trade:  # accepted by the model although the fast check refused it: keep it
            self.stats.fast_path_refusals += 1
            self.stats.trades += 1
            work.trades.setdefault(p, {}).setdefault(event.ticker, []).extend((event.ts, event.price, event.size))
        elif type(event) is Quote:
            self.stats.fast_path_refusals += 1
            self.stats.quotes += 1
            if event.bid > event.ask > 0:
                self._crossed(event.ticker, event.ts, event.bid, event.ask, event.bid_size, event.ask_size, work.samples)
                return
            ks = self._keys_for(event.ticker)
            work.samples += (ks[2], event.ts, event.bid, ks[3], event.ts, event.ask,
                             ks[4], event.ts, event.bid_size, ks[5], event.ts, event.ask_size)  # fmt: skip

    def _crossed(self, ticker: str, t: int, bid: float, ask: float, bid_size: float, ask_size: float,
                 samples: list[object]) -> None:  # fmt: skip
        """Keep a crossed quote raw in its own series (created on first use), out of the top of book."""
        self.stats.crossed_quotes += 1
        ks = self._crossed_keys.get(ticker)
        if ks is None:
            self._keys_for(ticker)  # the ticker's regular series exist too
            ks = tuple(self.keys.tick(ticker, f) for f in CROSSED_QUOTE_FIELDS)
            for key, name in zip(ks, CROSSED_QUOTE_FIELDS):
                ensure_series(
                    self.client, key, self.layout.tick_retention_ms,
                    {"ticker": ticker, "field": name, "kind": "tick", "timeframe": "tick", "source": "polygon",
                     "quality": "crossed"},
                )  # fmt: skip
            self._crossed_keys[ticker] = ks
        samples += (ks[0], t, bid, ks[1], t, ask, ks[2], t, bid_size, ks[3], t, ask_size)

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

    def _partition(self, stream: bytes) -> int:
        """The partition of a market-data stream (``...stream:raw_market_data:{3}`` -> 3)."""
        return self.keys.parse_as(stream, "raw_market_data").partition  # type: ignore[return-value]

    def _keys_for(self, ticker: str) -> tuple[str, ...]:
        ks = self._series_keys.get(ticker)
        if ks is None:
            self.layout.ensure([ticker])
            ks = self._series_keys[ticker] = tuple(self.keys.tick(ticker, f) for f in TICK_FIELDS)
        return ks

    def _emit_trades(self, p: int, by_ticker: dict[str, list], work: _Batch) -> None:
        """Write each ticker's merged trades except its newest millisecond, which becomes the carry.

        A millisecond is written once: rewriting a timestamp of a series with compaction rules makes
        RedisTimeSeries rescan the open buckets (measured: ~140x slower). The carry is committed with the
        batch, so a crash loses nothing; it is written when a later millisecond arrives or after
        ``CARRY_FLUSH_S`` without one. ``by_ticker`` holds flat ``[t, price, size, t, price, size, ...]``.
        """
        carry = self._carry.setdefault(p, {})
        carry_out = work.carry.setdefault(p, {})
        now = time.monotonic()
        samples = work.samples
        for ticker, flat in by_ticker.items():
            held = carry.get(ticker)
            if held is not None:
                if held[0] == flat[0]:
                    flat[2] += held[2]
                else:
                    flat[0:0] = held[:3]
            newest = flat[-3:]
            del flat[-3:]
            carry[ticker] = [*newest, now]
            carry_out[ticker] = _carry_value(newest)
            if flat:
                ks = self._series_keys.get(ticker) or self._keys_for(ticker)
                price_key, volume_key = ks[0], ks[1]
                for i in range(0, len(flat), 3):
                    t = flat[i]
                    samples += (price_key, t, flat[i + 1], volume_key, t, flat[i + 2])

    def flush_carries(self, older_than_s: float = 0.0) -> None:
        """Write held-back milliseconds older than ``older_than_s`` (idle tickers, shutdown, hand-over)."""
        now = time.monotonic()
        work = _Batch()
        commit_ms = int(self.clock() * 1000)
        for p in sorted(self.owned):
            carry = self._carry.get(p, {})
            due = [t for t, held in carry.items() if now - held[3] >= older_than_s]
            for ticker in due:
                t, price, size, _ = carry[ticker]
                ks = self._keys_for(ticker)
                work.samples += (ks[0], t, price, ks[1], t, size)
                work.oldest.append((t, 1))
                work.carry.setdefault(p, {})[ticker] = None
            work.acks.setdefault(self.keys.raw_market_data(p).encode(), [])
        if any(work.carry.values()) and self._commit(work):
            for p, tickers in work.carry.items():
                for ticker in tickers:
                    self._carry.get(p, {}).pop(ticker, None)
            self._record_latencies(work.oldest, commit_ms)

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
        if timeframe in TIMEFRAMES:  # a minute bar (AM, gap fill) arrives once closed: known from now on
            known = self.keys.known_bar(bar.ticker, "polygon", timeframe)
            if known not in self._agg_ready:
                self.layout.ensure_known_bars(bar.ticker, "polygon", timeframe)
                self._agg_ready.add(known)
            samples.extend((known, bar.start, int(time.time() * 1000)))

    def _record_latencies(self, oldest: list[tuple[int, int]], commit_ms: int) -> None:
        """Tick-to-TimeSeries latency per entry (its oldest event), weighted by the entry's events."""
        hist = self.stats.latency_ms_hist
        for t, n in oldest:
            ms = commit_ms - t
            bucket = ms if ms < 1000 else 1000
            hist[bucket] = hist.get(bucket, 0) + n

    def _commit(self, work: _Batch) -> bool:
        """MULTI/EXEC (guarded by the leases) for writes + marks + carries + dead letters, then XACK.

        Redis does not roll a transaction back when one command fails, so the acks come only after every
        write is confirmed. A crash between EXEC and XACK redelivers the entries: trades at or below the
        high-water mark are skipped and quotes/bars are LAST-policy, so the series stay exact.
        Returns False (nothing written) when a lease moved to another worker.
        """
        partitions = sorted({self._partition(s) for s in work.acks})
        if self.cluster:
            return self._commit_cluster(work, partitions)
        leases = [self.keys.partition_lease(p) for p in partitions]
        commands: list[tuple] = []
        for i in range(0, len(work.samples), MADD_CHUNK):
            commands.append(("TS.MADD", *work.samples[i : i + MADD_CHUNK]))
        for ticker, (mark, carry) in _state_changes(work).items():
            fields = ([b"hwm", _mark_value(mark)] if mark else []) + ([b"carry", carry] if carry else [])
            if fields:
                commands.append(("HSET", self.keys.ticker_state(ticker), *fields))
            if carry is None:
                commands.append(("HDEL", self.keys.ticker_state(ticker), "carry"))
        for fields in work.dead:
            commands.append(("XADD", self.keys.dead_letter, "MAXLEN", "~", 1_000_000, "*", *_flat(fields.items())))
        results = guarded_transaction(self.client, leases, [self._me] * len(leases), commands)
        if results is None:
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
                rejected = [r for r in result if type(r) is not int]
                if rejected:
                    self.stats.rejected_samples += len(rejected)
                    log.warning("%s: %d samples rejected by TimeSeries: %s", self.consumer, len(rejected), rejected[0])
        self._ack(work)
        return True

    def _ack(self, work: _Batch) -> None:
        pipe = self.client.pipeline(transaction=False)
        for stream, ids in work.acks.items():
            if ids:
                pipe.xack(stream, self.keys.group, *ids)
        pipe.execute()

    def _commit_cluster(self, work: _Batch, partitions: list[int]) -> bool:
        """Redis Cluster: one atomic script per ticker (its keys share the ticker's slot), then XACK.

        A ticker's samples, high-water mark and carry commit together, fenced by the partition's lease epoch
        (a deposed owner's late write is refused) and compare-and-set on the mark (a write based on stale
        state is refused). The dead letters follow only when every ticker accepted. A refused or crashed
        batch is not acked: it is redelivered and the tickers that did commit skip their trades by the mark.
        """
        by_ticker: dict[str, list[object]] = {}
        ticker_of: dict[object, str] = {}  # series key -> its hash tag (a handful of series, many samples)
        samples = work.samples
        for i in range(0, len(samples), 3):
            key = samples[i]
            ticker = ticker_of.get(key)
            if ticker is None:
                ticker = ticker_of[key] = Keys.hash_tag(key)  # type: ignore[arg-type,assignment]
            by_ticker.setdefault(ticker, []).extend(samples[i : i + 3])
        changes = _state_changes(work)
        epoch_of = {t: self._epoch.get(partition_of(t, self.partitions), 0) for t in set(by_ticker) | set(changes)}
        node_pipes: dict[str, redis.client.Pipeline] = {}
        order = sorted(epoch_of)
        placed: dict[str, list[str]] = {}  # node -> its tickers, in pipeline order
        for ticker in order:
            rows = by_ticker.get(ticker, [])
            series = sorted({rows[i] for i in range(0, len(rows), 3)})  # type: ignore[misc]
            index = {k: n + 2 for n, k in enumerate(series)}  # KEYS[1] is the state hash
            mark, carry = changes.get(ticker, (0, ""))
            expected = _mark_value(work.base_hwm[ticker]) if ticker in work.base_hwm else "*"
            args: list[object] = [epoch_of[ticker], expected, _mark_value(mark) if mark else "",
                                  "-" if carry is None else carry]  # fmt: skip
            for i in range(0, len(rows), 3):
                args += (index[rows[i]], rows[i + 1], rows[i + 2])
            state_key = self.keys.ticker_state(ticker)
            node = self.client.get_node_from_key(state_key)  # type: ignore[attr-defined]
            if node.name not in node_pipes:  # cluster pipelines refuse scripts: pipeline on the slot's node
                node_pipes[node.name] = node.redis_connection.pipeline(transaction=False)
            self._commit_ticker(keys=[state_key, *series], args=args, client=node_pipes[node.name])
            placed.setdefault(node.name, []).append(ticker)
        results: list[object] = []
        order = []
        for name, node_pipe in node_pipes.items():
            results += node_pipe.execute(raise_on_error=False)
            order += placed[name]
        refused = [t for t, r in zip(order, results) if isinstance(r, int) and r < 0]
        for result in results:
            if isinstance(result, Exception):
                for p in partitions:
                    self._drop(p)
                raise result
        rejected = sum(r for r in results[: len(order)] if isinstance(r, int) and r > 0)
        if rejected:
            self.stats.rejected_samples += rejected
            log.warning("%s: %d samples rejected by TimeSeries", self.consumer, rejected)
        if refused:
            self._refuse_cluster_batch(work, {partition_of(t, self.partitions) for t in refused},
                                       f"{len(refused)} tickers refused the commit (lease moved or stale state)")  # fmt: skip
            return False
        if work.dead:
            # The stream of dead letters lives on its own slot, so it cannot join the per-ticker scripts: it is
            # written only once every ticker's fence accepted the batch and the leases are still ours (a batch
            # of nothing but bad entries has no ticker fence). A refused batch writes none; its redelivery does.
            lost = [p for p, holder in zip(partitions, self._lease_holders(partitions)) if holder != self._me]
            if lost:
                self._refuse_cluster_batch(work, set(lost), f"lease of partition(s) {lost} lost before its dead letters")
                return False
            for fields in work.dead:
                self.client.xadd(self.keys.dead_letter, fields, maxlen=1_000_000, approximate=True)
        self._ack(work)
        return True

    def _lease_holders(self, partitions: list[int]) -> list[bytes | None]:
        return [self.client.get(self.keys.partition_lease(p)) for p in partitions]

    def _refuse_cluster_batch(self, work: _Batch, partitions: set[int], why: str) -> None:
        """Nothing more of this batch is written (no dead letters, no acks): it stays pending for the new owner."""
        self.stats.aborted_batches += 1
        log.warning("%s: %s; batch left pending", self.consumer, why)
        for p in partitions:
            self._drop(p)

    # -- metrics ---------------------------------------------------------------------------------------------
    def publish_metrics(self) -> None:
        """Write this worker's counters where the status command and the benchmarks read them."""
        data = self.stats.as_dict()
        data["owned"] = sorted(self.owned)
        data["updated_ms"] = int(self.clock() * 1000)
        self.client.set(self.keys.worker_metrics(self.consumer), orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS), ex=3600)
