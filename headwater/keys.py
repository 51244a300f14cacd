"""The Redis key schema: every key, stream, group and index name is built here, and parsed here.

The format of each key is specified in ``docs/redis-keys.md``; ``tests/headwater/test_keys.py`` asserts the exact
strings. Per-ticker keys carry the ticker as a Redis Cluster hash tag (``ts:{AAPL}:price``), so all keys of
one ticker live on one slot and multi-key commands for one ticker are cluster-safe. Partitioned streams carry
their partition as the hash tag, which spreads partitions over the shards of a cluster.

A ``prefix`` namespaces the whole schema (tests, several pipelines sharing one Redis).

Reading keys back goes through the same class, never through regexes or slicing elsewhere::

    keys.parse("ts:{AAPL}:bar:1m:close")  # ParsedKey('bar', ticker='AAPL', timeframe='1m', field='close')
    keys.build(parsed)                     # the key again
    keys.glob_ts()                         # "ts:{*}:*" for SCAN MATCH (the prefix's glob characters escaped)
    keys.glob_family("news_index")         # "news:idx:{*}"

A family is named after its builder (``tick``, ``bar``, ``news_index`` ...); the parser of each family is
derived from its builder, so the two cannot disagree.
"""

from __future__ import annotations

import inspect
import re
import zlib
from dataclasses import dataclass
from typing import Any, NamedTuple

from headwater.timeframes import TIMEFRAMES  # noqa: F401 - the bar timeframes of ``ts:{T}:bar:{TF}:...``

TICKER_RE = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")

TICK_FIELDS: tuple[str, ...] = ("price", "volume", "bid", "ask", "bid_size", "ask_size")
# Crossed quotes (bid > ask > 0), kept raw beside the valid top of book: ``ts:{T}:crossed_bid`` ...
CROSSED_QUOTE_FIELDS: tuple[str, ...] = ("crossed_bid", "crossed_ask", "crossed_bid_size", "crossed_ask_size")
#: Fields of the bars Redis compacts from the tick series (``ts:{T}:bar:{TF}:{FIELD}``).
BAR_FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
#: Fields of the bars a provider delivers (``ts:{T}:agg:{SOURCE}:{TF}:{FIELD}``): the bar fields and VWAP.
AGG_FIELDS: tuple[str, ...] = (*BAR_FIELDS, "vwap")
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

    def known(self, ticker: str, kind: str, source: str) -> str:
        """When the pipeline stored each sample of ``ts:{T}:<kind>:<source>`` (same timestamps, value = ingest
        epoch ms): ``ts:{AAPL}:known:sentiment:news``. Knowledge-time ``as_of`` reads skip samples stored later."""
        return f"{self.prefix}ts:{{{ticker}}}:known:{kind}:{source}"

    def known_bar(self, ticker: str, source: str, timeframe: str) -> str:
        """When the pipeline first stored each complete bar of ``ts:{T}:agg:<source>:<timeframe>:*`` (same
        timestamps, value = ingest epoch ms; MIN policy): ``ts:{AAPL}:known:agg:alphavantage:1d``. A backfill run
        today stamps years-old bars with today, so knowledge-time ``as_of`` reads never see them in the past."""
        return f"{self.prefix}ts:{{{ticker}}}:known:agg:{source}:{timeframe}"

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

    # -- reading keys back ------------------------------------------------------------------------------
    def parse(self, key: str | bytes) -> ParsedKey | None:
        """The family and parts of a key of this namespace; ``None`` for a key outside it or of no family.

        A key under this namespace's ``replay:`` namespace parses as family ``replay`` (read its parts with
        ``keys.replay().parse(key)``).
        """
        name = key.decode(errors="replace") if isinstance(key, bytes) else key
        if not name.startswith(self.prefix):
            return None
        rest = name[len(self.prefix) :]
        if rest.startswith(REPLAY_PREFIX):
            return ParsedKey("replay")
        for family, pattern, slots in _PARSERS.get(rest.split(":", 1)[0], ()):
            m = pattern.fullmatch(rest)
            if m:
                values: list[Any] = [family, *_NO_PARTS]
                for (slot, is_int), value in zip(slots, m.groups()):
                    values[slot] = int(value) if is_int else value
                return ParsedKey._make(values)
        return None

    def parse_as(self, key: str | bytes, family: str) -> ParsedKey:
        """``parse`` for a key that must be of ``family`` (raises ``ValueError`` otherwise)."""
        parsed = self.parse(key)
        if parsed is None or parsed.family != family:
            raise ValueError(f"{key!r} is not a {family} key of namespace {self.prefix!r}")
        return parsed

    def build(self, parsed: ParsedKey) -> str:
        """The key of a parsed key (``keys.build(keys.parse(key)) == key`` for every family)."""
        if parsed.family not in _PARAMS:
            raise ValueError(f"cannot build a key of family {parsed.family!r}")
        return _builder(self, parsed.family)(**parsed.parts())

    def root(self, key: str | bytes) -> str | None:
        """The first segment of a key of this namespace (``ts``, ``stream``, ``news`` ...), None outside it."""
        name = key.decode(errors="replace") if isinstance(key, bytes) else key
        return name[len(self.prefix) :].split(":", 1)[0] if name.startswith(self.prefix) else None

    @staticmethod
    def hash_tag(key: str | bytes) -> str | None:
        """The Redis Cluster hash tag of a key (``AAPL`` of ``ts:{AAPL}:price``), as Redis finds it."""
        name = key.decode(errors="replace") if isinstance(key, bytes) else key
        start = name.find("{")
        end = name.find("}", start + 1) if start >= 0 else -1
        return name[start + 1 : end] if end > start + 1 else None

    # -- SCAN MATCH patterns -----------------------------------------------------------------------------
    def glob(self) -> str:
        """Every key of this namespace (the prefix's glob characters escaped)."""
        return glob_escape(self.prefix) + "*"

    def glob_family(self, family: str, **parts: str | int) -> str:
        """The keys of one family; a part left out matches anything: ``glob_family("bar", ticker="AAPL")``
        is ``ts:{AAPL}:bar:*:*``. Prefix and given parts are escaped; hash tags keep their braces."""
        params = _PARAMS.get(family)
        if params is None:
            raise ValueError(f"unknown key family {family!r}; families: {', '.join(FAMILIES)}")
        unknown = set(parts) - set(params)
        if unknown:
            raise ValueError(f"{family} keys have no part {', '.join(sorted(unknown))}; parts: {', '.join(params)}")
        built = _builder(self, family)(**{p: parts.get(p, _WILD) for p in params})
        return glob_escape(built).replace(_WILD, "*")

    def glob_ts(self, ticker: str | None = None) -> str:
        """Every time series of the namespace, or of one ticker (``ts:{AAPL}:*``)."""
        tag = _WILD if ticker is None else ticker
        return glob_escape(self.tick(tag, _WILD)).replace(_WILD, "*")

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

    # -- agents' API keys (features.auth) --------------------------------------------------------------
    def api_key(self, key_id: str) -> str:
        """Hash of one API key: owner, scopes, rate, SHA-256 of the secret, created/revoked time."""
        return f"{self.prefix}auth:key:{key_id}"

    def api_keys_of(self, owner: str) -> str:
        """Set of the key ids issued to one owner."""
        return f"{self.prefix}auth:owner:{owner}"


def quota_day_window(day: str) -> str:
    """The ``quota`` window counting one UTC day's requests: ``day:20240101`` (``day`` as ``YYYYMMDD``)."""
    return f"day:{day}"


def last_event_field(channel: str, ticker: str) -> str:
    """Field of ``streamer:last_event`` for one channel and ticker: ``AM.AAPL``."""
    return f"{channel}.{ticker}"


def parse_last_event_field(name: str | bytes) -> tuple[str, str]:
    """``AM.AAPL`` -> ``("AM", "AAPL")`` (a ticker may contain dots: ``T.BRK.B``)."""
    text = name.decode() if isinstance(name, bytes) else name
    channel, _, ticker = text.partition(".")
    return channel, ticker


_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")


def glob_escape(text: str) -> str:
    """``text`` matched literally by a Redis glob (``SCAN MATCH``, ``KEYS``): ``*?[]\\`` escaped."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


class ParsedKey(NamedTuple):
    """A key read back: its family (the name of the ``Keys`` builder that makes it) and the builder's arguments.

    Parts a family does not have are ``None``: ``keys.parse("ts:{AAPL}:price")`` is
    ``ParsedKey("tick", ticker="AAPL", field="price")``. (A named tuple: immutable and cheap to make, which
    matters when a SCAN of millions of keys parses each one.)
    """

    family: str
    # time series and per-ticker keys
    ticker: str | None = None
    field: str | None = None
    timeframe: str | None = None
    source: str | None = None
    # partitioned keys and operational state
    partition: int | None = None
    connection: int | None = None
    consumer: str | None = None
    provider: str | None = None
    key_id: str | None = None
    window: str | None = None
    job: str | None = None
    item: str | None = None
    # documents, news, social, agent state
    article_id: str | None = None
    post_id: str | None = None
    dataset: str | None = None
    doc_id: str | None = None
    n: int | None = None
    query_hash: str | None = None
    user_id: str | None = None
    portfolio_id: str | None = None
    owner: str | None = None
    kind: str | None = None

    def __repr__(self) -> str:
        parts = "".join(f", {name}={value!r}" for name, value in self.parts().items())
        return f"ParsedKey({self.family!r}{parts})"

    def parts(self) -> dict[str, str | int]:
        """The builder's arguments (``keys.<family>(**parsed.parts())`` is the key again)."""
        return {name: getattr(self, name) for name in _PARAMS.get(self.family, ())}

    @property
    def is_series(self) -> bool:
        """Whether the key is a RedisTimeSeries series."""
        return KEY_TYPES.get(self.family) == ("TSDB-TYPE",)


#: Every key family, named after its builder, in the order ``Keys.parse`` tries them (a specific form
#: before a general one: ``news:idx:{T}`` before ``news:{ID}``).
FAMILIES: tuple[str, ...] = (
    "raw_market_data", "raw_news", "raw_social", "raw_documents", "dead_letter", "quarantine",
    "tick", "bar", "provider_bar", "sentiment", "mentions", "known_bar", "known",
    "news_index", "article", "social_index", "post", "seen", "chunk",
    "documents_index", "semantic_cache_index", "semantic_cache_entry",
    "last_event", "streamer_metrics", "worker_metrics", "workers_alive",
    "partition_lease", "partition_epoch", "partition_tickers", "ticker_state",
    "audit_log", "metrics_counters", "metrics_histograms", "quota", "checkpoint", "user", "portfolio",
    "api_key", "api_keys_of",
)  # fmt: skip

#: The Redis type of each family, as ``TYPE`` names it (``index``: a RediSearch index name, not a key).
KEY_TYPES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("raw_market_data", "raw_news", "raw_social", "raw_documents", "dead_letter", "quarantine",
                     "audit_log"), ("stream",)),
    **dict.fromkeys(("tick", "bar", "provider_bar", "sentiment", "mentions", "known_bar", "known"), ("TSDB-TYPE",)),
    "api_key": ("hash",),
    "api_keys_of": ("set",),
    **dict.fromkeys(("news_index", "social_index", "workers_alive"), ("zset",)),
    **dict.fromkeys(("article", "post", "chunk", "semantic_cache_entry", "last_event", "ticker_state",
                     "metrics_counters", "metrics_histograms"), ("hash",)),
    **dict.fromkeys(("seen", "partition_tickers"), ("set",)),
    **dict.fromkeys(("documents_index", "semantic_cache_index"), ("index",)),
    **dict.fromkeys(("streamer_metrics", "worker_metrics", "partition_lease", "partition_epoch", "quota"), ("string",)),
    "checkpoint": ("string", "hash"),
    **dict.fromkeys(("user", "portfolio"), ("ReJSON-RL",)),
}  # fmt: skip

# How each part of a key is matched when parsing (default: anything, colons included, e.g. ``doc_id``).
_PART_RE = {
    "ticker": r"[^{}]+", "partition": r"\d+", "n": r"\d+", "connection": r"\d+",
    **dict.fromkeys(("field", "timeframe", "source", "dataset", "job", "provider", "key_id", "kind"), r"[^:{}]+"),
}  # fmt: skip
_FAMILY_PART_RE = {("tick", "field"): "|".join((*TICK_FIELDS, *CROSSED_QUOTE_FIELDS))}  # a tick series is told apart by its field
_INT_PARTS = frozenset({"partition", "n", "connection"})
_WILD = "\x00"  # stands for an unknown part while a builder runs (never in a key)


def _builder(keys: Keys, family: str) -> Any:
    """The builder of a family bound to ``keys``: a callable (a property's value is wrapped)."""
    member = getattr(type(keys), family)
    if isinstance(member, property):
        return lambda: member.fget(keys)  # type: ignore[misc]
    return getattr(keys, family)


def _params(family: str) -> tuple[str, ...]:
    """The builder's parameters, in order (none for a property)."""
    member = getattr(Keys, family)
    return () if isinstance(member, property) else tuple(inspect.signature(member).parameters)[1:]


def _parser(family: str, params: tuple[str, ...]) -> re.Pattern[str]:
    """The regex of a family's keys (without the prefix), from its builder run on markers for its parts."""
    marks = {p: f"\x00{i}\x00" for i, p in enumerate(params)}
    template = _builder(Keys(), family)(**marks)
    pattern, pos = "", 0
    for m in re.finditer("\x00(\\d+)\x00", template):
        name = params[int(m.group(1))]
        part = _FAMILY_PART_RE.get((family, name)) or _PART_RE.get(name, ".+")
        pattern += re.escape(template[pos : m.start()]) + f"(?P<{name}>{part})"
        pos = m.end()
    return re.compile(pattern + re.escape(template[pos:]))


_PARAMS: dict[str, tuple[str, ...]] = {family: _params(family) for family in FAMILIES}


def _parsers_by_root() -> dict[str, list[tuple[str, re.Pattern[str], tuple[tuple[int, bool], ...]]]]:
    """Each family's parser filed under the first segment of its keys (``ts``, ``news`` ...), in parse order,
    with the ``ParsedKey`` slot of each of its regex groups (and whether the part is an int)."""
    by_root: dict[str, list[tuple[str, re.Pattern[str], tuple[tuple[int, bool], ...]]]] = {}
    for family in FAMILIES:
        params = _PARAMS[family]
        root = _builder(Keys(), family)(**dict.fromkeys(params, "x")).split(":", 1)[0]
        slots = tuple((ParsedKey._fields.index(p), p in _INT_PARTS) for p in params)
        by_root.setdefault(root, []).append((family, _parser(family, params), slots))
    return by_root


_PARSERS = _parsers_by_root()
_NO_PARTS = (None,) * (len(ParsedKey._fields) - 1)
