"""The Redis key schema: every key, stream, group and index name is built here and nowhere else.

The format of each key is specified in ``docs/redis-keys.md``; ``tests/test_keys.py`` asserts the exact
strings. Per-ticker keys carry the ticker as a Redis Cluster hash tag (``ts:{AAPL}:price``), so all keys of
one ticker live on one slot and multi-key commands for one ticker are cluster-safe. Partitioned streams carry
their partition as the hash tag, which spreads partitions over the shards of a cluster.

A ``prefix`` namespaces the whole schema (tests, several pipelines sharing one Redis).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Literal

TICKER_RE = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")

TickField = Literal["price", "volume", "bid", "ask", "bid_size", "ask_size"]
BarField = Literal["open", "high", "low", "close", "volume"]
Timeframe = Literal["1m", "5m", "1h", "1d"]

TICK_FIELDS: tuple[str, ...] = ("price", "volume", "bid", "ask", "bid_size", "ask_size")
BAR_FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
TIMEFRAMES: dict[str, int] = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000, "1d": 86_400_000}

PROCESSING_GROUP = "processing_group"
REPLAY_PREFIX = "replay:"


def partition_of(ticker: str, partitions: int) -> int:
    """The stream partition that owns a ticker: stable across processes, machines and Python versions."""
    return zlib.crc32(ticker.encode()) % partitions


def check_ticker(ticker: str) -> str:
    """Return the ticker if it is a well-formed US symbol (upper case, digits, '.', '-'), else raise."""
    if not TICKER_RE.match(ticker):
        raise ValueError(f"invalid ticker {ticker!r}: expected 1-10 upper-case letters, digits, '.' or '-'")
    return ticker


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builders for one namespace (``prefix``, default none)."""

    prefix: str = ""

    # -- streams and groups ----------------------------------------------------------------------------
    def raw_market_data(self, partition: int) -> str:
        """Partition ``partition`` of the raw real-time market stream (frames from the WebSocket)."""
        return f"{self.prefix}stream:raw_market_data:{{{partition}}}"

    def raw_market_data_all(self, partitions: int) -> list[str]:
        return [self.raw_market_data(p) for p in range(partitions)]

    @property
    def raw_news(self) -> str:
        return f"{self.prefix}stream:raw_news"

    @property
    def raw_social(self) -> str:
        return f"{self.prefix}stream:raw_social"

    @property
    def raw_documents(self) -> str:
        return f"{self.prefix}stream:raw_documents"

    @property
    def dead_letter(self) -> str:
        """Messages that failed parsing/validation or kept failing, with the reason and the raw payload."""
        return f"{self.prefix}stream:dead_letter"

    @property
    def quarantine(self) -> str:
        """Batch rows rejected by a Great Expectations suite, with the failed expectation."""
        return f"{self.prefix}stream:quarantine"

    group: str = PROCESSING_GROUP

    # -- time series -----------------------------------------------------------------------------------
    def tick(self, ticker: str, field: str) -> str:
        """Raw tick series: ``ts:{AAPL}:price`` (trades), ``...:volume``, ``...:bid``, ``...:ask`` ..."""
        return f"{self.prefix}ts:{{{ticker}}}:{field}"

    def bar(self, ticker: str, timeframe: str, field: str) -> str:
        """Bars compacted on the server from the tick series: ``ts:{AAPL}:bar:1m:close``."""
        return f"{self.prefix}ts:{{{ticker}}}:bar:{timeframe}:{field}"

    def provider_bar(self, ticker: str, source: str, timeframe: str, field: str) -> str:
        """Bars as delivered by a provider: ``ts:{AAPL}:agg:polygon:1m:close``, ``...:agg:alphavantage:1m:...``."""
        return f"{self.prefix}ts:{{{ticker}}}:agg:{source}:{timeframe}:{field}"

    def sentiment(self, ticker: str, source: str) -> str:
        """Per-ticker sentiment scores over time: ``ts:{AAPL}:sentiment:news``."""
        return f"{self.prefix}ts:{{{ticker}}}:sentiment:{source}"

    def mentions(self, ticker: str, source: str) -> str:
        """Per-ticker mention counts over time: ``ts:{AAPL}:mentions:social``."""
        return f"{self.prefix}ts:{{{ticker}}}:mentions:{source}"

    # -- documents, news, social -----------------------------------------------------------------------
    def article(self, article_id: str) -> str:
        return f"{self.prefix}news:{article_id}"

    def news_index(self, ticker: str) -> str:
        """Sorted set of article ids by publish time (ms) for one ticker."""
        return f"{self.prefix}news:idx:{{{ticker}}}"

    def post(self, post_id: str) -> str:
        return f"{self.prefix}social:{post_id}"

    def social_index(self, ticker: str) -> str:
        return f"{self.prefix}social:idx:{{{ticker}}}"

    def seen(self, dataset: str) -> str:
        """De-duplication set of content hashes for a dataset (news, social ...)."""
        return f"{self.prefix}seen:{dataset}"

    def chunk(self, doc_id: str, n: int) -> str:
        return f"{self.prefix}doc:{doc_id}:chunk:{n}"

    @property
    def chunk_prefix(self) -> str:
        return f"{self.prefix}doc:"

    @property
    def documents_index(self) -> str:
        return f"{self.prefix}idx:documents"

    @property
    def semantic_cache_index(self) -> str:
        return f"{self.prefix}idx:semantic_cache"

    def semantic_cache_entry(self, query_hash: str) -> str:
        return f"{self.prefix}cache:query:{query_hash}"

    # -- operational state -----------------------------------------------------------------------------
    @property
    def last_event(self) -> str:
        """Hash: ``{channel}.{ticker}`` -> last event time (ms) seen by the streamer (drives gap fill)."""
        return f"{self.prefix}streamer:last_event"

    def streamer_metrics(self, connection: int) -> str:
        """Hash of one streamer connection's counters (frames, events, reconnects, backpressure)."""
        return f"{self.prefix}streamer:metrics:{connection}"

    def worker_metrics(self, consumer: str) -> str:
        return f"{self.prefix}worker:metrics:{consumer}"

    def partition_lease(self, partition: int) -> str:
        """String holding the consumer that currently owns a market-data partition (expires)."""
        return f"{self.prefix}lease:raw_market_data:{{{partition}}}"

    def ticker_state(self, ticker: str) -> str:
        """Hash of a ticker's processing state: ``hwm`` (``day:seq`` of the newest trade applied),
        ``carry`` (``t:price:size`` of the newest, not yet written millisecond) and ``fence`` (lease epoch)."""
        return f"{self.prefix}state:{{{ticker}}}:market"

    def partition_tickers(self, partition: int) -> str:
        """Set of the tickers that have state in a partition (a new owner loads their carries)."""
        return f"{self.prefix}tickers:raw_market_data:{{{partition}}}"

    def partition_epoch(self, partition: int) -> str:
        """Counter incremented on every acquisition of a partition's lease: the fencing token."""
        return f"{self.prefix}lease:raw_market_data:{{{partition}}}:epoch"

    @property
    def workers_alive(self) -> str:
        """Sorted set of stream-processor consumers by last heartbeat (ms)."""
        return f"{self.prefix}workers:alive"

    @property
    def audit_log(self) -> str:
        """Stream buffering audit events until they are flushed to the cold container (``headwater.audit``)."""
        return f"{self.prefix}audit:log"

    @property
    def metrics_counters(self) -> str:
        """Hash of generic counters any process bumps (``headwater.metrics.count``)."""
        return f"{self.prefix}metrics:counters"

    @property
    def metrics_histograms(self) -> str:
        """Hash of generic histograms (``headwater.metrics.observe``)."""
        return f"{self.prefix}metrics:histograms"

    def replay(self) -> Keys:
        """The same schema under ``replay:``: data reloaded from warm storage by ``flows.restore``."""
        return Keys(self.prefix + REPLAY_PREFIX)

    def quota(self, provider: str, key_id: str, window: str) -> str:
        """Shared limiter state of one provider key (hash-tagged: one slot per provider key)."""
        return f"{self.prefix}quota:{{{provider}:{key_id}}}:{window}"

    def checkpoint(self, job: str, item: str) -> str:
        return f"{self.prefix}checkpoint:{job}:{item}"

    def user(self, user_id: str) -> str:
        return f"{self.prefix}json:user:{user_id}"

    def portfolio(self, portfolio_id: str) -> str:
        return f"{self.prefix}json:portfolio:{portfolio_id}"
