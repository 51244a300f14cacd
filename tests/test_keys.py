"""The key schema: exact strings, matching docs/redis-keys.md."""

import re
from pathlib import Path

import pytest

from headwater.keys import Keys, check_ticker, partition_of

DOC = (Path(__file__).resolve().parent.parent / "docs" / "redis-keys.md").read_text()


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
