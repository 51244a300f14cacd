"""The key schema: exact strings, matching docs/redis-keys.md."""

import re
from pathlib import Path

import pytest

from headwater.keys import (
    FAMILIES,
    KEY_TYPES,
    Keys,
    ParsedKey,
    check_ticker,
    glob_escape,
    last_event_field,
    parse_last_event_field,
    partition_of,
)

DOC = (Path(__file__).resolve().parents[2] / "docs" / "redis-keys.md").read_text()


def test_exact_keys_without_prefix():
    k = Keys()
    assert k.raw_market_data(3) == "stream:raw_market_data:{3}"
    assert k.raw_market_data_all(2) == ["stream:raw_market_data:{0}", "stream:raw_market_data:{1}"]
    assert k.raw_news == "stream:raw_news"
    assert k.raw_social == "stream:raw_social"
    assert k.raw_documents == "stream:raw_documents"
    assert k.dead_letter == "stream:dead_letter"
    assert k.quarantine == "stream:quarantine"
    assert k.group == "processing_group"
    assert k.tick("AAPL", "price") == "ts:{AAPL}:price"
    assert k.tick("BRK.B", "volume") == "ts:{BRK.B}:volume"
    assert k.bar("AAPL", "5m", "close") == "ts:{AAPL}:bar:5m:close"
    assert k.provider_bar("AAPL", "alphavantage", "1m", "open") == "ts:{AAPL}:agg:alphavantage:1m:open"
    assert k.sentiment("MSFT", "news") == "ts:{MSFT}:sentiment:news"
    assert k.mentions("MSFT", "social") == "ts:{MSFT}:mentions:social"
    assert k.article("abc") == "news:abc"
    assert k.news_index("AAPL") == "news:idx:{AAPL}"
    assert k.post("reddit:t3_x") == "social:reddit:t3_x"
    assert k.social_index("AAPL") == "social:idx:{AAPL}"
    assert k.seen("news") == "seen:news"
    assert k.chunk("sec:0000320193-24-000123", 7) == "doc:sec:0000320193-24-000123:chunk:7"
    assert k.documents_index == "idx:documents"
    assert k.semantic_cache_index == "idx:semantic_cache"
    assert k.semantic_cache_entry("h") == "cache:query:h"
    assert k.last_event == "streamer:last_event"
    assert k.streamer_metrics(0) == "streamer:metrics:0"
    assert k.worker_metrics("host-1") == "worker:metrics:host-1"
    assert k.workers_alive == "workers:alive"
    assert k.partition_lease(2) == "lease:raw_market_data:{2}"
    assert k.ticker_state("AAPL") == "state:{AAPL}:market"
    assert k.partition_tickers(2) == "tickers:raw_market_data:{2}"
    assert k.partition_epoch(2) == "lease:raw_market_data:{2}:epoch"
    assert k.quota("sec", "0123456789ab", "gcra") == "quota:{sec:0123456789ab}:gcra"
    assert k.checkpoint("backfill", "AAPL") == "checkpoint:backfill:AAPL"
    assert k.user("u1") == "json:user:u1"
    assert k.audit_log == "audit:log"
    assert k.metrics_counters == "metrics:counters" and k.metrics_histograms == "metrics:histograms"
    assert Keys("t:").replay().tick("AAPL", "price") == "t:replay:ts:{AAPL}:price"
    assert k.portfolio("p1") == "json:portfolio:p1"


def test_prefix_namespaces_every_key():
    k = Keys("t1:")
    assert k.tick("AAPL", "price") == "t1:ts:{AAPL}:price"
    assert k.raw_market_data(0) == "t1:stream:raw_market_data:{0}"
    assert k.dead_letter == "t1:stream:dead_letter"


def test_per_ticker_keys_share_one_hash_tag():
    k = Keys()
    ticker_keys = [k.tick("AAPL", "price"), k.bar("AAPL", "1m", "open"), k.provider_bar("AAPL", "polygon", "1m", "close"),
                   k.sentiment("AAPL", "news"), k.news_index("AAPL"), k.social_index("AAPL"), k.ticker_state("AAPL")]
    tags = {re.search(r"\{([^}]*)\}", key).group(1) for key in ticker_keys}
    assert tags == {"AAPL"}


def test_documented_formats_are_in_the_spec():
    for fmt in ["stream:raw_market_data:{P}", "stream:dead_letter", "ts:{TICKER}:price", "ts:{TICKER}:bar:{TF}:{FIELD}",
                "ts:{TICKER}:agg:{SOURCE}:{TF}:{FIELD}", "news:idx:{TICKER}", "lease:raw_market_data:{P}",
                "state:{TICKER}:market", "audit:log", "metrics:counters", "replay:", "tickers:raw_market_data:{P}", "lease:raw_market_data:{P}:epoch", "quota:{PROVIDER:KEYID}:gcra", "streamer:last_event", "processing_group"]:
        assert fmt in DOC, fmt


def test_partition_is_stable_and_in_range():
    assert partition_of("AAPL", 4) == partition_of("AAPL", 4)
    assert partition_of("AAPL", 4) == 0  # crc32: the same on every machine and Python version
    assert {partition_of(t, 4) for t in ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM"]} <= {0, 1, 2, 3}


@pytest.mark.parametrize("bad", ["aapl", "", "TOOLONGTICKER", "A B", "{AAPL}", "AAPL:"])
def test_bad_tickers_are_refused(bad):
    with pytest.raises(ValueError):
        check_ticker(bad)


# -- parsing and globs: every family round-trips (build -> parse -> build), with and without a prefix ---------

EXAMPLES: dict[str, dict[str, object]] = {
    "raw_market_data": {"partition": 3}, "raw_news": {}, "raw_social": {}, "raw_documents": {}, "dead_letter": {},
    "quarantine": {},
    "tick": {"ticker": "BRK.B", "field": "bid_size"}, "bar": {"ticker": "BRK.B", "timeframe": "1h", "field": "close"},
    "provider_bar": {"ticker": "BRK.B", "source": "polygon", "timeframe": "1s", "field": "vwap"},
    "known_bar": {"ticker": "BRK.B", "source": "alphavantage", "timeframe": "1d"},
    "sentiment": {"ticker": "AAPL", "source": "news"}, "mentions": {"ticker": "BF-B", "source": "social"},
    "news_index": {"ticker": "BRK.B"}, "article": {"article_id": "9f2c"}, "social_index": {"ticker": "AAPL"},
    "post": {"post_id": "reddit:t3_x"}, "seen": {"dataset": "raw_documents"},
    "chunk": {"doc_id": "transcript:BRK.B:2024Q1", "n": 12},
    "documents_index": {}, "semantic_cache_index": {}, "semantic_cache_entry": {"query_hash": "ab12"},
    "last_event": {}, "streamer_metrics": {"connection": 2}, "worker_metrics": {"consumer": "host-1:42"},
    "workers_alive": {}, "partition_lease": {"partition": 0}, "partition_epoch": {"partition": 11},
    "partition_tickers": {"partition": 5}, "ticker_state": {"ticker": "BRK.B"}, "audit_log": {},
    "metrics_counters": {}, "metrics_histograms": {},
    "quota": {"provider": "sec", "key_id": "0123456789ab", "window": "day:20240101"},
    "checkpoint": {"job": "social_media_collector", "item": "reddit:stocks"},
    "user": {"user_id": "u1"}, "portfolio": {"portfolio_id": "p:1"},
    "known": {"ticker": "BRK.B", "kind": "sentiment", "source": "news"},
    "api_key": {"key_id": "0123456789ab"}, "api_keys_of": {"owner": "alice"},
}  # fmt: skip


def test_every_family_has_an_example_and_a_type():
    assert set(EXAMPLES) == set(FAMILIES) == set(KEY_TYPES)


@pytest.mark.parametrize("prefix", ["", "t1:", "team.a:replay:"])
@pytest.mark.parametrize("family", FAMILIES)
def test_build_parse_round_trip(family: str, prefix: str):
    k = Keys(prefix)
    builder = getattr(k, family)
    key = builder(**EXAMPLES[family]) if callable(builder) else builder
    parsed = k.parse(key)
    assert parsed == ParsedKey(family, **EXAMPLES[family])  # type: ignore[arg-type]
    assert parsed.parts() == EXAMPLES[family] and k.build(parsed) == key
    assert k.parse(key.encode()) == parsed
    assert k.parse_as(key, family) == parsed
    assert Keys("other:").parse(key) is None


def test_parsed_keys_exactly():
    k = Keys("t1:")
    assert k.parse("t1:ts:{BRK.B}:price") == ParsedKey("tick", ticker="BRK.B", field="price")
    assert k.parse("t1:ts:{BRK.B}:bar:1m:close") == ParsedKey("bar", ticker="BRK.B", timeframe="1m", field="close")
    assert k.parse("t1:ts:{AAPL}:agg:alphavantage:1d:vwap") == ParsedKey(
        "provider_bar", ticker="AAPL", source="alphavantage", timeframe="1d", field="vwap")
    assert k.parse("t1:news:idx:{AAPL}") == ParsedKey("news_index", ticker="AAPL")  # not article "idx:{AAPL}"
    assert k.parse("t1:social:idx:{AAPL}") == ParsedKey("social_index", ticker="AAPL")
    assert k.parse("t1:doc:sec:0000320193-24-000123:chunk:7") == ParsedKey("chunk", doc_id="sec:0000320193-24-000123", n=7)
    assert k.parse("t1:lease:raw_market_data:{2}:epoch") == ParsedKey("partition_epoch", partition=2)
    assert k.parse("t1:stream:raw_market_data:{3}").partition == 3
    assert k.parse("t1:quota:{newsapi:abc}:day:20240101") == ParsedKey(
        "quota", provider="newsapi", key_id="abc", window="day:20240101")
    assert k.parse("t1:replay:ts:{AAPL}:price") == ParsedKey("replay")
    assert k.replay().parse("t1:replay:ts:{AAPL}:price") == ParsedKey("tick", ticker="AAPL", field="price")
    assert k.parse("t1:ts:{AAPL}:price").is_series and not k.parse("t1:news:abc").is_series
    for unknown in ["t1:ts:{AAPL}:spread", "t1:ts:AAPL:price", "t1:mystery", "t1:Featureform_table____tables",
                    "ts:{AAPL}:price", "t1:stream:raw_market_data:{x}", "t1:ts:{AAPL}:bar:1m"]:
        assert k.parse(unknown) is None, unknown
    with pytest.raises(ValueError, match="not a tick key"):
        k.parse_as("t1:news:abc", "tick")
    assert k.root("t1:Featureform_table____tables") == "Featureform_table____tables" and k.root("x:ts") is None
    assert Keys.hash_tag("t1:ts:{BRK.B}:price") == "BRK.B" and Keys.hash_tag("quota:{sec:ab}:gcra") == "sec:ab"
    assert Keys.hash_tag("stream:raw_news") is None and Keys.hash_tag("a:{}:b") is None


def test_globs_exactly():
    k = Keys()
    assert k.glob() == "*"
    assert k.glob_ts() == "ts:{*}:*" and k.glob_ts("BRK.B") == "ts:{BRK.B}:*"
    assert k.glob_family("bar", ticker="AAPL") == "ts:{AAPL}:bar:*:*"
    assert k.glob_family("news_index") == "news:idx:{*}" and k.glob_family("social_index") == "social:idx:{*}"
    assert k.glob_family("quota", window="day:20240101") == "quota:{*:*}:day:20240101"
    assert k.glob_family("chunk", doc_id="sec:1") == "doc:sec:1:chunk:*"
    assert k.glob_family("worker_metrics") == "worker:metrics:*"
    assert k.glob_family("dead_letter") == "stream:dead_letter"
    assert Keys("t1:").glob_ts() == "t1:ts:{*}:*"
    # glob characters of a prefix (or a given part) are escaped; the hash-tag braces are not glob syntax
    odd = Keys("a*b?[c]\\:")
    assert odd.glob() == "a\\*b\\?\\[c\\]\\\\:*"
    assert odd.glob_family("tick", ticker="AAPL") == "a\\*b\\?\\[c\\]\\\\:ts:{AAPL}:*"
    assert glob_escape("x*") == "x\\*"
    with pytest.raises(ValueError, match="unknown key family"):
        k.glob_family("nope")
    with pytest.raises(ValueError, match="no part window"):
        k.glob_family("tick", window="x")


def test_globs_match_what_they_should_in_redis(r, key_prefix: str):
    k = Keys(key_prefix + "a*[b]:")  # a prefix full of glob characters
    other = Keys(key_prefix + "aXb:")  # what the unescaped prefix would match instead
    for keys in (k, other):
        r.set(keys.tick("BRK.B", "price"), 1)
        r.set(keys.bar("BRK.B", "1m", "close"), 1)
        r.set(keys.tick("AAPL", "price"), 1)
        r.zadd(keys.news_index("AAPL"), {"a": 1})
        r.hset(keys.article("n1"), "t", "x")
    found = lambda pattern: sorted(x.decode() for x in r.scan_iter(match=pattern, count=1000))  # noqa: E731
    assert found(k.glob_ts("BRK.B")) == sorted([k.tick("BRK.B", "price"), k.bar("BRK.B", "1m", "close")])
    assert found(k.glob_family("news_index")) == [k.news_index("AAPL")]
    assert len(found(k.glob())) == 5


def test_last_event_fields_round_trip():
    assert last_event_field("AM", "BRK.B") == "AM.BRK.B"
    assert parse_last_event_field("AM.BRK.B") == ("AM", "BRK.B") == parse_last_event_field(b"AM.BRK.B")
