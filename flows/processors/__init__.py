"""Consumer-group processors of the batch streams (``stream:raw_news``, ``stream:raw_social``).

Each is a ``headwater.streams.StreamWorker`` handler: the worker brings the consumer group, acks after the
handler returns, dead letters for entries that are not what they claim to be, and reclaim/retry for entries
whose worker died. Run one (or several, on any machine) as a long-lived process::

    python -m flows.processors.news     [--consumer NAME] [--once]
    python -m flows.processors.social   [--consumer NAME] [--once]

(``document.py``, the document processor of ``stream:raw_documents``, follows the same pattern.)

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
import redis
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from headwater import retention
from headwater.config import load_tickers
from headwater.keys import Keys
from headwater.settings import StreamSettings
from headwater.storage.redis import ensure_series
from headwater.streams import Handler, StreamWorker, WorkerStats
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
# KEYS: 1 index (sorted set), 2 sentiment series, [3 mentions series].
# ARGV: 1 event ms, 2 event id, 3 sentiment score, 4 trim index entries before this ms, 5 index TTL (s).
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
  if type(ok) == 'table' and ok.err then late = 1 end
end
if #KEYS >= 3 then
  local ok = redis.pcall('TS.ADD', KEYS[3], ARGV[1], n, 'ON_DUPLICATE', 'LAST')
  if type(ok) == 'table' and ok.err then late = 1 end
end
return {n, late}
"""


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
    """The shared ``python -m flows.processors.<name>`` entry point."""
    from headwater.log import setup_logging
    from headwater.settings import RedisSettings
    from headwater.storage.redis import connect

    parser = argparse.ArgumentParser(prog=f"python -m flows.processors.{name}",
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
