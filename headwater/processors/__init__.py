"""Consumer-group processors of the batch streams (``stream:raw_news``, ``stream:raw_social``, ``stream:raw_documents``).

They live in the core, beside the worker they run on (``headwater.streams``): the scheduled flows drain them
in-process and they also run as standing processes (the market stream has its own partitioned processor,
``streamer.processor``). Each is a ``headwater.streams.StreamWorker`` handler: the worker brings the consumer
group, acks after the handler returns, dead letters for entries that are not what they claim to be, and
reclaim/retry for entries whose worker died. Run one (or several, on any machine) as a long-lived process::

    python -m headwater.processors.news        [--consumer NAME] [--once]
    python -m headwater.processors.social      [--consumer NAME] [--once]
    python -m headwater.processors.documents   [--consumer NAME] [--once]   (``documents.py``: same pattern)

Shared here: ``TaggedItemProcessor`` (what the news and social handlers have in common), ``ProcessorSettings``,
``drain`` (one-shot consumer) and ``run_cli`` (the entry point).

The scraping flows also *drain* their stream once at the end of a run (``drain`` below, consumer
``drain@<host>``): a one-shot CLI run or a deployment on a machine without a standing processor still stores its
data end to end, and where processors do run, the drain is just one more consumer of the same group -- each entry
is handled once whichever consumer reads it, and every write is idempotent, so redeliveries are harmless.

TTLs of stored articles/posts and the RETENTION of the sentiment/mention series come from
``config/retention.yaml`` (``headwater.retention``: the ``news``/``social`` kinds' hot days plus the archive grace,
so ``flows/archive.py`` copies them to warm storage before Redis drops them; ``bars`` for the series). The hot
days must be 7-90 (``ttl_seconds`` refuses anything else).
"""

from __future__ import annotations

import argparse
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import redis
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from headwater import retention
from headwater.config import load_tickers
from headwater.keys import Keys
from headwater.sentiment import FinanceSentiment
from headwater.settings import StreamSettings
from headwater.storage.timeseries import ensure_series
from headwater.streams import Entry, Handler, StreamWorker, WorkerStats
from headwater.tagging import TickerTagger

log = logging.getLogger("headwater.processors")


class ProcessorSettings(BaseSettings):
    """Processor options from the environment (``HEADWATER_PROCESSOR_``); retention lives in config/retention.yaml."""

    model_config = SettingsConfigDict(env_prefix="HEADWATER_PROCESSOR_", extra="ignore", frozen=True)
    tickers_file: str | None = Field(None, description="Universe for ticker tagging (default config/tickers.txt)")


MIN_TTL_DAYS, MAX_TTL_DAYS = 7, 90


def ttl_seconds(kind: str) -> int:
    """Key TTL of a kind (``news``/``social``) per ``config/retention.yaml``; its hot days must be 7-90."""
    days = retention.hot_days(kind)
    if not MIN_TTL_DAYS <= days <= MAX_TTL_DAYS:
        raise ValueError(f"config/retention.yaml: {kind} keeps {days:g} hot days; processors need {MIN_TTL_DAYS}-{MAX_TTL_DAYS}")
    return retention.ttl_seconds(kind)


def default_tagger(tickers_file: str | None = None) -> TickerTagger:
    return TickerTagger(load_tickers(tickers_file))


class SeriesCache:
    """Creates per-ticker sentiment/mention series once per process (LAST policy, bar retention, labels)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.retention_ms = retention.retention_ms("bars")
        self._done: set[str] = set()

    def ensure(self, key: str, ticker: str, field: str, source: str) -> None:
        if key in self._done:
            return
        labels = {"ticker": ticker, "field": field, "kind": field, "timeframe": "event", "source": source}
        ensure_series(self.client, key, self.retention_ms, labels, duplicate_policy="LAST")
        self._done.add(key)


# One event (article/post) of one ticker, atomically and cluster-safe (every key carries the {TICKER} hash tag):
# index it, keep the sentiment sample at its millisecond the *mean* of the events indexed there, and (social)
# write the number of events in that millisecond as the mention count. A redelivered event is already in the index
# (ZADD answers 0): the sentiment mean is left alone and the count comes out the same, so nothing doubles.
# Beside each series its knowledge series (``ts:{T}:known:...``) gets, at the same millisecond, when the pipeline
# stored the sample (the newest ingest time of the events in it, ON_DUPLICATE MAX): knowledge-time reads skip it
# before then.
# KEYS: 1 index (sorted set), 2 sentiment series, 3 its knowledge series, [4 mentions series, 5 its knowledge series].
# ARGV: 1 event ms, 2 event id, 3 sentiment score, 4 trim index entries before this ms, 5 index TTL (s), 6 ingest ms.
# Returns {events in that millisecond, 1 if a sample was older than the series' retention else 0}.
INDEX_EVENT = """
local added = redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
local n = redis.call('ZCOUNT', KEYS[1], ARGV[1], ARGV[1])
local late = 0
if added == 1 then
  local mean = tonumber(ARGV[3])
  if n > 1 then
    local current = redis.pcall('TS.RANGE', KEYS[2], ARGV[1], ARGV[1])
    if type(current) == 'table' and current[1] then
      local value = current[1][2]
      if type(value) == 'table' then value = value.ok or value.double end  -- TS replies a simple string
      local previous = tonumber(value)
      if previous then mean = previous + (mean - previous) / n end
    end
  end
  local ok = redis.pcall('TS.ADD', KEYS[2], ARGV[1], mean, 'ON_DUPLICATE', 'LAST')
  if type(ok) == 'table' and ok.err then late = 1 else redis.pcall('TS.ADD', KEYS[3], ARGV[1], ARGV[6], 'ON_DUPLICATE', 'MAX') end
end
if #KEYS >= 5 then
  local ok = redis.pcall('TS.ADD', KEYS[4], ARGV[1], n, 'ON_DUPLICATE', 'LAST')
  if type(ok) == 'table' and ok.err then late = 1 else redis.pcall('TS.ADD', KEYS[5], ARGV[1], ARGV[6], 'ON_DUPLICATE', 'MAX') end
end
return {n, late}
"""


class TaggedItemProcessor:
    """What the news and social handlers share, for one raw entry ``d`` (the item as JSON), ``q`` (the query):

    parse (an entry that is not a ``model`` is a dead letter with the reason), de-duplicate against
    ``seen:{dataset}`` and the batch by the item's id and content hash, ``store`` what is new into one pipeline
    (the subclass: tag, score, hash + index + series), run it, and only then add the hashes to ``seen:*`` -- so a
    failed batch is redone in full and never skipped as "seen". ``stats`` needs ``duplicates`` and ``late``.
    """

    dataset: str
    model: type[Any]
    what: str  # "an article", "a post": for the dead-letter reason

    def __init__(
        self, client: redis.Redis, keys: Keys, *, ttl_s: int, tagger: TickerTagger, scorer: FinanceSentiment,
    ) -> None:  # fmt: skip
        self.client = client
        self.keys = keys
        self.ttl_s = ttl_s
        self.tagger = tagger
        self.scorer = scorer
        self.series = SeriesCache(client)
        self.index_event = client.register_script(INDEX_EVENT)

    def text_hash(self, item: Any) -> str:
        """The content hash that catches the same item under another id."""
        raise NotImplementedError

    def store(self, pipe: redis.client.Pipeline, item: Any, text_hash: str, query: str, now_ms: int) -> None:
        """Queue the writes of one new item on ``pipe`` (and count it in ``stats``)."""
        raise NotImplementedError

    def committed(self) -> None:
        """Called once a batch's writes are in Redis."""

    def __call__(self, entries: list[Entry]) -> list[str | None]:
        outcomes: list[str | None] = [None] * len(entries)
        parsed: list[tuple[Any, str, str]] = []
        for i, (_, fields) in enumerate(entries):
            try:
                item = self.model.model_validate_json(fields[b"d"])
            except (KeyError, ValidationError, ValueError) as exc:
                outcomes[i] = f"not {self.what}: {str(exc)[:300]}"
                continue
            parsed.append((item, self.text_hash(item), fields.get(b"q", b"").decode()))
        if not parsed:
            return outcomes
        seen_key = self.keys.seen(self.dataset)
        hashes = [h for item, text_hash, _ in parsed for h in (item.id, text_hash)]
        seen = {h for h, member in zip(hashes, self.client.smismember(seen_key, hashes)) if member}
        now_ms = int(time.time() * 1000)
        pipe = self.client.pipeline(transaction=False)
        done: list[str] = []  # hashes to add to seen:* once every write above has succeeded
        for item, text_hash, query in parsed:
            if item.id in seen or text_hash in seen:
                self.stats.duplicates += 1
                continue
            seen.update((item.id, text_hash))
            self.store(pipe, item, text_hash, query, now_ms)
            done += (item.id, text_hash)
        for reply in pipe.execute(raise_on_error=False):
            if isinstance(reply, redis.ResponseError):
                raise reply
            if isinstance(reply, list) and len(reply) == 2 and reply[1] == 1:
                self.stats.late += 1  # older than the series' retention: indexed, not charted
        if done:
            self.client.sadd(seen_key, *done)
        self.committed()
        return outcomes


def drain(
    client: redis.Redis, keys: Keys, stream: str, handler: Handler, *, stage: str, idle_exit_s: float = 0.5,
    consumer: str | None = None,
) -> WorkerStats:  # fmt: skip
    """Process whatever is waiting in ``stream`` (new and reclaimable entries), then return."""
    streams = StreamSettings()
    worker = StreamWorker(client, keys, stream, handler, consumer=consumer or f"drain@{socket.gethostname()}",
                          stage=stage, batch_size=streams.batch_size, block_ms=100,
                          claim_idle_ms=streams.claim_idle_ms, max_deliveries=streams.max_deliveries)  # fmt: skip
    return worker.run(idle_exit_s=idle_exit_s)


def run_cli(name: str, stream_of: Callable[[Keys], str], make_handler: Callable[[redis.Redis, Keys], Handler],
            argv: list[str] | None = None) -> int:  # fmt: skip
    """The shared ``python -m headwater.processors.<name>`` entry point."""
    from headwater.log import setup_logging
    from headwater.settings import RedisSettings
    from headwater.storage.redis import connect

    parser = argparse.ArgumentParser(prog=f"python -m headwater.processors.{name}",
                                     description=f"Process stream:raw_{name} as a consumer of processing_group")  # fmt: skip
    parser.add_argument("--consumer", default=f"{name}@{socket.gethostname()}", help="consumer name (unique per process)")
    parser.add_argument("--once", action="store_true", help="exit once the stream is drained instead of waiting")
    parser.add_argument("--idle-exit-s", type=float, default=1.0, help="with --once: idle time that counts as drained")
    args = parser.parse_args(argv)
    setup_logging()
    client, keys, streams = connect(RedisSettings()), Keys(RedisSettings().key_prefix), StreamSettings()
    worker = StreamWorker(client, keys, stream_of(keys), make_handler(client, keys), consumer=args.consumer,
                          stage=f"{name}_processor", batch_size=streams.batch_size, block_ms=streams.block_ms,
                          claim_idle_ms=streams.claim_idle_ms, max_deliveries=streams.max_deliveries)  # fmt: skip
    started = time.monotonic()
    stats = worker.run(idle_exit_s=args.idle_exit_s if args.once else None)
    log.info("%s processor %s: %d entries, %d done, %d dead letters in %.1fs", name, args.consumer, stats.entries,
             stats.done, stats.dead_letters, time.monotonic() - started)  # fmt: skip
    return 0
